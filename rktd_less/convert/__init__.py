"""Docker/OCI images → ACIs, as rkt's docker2aci.

``manifest``: the image config → appc ImageManifest mapping (pure). ``squash``: the layers →
one uncompressed ACI (streaming, nothing extracted; ``from rktd_less.convert.squash import
squash``). ``layer`` reads layer blobs, ``acitar`` writes the ACI tar.
"""

from .manifest import aci_manifest, appc_image_name

__all__ = ["aci_manifest", "appc_image_name"]
