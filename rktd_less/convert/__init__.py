"""Docker/OCI images → ACIs, as rkt's docker2aci: the manifest mapping (pure) and the squash
of the layers into one uncompressed ACI (streaming, nothing extracted)."""

from .manifest import aci_manifest, appc_image_name
from .squash import squash

__all__ = ["aci_manifest", "appc_image_name", "squash"]
