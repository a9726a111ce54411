"""Images a build starts from or depends on, through rktd-less's own fetch and store: appc
discovery over HTTPS, signatures verified by default, local files, docker:// images, and the
store as the cache between builds (acbuild had only discovery, unverified, per build).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .aci import fill_from_file

if TYPE_CHECKING:
    from ..appc.manifest import ImageManifest
    from ..fetch.images import FetchSettings
    from ..store import Store


def fill_from_image(store: Store, settings: FetchSettings, text: str,
                    rootfs: Path) -> ImageManifest:
    """``begin NAME`` (or ``docker://…``): the image fetched (and verified) into the store,
    its manifest and its own rootfs taken as the build's (its dependencies stay dependencies)."""
    from ..fetch.resolve import resolve_image

    key = resolve_image(store, text, settings)
    # a stored image is an ACI: its own (validated) manifest comes back
    return fill_from_file(store.blob_path(key), rootfs, store.manifest(key))
