"""Stored images out to the user: ``rkt image extract|render|export|verify`` (rkt §1.3).

Every output is built in a temp directory next to the target and renamed into place complete:
an error (or a crash) never leaves half an output behind, and without ``overwrite`` an existing
target is refused before any work. With ``overwrite`` the old target is moved aside, the new
one renamed in, then the old one removed. Extraction is GNU tar's, with the store's flags
(:func:`.tree.tar_extract_argv`: as non-root nothing keeps an owner or a setuid bit).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RktError, StoreError, UsageError
from ..host.proc import run
from ..ids import key_from_digest
from .blobs import CHUNK, rootfs_member
from .tree import dependency_list, extract_layers, rmtree, tar_extract_argv

if TYPE_CHECKING:
    from . import Store


def check_target(dest: Path, *, overwrite: bool, what: str = "directory",
                 keep: Path | None = None) -> Path:
    """The absolute target; refuses ``/``, anything in or above ``keep`` (the data dir),
    and, without ``overwrite``, an existing target."""
    target = Path(os.path.abspath(dest))
    if target == Path("/"):
        raise UsageError("this would delete your root filesystem. Refusing.")
    if keep is not None:
        real, data = Path(os.path.realpath(target)), Path(os.path.realpath(keep))
        if data.is_relative_to(real) or real.is_relative_to(data):
            raise UsageError(f"this would write into the rkt data directory {keep}. Refusing.")
    if os.path.lexists(target) and not overwrite:
        raise UsageError(f"output {what} exists", hint="try --overwrite")
    return target


def _produce(store: Store, dest: Path, overwrite: bool, what: str,
             build: Callable[[Path], Path]) -> None:
    """``build(work)`` makes the output somewhere inside ``work`` (a temp dir next to
    ``dest``) and returns it; it is then renamed to ``dest``."""
    target = check_target(dest, overwrite=overwrite, what=what, keep=store.paths.data)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.rkt-", dir=target.parent))
    except OSError as e:
        raise StoreError(f"cannot create {target.parent}/: {e.strerror}") from e
    try:
        out = build(work)
        old = work / ".old"
        try:
            if os.path.lexists(target):
                if not overwrite:  # appeared while we worked
                    raise UsageError(f"output {what} exists", hint="try --overwrite")
                os.rename(target, old)
            try:
                os.rename(out, target)
            except OSError:
                if os.path.lexists(old):
                    os.rename(old, target)
                raise
        except OSError as e:
            raise StoreError(f"cannot write {target}: {e.strerror}") from e
    finally:
        # A leftover temp dir is harmless; the output itself is complete (or untouched).
        with contextlib.suppress(OSError):
            rmtree(work)


def _tar(argv: list[str], what: str) -> None:
    try:
        run(argv, what=what)
    except RktError as e:
        raise StoreError(e.message, hint=e.hint) from e


def extract(store: Store, key: str, dest: Path, *, rootfs_only: bool,
            overwrite: bool) -> None:
    """The ACI itself, without dependencies: ``dest/manifest`` + ``dest/rootfs``, or the
    rootfs's contents as ``dest``."""
    blob = store.blob_path(key)
    as_root = os.geteuid() == 0

    def build(work: Path) -> Path:
        if rootfs_only:
            member = rootfs_member(blob)
            _tar(tar_extract_argv(blob, work, member, as_root=as_root), "extract image")
            return work / member
        out = work / "out"
        out.mkdir(mode=0o755)
        _tar(tar_extract_argv(blob, out, [], as_root=as_root), "extract image")
        return out

    check_target(dest, overwrite=overwrite, keep=store.paths.data)
    store.touch_last_used(key)
    _produce(store, dest, overwrite, "directory", build)


def render(store: Store, key: str, dest: Path, *, rootfs_only: bool, overwrite: bool) -> None:
    """The image as an app sees it: dependencies, then the image, then its pathWhitelist.
    Rendered straight into the target (no copy of a cached tree), so it works without root."""
    check_target(dest, overwrite=overwrite, keep=store.paths.data)
    layers = dependency_list(store, key)
    store.index.touch([lay.key for lay in layers])

    def build(work: Path) -> Path:
        out = work / "out"
        out.mkdir(mode=0o755)
        extract_layers(store, layers, out)
        if rootfs_only:
            return out / "rootfs"
        (out / "manifest").write_bytes(store.manifest_bytes(key))
        return out

    _produce(store, dest, overwrite, "directory", build)


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to a new file ``dst``; the store key of what was copied."""
    h = hashlib.sha512()
    with src.open("rb") as f, open(dst, "xb") as out:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return key_from_digest(h.hexdigest())


def export(store: Store, key: str, dest: Path, *, overwrite: bool) -> None:
    """The stored uncompressed tar: its sha512 is the image ID. A blob that does not hash to
    its key (disk corruption) is refused rather than handed out."""
    blob = store.blob_path(key)

    def build(work: Path) -> Path:
        out = work / "out.aci"
        try:
            got = _copy_hashing(blob, out)
        except OSError as e:
            raise StoreError(f"error writing to output ACI file: {e.strerror}") from e
        if got != key:
            raise StoreError(f'image "{key}" is corrupt in the store: its blob hashes to '
                             f'"{got}"', hint=f"check it with `rkt image verify {key}`")
        return out

    check_target(dest, overwrite=overwrite, what="ACI file", keep=store.paths.data)
    store.touch_last_used(key)
    _produce(store, dest, overwrite, "ACI file", build)


@dataclass(frozen=True)
class Verified:
    key: str
    actual: str  # the key the blob hashes to

    @property
    def ok(self) -> bool:
        return self.actual == self.key


def hash_blob(path: Path) -> str:
    h = hashlib.sha512()
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}") from e
    return key_from_digest(h.hexdigest())


def verify(store: Store, key: str) -> Verified:
    """Re-hash the blob and compare with its key. The image's rendered trees are checked
    apart (:mod:`.treecheck`)."""
    return Verified(key, hash_blob(store.blob_path(key)))
