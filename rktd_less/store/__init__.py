"""The content-addressed image store (rkt §3): blobs, their sqlite index, rendered trees.

``Store`` is the facade the rest of the engine uses; nothing here prints. Layout under
``<data>/cas`` comes from :class:`~rktd_less.paths.Paths`. Reads of a store that does not exist
yet find nothing instead of creating it. Also here: ``gc`` (image rm / gc), ``export`` (image
extract / render / export / verify), ``perms`` (group ``rkt`` and modes of what is created).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..appc.manifest import ImageManifest, parse_image_manifest
from ..errors import Ambiguous, NotFound, StoreError
from ..ids import normalize_image_id_prefix
from ..paths import Paths
from .index import AciRow, Index, Remote
from .lock import atomic_write, ensure_dir, flocked, fsync_dir, makedirs

if TYPE_CHECKING:  # imported when first used: listing images needs neither
    from .blobs import Decompressed
    from .tree import TreeStore

__all__ = ["ImageInfo", "Remote", "Store"]


@dataclass(frozen=True)
class ImageInfo:
    key: str
    name: str
    version: str | None
    import_time: float
    last_used: float
    size: int  # the uncompressed blob
    tree_size: int  # its rendered tree, 0 until rendered
    latest: bool = False


class Store:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.index = Index(paths.db, ensure_parent=lambda: ensure_dir(paths.data,
                                                                       paths.db_dir))
        self._manifests: dict[str, ImageManifest] = {}  # a key's manifest never changes

    def close(self) -> None:
        self.index.close()

    @cached_property
    def trees(self) -> TreeStore:
        from .tree import TreeStore

        return TreeStore(self.paths, self, on_rendered=self.index.set_tree_size)

    def exists(self) -> bool:
        return self.paths.db.exists()

    def forget(self, key: str) -> None:
        """Drop what is cached about ``key`` (after it was removed)."""
        self._manifests.pop(key, None)

    # --- import -----------------------------------------------------------------------------
    def import_aci(self, src: Path | BinaryIO, *, latest: bool = False) -> str:
        """Store an ACI (plain, gzip, bzip2 or xz) and return its key ``sha512-<64 hex>``.

        Idempotent; on any error the store is left as it was.
        """
        from . import blobs
        from .tmp import private_dir

        label = str(src) if isinstance(src, Path) else str(getattr(src, "name", "<stream>"))
        for d in (self.paths.blob_dir, self.paths.manifest_dir, self.paths.cas_locks):
            ensure_dir(self.paths.data, d)
        dec = blobs.decompress_to_temp(src, private_dir(self.paths), label)
        try:
            if not latest and self._stored(dec.key):
                # the same bytes were checked when they were first stored: no second scan
                return dec.key
            listing = blobs.scan_aci(dec.path, label)
            manifest = parse_image_manifest(listing.manifest)
            with flocked(self.paths.cas_locks / dec.key):
                self._commit(dec, listing.manifest, manifest, latest)
        finally:
            dec.path.unlink(missing_ok=True)  # already renamed away on success
        return dec.key

    def _stored(self, key: str) -> bool:
        return (self.paths.blob(key).is_file() and self.paths.image_manifest(key).is_file()
                and self.index.get(key) is not None)

    def _commit(self, dec: Decompressed, raw_manifest: bytes, manifest: ImageManifest,
                latest: bool) -> None:
        key = dec.key
        blob, mfile = self.paths.blob(key), self.paths.image_manifest(key)
        created: list[Path] = []
        try:
            if not mfile.exists():
                atomic_write(mfile, raw_manifest)
                created.append(mfile)
            if not blob.exists():
                makedirs(blob.parent)
                fd = os.open(dec.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)  # the blob's data on disk before its name is
                finally:
                    os.close(fd)
                os.rename(dec.path, blob)
                created.append(blob)
                fsync_dir(blob.parent)
            # The row last: a crash before it leaves an unindexed blob, never a dangling row.
            self.index.add(key, manifest.name, size=dec.size, latest=latest)
        except BaseException:
            for p in created:
                p.unlink(missing_ok=True)
            raise

    # --- lookups ----------------------------------------------------------------------------
    def resolve_id(self, prefix: str) -> str:
        """An image ID or unambiguous prefix (≥ ``sha512-xx``, or the full 128 hex) → key."""
        p = normalize_image_id_prefix(prefix)
        keys = self.index.keys_with_prefix(p) if self.exists() else []
        if not keys:
            raise NotFound(f'no image found with ID "{prefix}"',
                           hint="list the images in the store with `rkt image list`")
        if len(keys) > 1:
            raise Ambiguous(f'ambiguous image ID "{prefix}": matches {len(keys)} images',
                            hint="use more characters of the ID")
        return keys[0]

    def find_by_name(self, name: str, labels: Mapping[str, str]) -> str | None:
        """rkt's GetACI: images called ``name`` carrying every requested label; without a
        ``version`` label the one marked latest wins; then the newest import."""
        if not self.exists():
            return None
        best: tuple[bool, float] | None = None
        found: str | None = None
        prefer_latest = "version" not in labels
        for row in self.index.with_name(name):
            try:
                have = self.manifest(row.key).label_map()
            except NotFound:
                continue
            if any(have.get(k) != v for k, v in labels.items()):
                continue
            rank = (row.latest and prefer_latest, row.import_time)
            if best is None or rank > best:
                best, found = rank, row.key
        return found

    def _info(self, row: AciRow) -> ImageInfo:
        try:
            version = self.manifest(row.key).label("version")
        except NotFound:
            version = None
        return ImageInfo(row.key, row.name, version, row.import_time, row.last_used,
                         row.size, row.tree_size, row.latest)

    def get_image(self, key: str) -> ImageInfo:
        row = self.index.get(key) if self.exists() else None
        if row is None:
            raise NotFound(f'no image found with ID "{key}"',
                           hint="list the images in the store with `rkt image list`")
        return self._info(row)

    def list_images(self) -> list[ImageInfo]:
        return [self._info(r) for r in self.index.all()] if self.exists() else []

    def manifest_bytes(self, key: str) -> bytes:
        try:
            return self.paths.image_manifest(key).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f'no image found with ID "{key}"',
                           hint="list the images in the store with `rkt image list`") from e
        except OSError as e:
            raise StoreError(f'cannot read the manifest of image "{key}": {e.strerror}') from e

    def manifest(self, key: str) -> ImageManifest:
        m = self._manifests.get(key)
        if m is None:
            m = self._manifests[key] = parse_image_manifest(self.manifest_bytes(key))
        return m

    def blob_path(self, key: str) -> Path:
        path = self.paths.blob(key)
        if not path.is_file():
            raise NotFound(f'image "{key}" has no blob in the store',
                           hint="fetch the image again")
        return path

    def touch_last_used(self, key: str, now: float | None = None) -> None:
        self.index.touch([key], time.time() if now is None else now)

    # --- trees ------------------------------------------------------------------------------
    def render(self, key: str) -> str:
        """Make sure the tree of ``key`` (with its dependencies) is rendered; its tree ID."""
        from .tree import dependency_list

        layers = dependency_list(self, key)
        self.index.touch([lay.key for lay in layers])
        return self.trees.render(key, layers)

    def tree_rootfs(self, tree_id: str) -> Path:
        return self.trees.tree_rootfs(tree_id)

    def remove_tree(self, tree_id: str) -> None:
        """Remove a rendered tree; its image's tree size goes back to 0 with its last tree."""
        key = self.trees.image_of(tree_id)
        self.trees.remove(tree_id)
        if key is not None and self.exists() and not self.trees.trees_of(key):
            self.index.set_tree_size(key, 0)
