"""Rendered trees: an image and its dependencies extracted once, shared by pods (rkt §3.3).

``cas/tree/<id>/`` holds ``rootfs/``, ``image`` (the image key) and the ``rendered`` marker,
and from its first ``rkt image verify`` on ``hash`` (its digest and layers: :mod:`.treehash`).
A tree is built in a temp directory next to it under an exclusive per-tree flock and renamed
into place complete, so no reader ever sees half a tree; a tree dir without the marker (from
an older crash) is removed and rebuilt. Extraction is GNU tar's: every member was checked at
import (``blobs``), and multi-image renders are checked across layers here first.
``cas/tree`` admits its owner only (:mod:`.perms`): trees rendered by root keep the images'
setuid-root files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..appc.manifest import Dependency, ImageManifest
from ..appc.types import q
from ..errors import ManifestError, NotFound, RktError, StoreError, UsageError
from ..host.proc import run
from ..ids import key_from_digest
from ..paths import Paths
from . import blobs
from .lock import atomic_write, ensure_dir, flocked, fsync_dir

TREE_ID_RE = re.compile(r"^deps-sha512-[0-9a-f]{64}$")
MAX_LAYERS = 256
RENDERED = "rendered"


class ImageSource(Protocol):
    """What rendering needs from the image store."""

    def resolve_id(self, prefix: str) -> str: ...

    def find_by_name(self, name: str, labels: Mapping[str, str]) -> str | None: ...

    def manifest(self, key: str) -> ImageManifest: ...

    def blob_path(self, key: str) -> Path: ...


@dataclass(frozen=True)
class Layer:
    key: str
    manifest: ImageManifest
    level: int
    ancestors: tuple[str, ...] = ()  # keys above this one, to refuse dependency cycles


def tree_id_for(keys: Sequence[str]) -> str:
    """rkt: ``deps-`` + store key of sha512(",".join(keys of the flattened dependency list))."""
    return "deps-" + key_from_digest(hashlib.sha512(",".join(keys).encode()).hexdigest())


def check_tree_id(tree_id: str) -> str:
    if not TREE_ID_RE.match(tree_id):
        raise UsageError(f'invalid tree ID "{tree_id}"',
                         hint="a tree ID looks like deps-sha512-<64 hex>")
    return tree_id


def _resolve_dep(src: ImageSource, parent: ImageManifest, dep: Dependency) -> str:
    missing = NotFound(
        f'dependency "{dep.image_name}" of image "{parent.name}" is not in the store',
        hint=f"the image must be fetched first: rkt fetch {dep.image_name}")
    if dep.image_id:
        try:
            return src.resolve_id(dep.image_id)
        except (NotFound, UsageError) as e:
            raise missing from e
    key = src.find_by_name(dep.image_name, dep.label_map())
    if key is None:
        raise missing
    return key


def dependency_list(src: ImageSource, key: str) -> list[Layer]:
    """appc acirenderer's list: the image first, each image followed by its dependencies
    (the last listed first), so that later entries are overridden by earlier ones.
    For A→[B,C], C→[D] the list is A,C,D,B and the override (extraction) order B,D,C,A.
    """
    layers = [Layer(key, src.manifest(key), 0)]
    i = 0
    while i < len(layers):
        cur = layers[i]
        chain = (*cur.ancestors, cur.key)
        deps = []
        for dep in cur.manifest.dependencies:
            dkey = _resolve_dep(src, cur.manifest, dep)
            if dkey in chain:
                raise ManifestError(f'image "{cur.manifest.name}": dependency cycle through '
                                    f'"{dep.image_name}"')
            deps.append(Layer(dkey, src.manifest(dkey), cur.level + 1, chain))
        layers[i + 1 : i + 1] = reversed(deps)
        if len(layers) > MAX_LAYERS:
            raise ManifestError(f'image "{layers[0].manifest.name}": more than {MAX_LAYERS} '
                                "images in its dependency tree")
        i += 1
    return layers


def tar_extract_argv(blob: Path, dest: Path, members: str | Sequence[str], *,
                     as_root: bool) -> list[str]:
    """GNU tar (Debian 12: 1.34) extracting ``members`` (the rootfs) of ``blob`` into ``dest``.

    As root ownership, modes and all xattrs (file capabilities!) are restored exactly;
    ``--xattrs-include=*`` because GNU tar restores only ``user.*`` by default. As any other
    user nothing may gain privileges: files become the caller's (``--no-same-owner``) and
    ``--no-same-permissions`` drops setuid/setgid bits (GNU tar keeps them for a non-root
    caller with ``--same-permissions``: a setuid-<caller> file in a shared directory would let
    other users act as the caller) and applies the umask.
    """
    owner = (["--numeric-owner", "--same-owner", "--same-permissions"] if as_root
             else ["--no-same-owner", "--no-same-permissions"])
    names = [members] if isinstance(members, str) else list(members)
    # overlayfs's own attributes (opaque, redirect, origin) would act when the tree is an
    # overlay layer (a pod's, an acbuild step's): an image never sets them
    return ["tar", "-x", "-f", str(blob), "-C", str(dest), *owner, "--xattrs",
            "--xattrs-include=*", "--xattrs-exclude=trusted.overlay.*", *names]


def rmtree(path: Path) -> None:
    top = os.path.abspath(path)

    def retry(func: Callable[..., Any], p: str, exc: object) -> None:
        # A read-only directory in an image blocks removal of its entries for non-root: made
        # writable, if it is one being removed (never the tree's parent), and tried again.
        parent = os.path.dirname(os.path.abspath(p))
        if func not in (os.unlink, os.rmdir) or not (parent == top or parent.startswith(
                top + os.sep)):
            err = exc[1] if isinstance(exc, tuple) else exc  # onerror gives sys.exc_info()
            raise err if isinstance(err, BaseException) else OSError(f"cannot remove {p}")
        os.chmod(parent, 0o700)
        func(p)

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=retry)


def apply_path_whitelist(rootfs: Path, whitelist: Sequence[str]) -> None:
    """Remove every non-directory not in ``whitelist`` (absolute paths in the image).

    Directories stay, as appc's renderer keeps an image's own directories.
    """
    keep = {os.path.normpath(p) for p in whitelist}

    def walk(d: str, rel: str) -> None:
        with os.scandir(d) as it:
            entries = list(it)
        for e in entries:
            r = f"{rel}/{e.name}"
            if e.is_dir(follow_symlinks=False):
                walk(e.path, r)
            elif r not in keep:
                os.unlink(e.path)

    walk(str(rootfs), "")


class TreeStore:
    def __init__(self, paths: Paths, source: ImageSource,
                 on_rendered: Callable[[str, int], None] | None = None) -> None:
        self.paths = paths
        self.source = source
        self.on_rendered = on_rendered  # (image key, tree size): record it in the index

    def tree_rootfs(self, tree_id: str) -> Path:
        return self.paths.tree(check_tree_id(tree_id)) / "rootfs"

    def is_rendered(self, tree_id: str) -> bool:
        return (self.paths.tree(check_tree_id(tree_id)) / RENDERED).is_file()

    def _lock(self, tree_id: str) -> Path:
        return self.paths.cas_locks / tree_id

    def render(self, key: str, layers: list[Layer] | None = None) -> str:
        layers = layers if layers is not None else dependency_list(self.source, key)
        tree_id = tree_id_for([lay.key for lay in layers])
        if self.is_rendered(tree_id):
            return tree_id
        ensure_dir(self.paths.data, self.paths.tree_dir)
        with flocked(self._lock(tree_id)):
            if self.is_rendered(tree_id):  # another process finished it while we waited
                return tree_id
            self._clear(tree_id)
            size = self._build(tree_id, layers)
        if self.on_rendered is not None:
            self.on_rendered(key, size)
        return tree_id

    def remove(self, tree_id: str) -> None:
        check_tree_id(tree_id)
        if not self.paths.tree(tree_id).exists() and not self._stale(tree_id):
            return
        with flocked(self._lock(tree_id)):
            self._clear(tree_id)

    def _stale(self, tree_id: str) -> list[Path]:
        if not self.paths.tree_dir.is_dir():
            return []
        return list(self.paths.tree_dir.glob(f".tmp-{tree_id}-*"))

    def _clear(self, tree_id: str) -> None:
        """Under the tree lock: remove the tree (marker first) and leftovers of crashes."""
        final = self.paths.tree(tree_id)
        try:
            (final / RENDERED).unlink(missing_ok=True)
            for p in [final, *self._stale(tree_id)]:
                rmtree(p)
        except OSError as e:
            raise StoreError(f'cannot remove tree "{tree_id}": {e}') from e

    def _build(self, tree_id: str, layers: list[Layer]) -> int:
        tmp, size = self.make(tree_id, layers)
        try:
            os.rename(tmp, self.paths.tree(tree_id))
            fsync_dir(self.paths.tree_dir)
        except BaseException:
            rmtree(tmp)
            raise
        return size

    def make(self, tree_id: str, layers: list[Layer]) -> tuple[Path, int]:
        """A complete tree (marker included) in a temp dir next to the final one; its size.
        Called under the tree's lock."""
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{tree_id}-", dir=self.paths.tree_dir))
        except OSError as e:
            raise StoreError(f"cannot render image \"{layers[0].manifest.name}\": cannot "
                             f"create a tree in {self.paths.tree_dir}: {e.strerror}",
                             hint="rendering into the tree store needs root") from e
        try:
            os.chmod(tmp, 0o755)
            extract_layers(self.source, layers, tmp)
            size = _tree_size(tmp / "rootfs")
            # no hash yet: hashing costs as much CPU as extracting (.treehash); the first
            # `rkt image verify` of the tree records it
            atomic_write(tmp / "image", layers[0].key.encode())
            # rkt syncs the filesystem before the marker: a tree marked rendered is complete.
            run(["sync", "-f", str(tmp)], what="sync the rendered tree")
            atomic_write(tmp / RENDERED, b"")
        except BaseException:
            rmtree(tmp)
            raise
        return tmp, size

    def swap_in(self, tmp: Path, tree_id: str) -> Path | None:
        """Under the tree's lock: the complete tree ``tmp`` (from :meth:`make`) becomes tree
        ``tree_id`` in one step. The old tree, if there was one, is now at ``tmp`` and
        returned; a pod's overlay over it keeps it whole (overlayfs holds its lower
        directories by reference), pods started later mount the new one. On error ``tmp`` is
        removed and nothing changed."""
        from .rename import exchange  # ctypes: only here

        final = self.paths.tree(check_tree_id(tree_id))
        try:
            if os.path.lexists(final):
                exchange(tmp, final)
                retired: Path | None = tmp
            else:
                os.rename(tmp, final)
                retired = None
        except OSError as e:
            rmtree(tmp)
            raise StoreError(f'cannot replace tree "{tree_id}": {e.strerror}') from e
        fsync_dir(self.paths.tree_dir)
        return retired

    def lock(self, tree_id: str, *, exclusive: bool = True) -> AbstractContextManager[None]:
        """The tree's flock: exclusive to make, replace or remove it, shared to read it whole."""
        return flocked(self._lock(check_tree_id(tree_id)), exclusive=exclusive)

    # --- what is there ------------------------------------------------------------------
    def ids(self) -> list[str]:
        """Every tree ID with something on disk: rendered, half-removed, or a crashed render's
        temp dir (rkt's GetIDs). Raises StoreError if the tree directory cannot be read."""
        try:
            names = os.listdir(self.paths.tree_dir)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot list the trees in {self.paths.tree_dir}: {e.strerror}",
                             hint="run as root") from e
        found = set()
        for n in names:
            if n.startswith(".tmp-"):
                n = n[len(".tmp-"):].rsplit("-", 1)[0]
            if TREE_ID_RE.match(n):
                found.add(n)
        return sorted(found)

    def image_of(self, tree_id: str) -> str | None:
        """The key of the image a tree was rendered for (its ``image`` file), if readable."""
        try:
            return (self.paths.tree(check_tree_id(tree_id)) / "image").read_text().strip()
        except OSError:
            return None

    def trees_of(self, key: str) -> list[str]:
        """The rendered trees of image ``key`` (as the top image, deps included)."""
        return [t for t in self.ids() if self.image_of(t) == key]


def extract_layers(source: ImageSource, layers: list[Layer], dest: Path) -> None:
    """Render ``layers`` (a :func:`dependency_list`) into ``dest/rootfs`` with GNU tar: the
    dependencies first, the image last, then the image's pathWhitelist. ``dest`` exists."""
    # Every dependency's blob must be sound on its own (import) and together (here).
    members = _extraction_plan(source, layers)
    (dest / "rootfs").mkdir(mode=0o755, exist_ok=True)
    as_root = os.geteuid() == 0
    for lay, member in zip(reversed(layers), reversed(members), strict=True):
        argv = tar_extract_argv(source.blob_path(lay.key), dest, member, as_root=as_root)
        try:
            run(argv, what=f'extract image "{lay.manifest.name}"')
        except RktError as e:
            raise StoreError(e.message, hint=e.hint) from e
    if layers[0].manifest.path_whitelist:
        apply_path_whitelist(dest / "rootfs", layers[0].manifest.path_whitelist)


def _extraction_plan(source: ImageSource, layers: list[Layer]) -> list[str]:
    """Each layer's rootfs member name; refuses layers that would write through symlinks
    of the layers extracted before them."""
    if len(layers) == 1:
        return [blobs.rootfs_member(source.blob_path(layers[0].key))]
    listings = [blobs.scan_aci(source.blob_path(lay.key), lay.manifest.name)
                for lay in layers]
    below: set[str] = set()
    for lay, listing in zip(reversed(layers), reversed(listings), strict=True):
        bad = blobs.unsafe_reason(listing.members, below)
        if bad:
            raise blobs.image_error(lay.manifest.name, f"unsafe member {q(bad[0])} over "
                                                       f"a lower dependency: {bad[1]}")
        for m in listing.members:  # a later non-symlink replaces a lower symlink
            if m.kind == "symlink":
                below.add(m.name)
            else:
                below.discard(m.name)
    return [listing.rootfs_member for listing in listings]


def _tree_size(rootfs: Path) -> int:
    """Apparent size of the tree in bytes (du counts hard-linked files once)."""
    out = run(["du", "-s", "-b", "--", str(rootfs)], what="measure the rendered tree").stdout
    try:
        return int(out.split()[0])
    except (IndexError, ValueError):
        return 0
