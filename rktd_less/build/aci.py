"""ACI files in and out of a build: what ``begin`` starts from and what ``write`` makes.

``write``: a gzip'd tar of ``manifest`` then ``rootfs/`` (GNU tar, sorted by name, numeric
owners, xattrs), its image ID the sha512 of the uncompressed tar, as rkt's store computes it.
It is made next to the target and renamed into place; a failure leaves no partial file. A
build begun without root (``rootless``) writes every file as root's.

``begin`` from a file: an ACI (``manifest`` and ``rootfs/``) keeps its manifest; any other
tar is a root filesystem. Without root nothing may keep another owner: a tar with files of
other users is refused rather than silently made the caller's (acbuild #272, #279).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..appc.manifest import ImageManifest
from ..errors import ImageError
from ..host import proc
from ..store.tree import tar_extract_argv
from .context import BuildError, Context, check_manifest_text
from .edit import UNNAMED

CHUNK = 1 << 20


def write(ctx: Context, dest: Path, *, overwrite: bool, sign: str = "",
          say: Callable[[str], None] = print) -> str:
    """The build as an ACI at ``dest``; returns its image ID (``sha512-…``). ``sign``: a
    GnuPG key ID; its detached signature goes to ``dest.asc``. Without it, a signature left
    from the ACI this write replaces is removed (it would no longer match)."""
    m = ctx.load()
    if m.name == UNNAMED:
        raise BuildError("can't write ACI, name was never set",
                         hint='"acbuild set-name NAME" names it')
    target = Path(os.path.abspath(dest))
    if os.path.lexists(target) and not overwrite:
        raise BuildError(f'ACI already exists: "{dest}"', hint="use --overwrite")
    if target.is_dir():
        raise BuildError(f'"{dest}" is a directory')
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.acbuild-", dir=target.parent)
    except FileNotFoundError:
        raise BuildError(f'cannot write "{dest}": its directory does not exist') from None
    except PermissionError:
        raise BuildError(f'"{dest}": permission denied') from None
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha512()
        owner = ["--owner=0", "--group=0"] if ctx.rootless else []
        argv = ["tar", "-c", "-f", "-", "-C", str(ctx.current), "--sort=name",
                "--numeric-owner", *owner, "--xattrs", "--xattrs-include=*",
                "--xattrs-exclude=trusted.overlay.*",
                "manifest", "rootfs"]
        with os.fdopen(fd, "wb") as raw, \
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
                proc.stdout_of(argv, what="archiving the image", error=BuildError) as tar:
            while chunk := tar.read(CHUNK):
                h.update(chunk)
                gz.write(chunk)
        os.chmod(tmp, 0o644)
        asc = target.with_name(target.name + ".asc")
        if sign:
            from ..trust.gpg import sign_detached

            tmp_asc = tmp.with_name(tmp.name + ".asc")
            try:
                sign_detached(tmp, tmp_asc, sign)
                os.chmod(tmp_asc, 0o644)
                os.replace(tmp_asc, asc)
            finally:
                tmp_asc.unlink(missing_ok=True)
        elif os.path.lexists(asc):
            asc.unlink()
            say(f'write: removed "{asc}": it signed the ACI this write replaces')
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return "sha512-" + h.hexdigest()


def _scan(path: Path) -> tuple[list[tarfile.TarInfo], bytes | None]:
    """Every member of the archive, and its ``manifest`` where it has one (one pass)."""
    manifest: bytes | None = None
    try:
        with tarfile.open(path, "r:*") as tar:
            members = []
            for m in tar:
                members.append(m)
                if m.name.removeprefix("./") == "manifest" and m.isfile():
                    f = tar.extractfile(m)
                    manifest = f.read() if f is not None else None
            return members, manifest
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ImageError(f'"{path}" is not a readable tar archive: {e}') from None


def fill_from_file(path: Path, rootfs: Path, skeleton: ImageManifest) -> ImageManifest:
    """``begin FILE``: an ACI's manifest and rootfs, or a root filesystem tarball (then
    ``skeleton`` is its manifest)."""
    if not path.is_file():
        raise BuildError(f'"{path}" is not a file or a directory')
    members, manifest = _scan(path)
    rootfs_dirs = [m.name for m in members if m.name.removeprefix("./").rstrip("/") == "rootfs"]
    is_aci = manifest is not None and bool(rootfs_dirs)
    root = os.geteuid() == 0
    if not root:
        others = sorted(m.name for m in members if (m.uid, m.gid) != (0, 0)
                        and (not is_aci or m.name.removeprefix("./").startswith("rootfs")))
        if others:
            raise BuildError(f'"{path}" has files owned by users other than root (such as '
                             f'"{others[0]}"): without root their owners would be lost',
                             hint="run begin as root")
    if manifest is None or not is_aci:
        proc.run(tar_extract_argv(path, rootfs, [], as_root=root), what=f'extracting "{path}"',
                 error=BuildError)
        return skeleton
    m = check_manifest_text(manifest)
    prefix = "./rootfs" if rootfs_dirs[0].startswith("./") else "rootfs"
    proc.run(tar_extract_argv(path, rootfs.parent, [prefix], as_root=root),
             what=f'extracting "{path}"', error=BuildError)
    return m


def fill_from_dir(src: Path, rootfs: Path, skeleton: ImageManifest) -> ImageManifest:
    """``begin DIR``: the directory's tree is the image's root filesystem."""
    from ..host.copy import copy_tree

    if not src.is_dir():
        raise BuildError(f'"{src}" is not a directory')
    copy_tree(src, rootfs, what=f'copying "{src}"', keep_owner=os.geteuid() == 0)
    return skeleton


def copy_in(ctx: Context, sources: list[Path], dest: str, *, into_dir: bool) -> None:
    """``copy SRC DST`` (SRC becomes DST) and ``copy-to-dir SRC... DIR`` (each SRC goes in
    DIR), DST/DIR a path in the image: parents made, nothing written outside the rootfs."""
    from ..common.volumes import safe_target
    from ..host.copy import copy_tree

    for s in sources:
        if not os.path.lexists(s):
            raise BuildError(f'"{s}": no such file or directory')
    base = safe_target(ctx.rootfs, dest)
    keep = not ctx.rootless
    if into_dir:
        base.mkdir(parents=True, exist_ok=True)
        for s in sources:
            copy_tree(s, base / s.name, what=f'copying "{s}"', keep_owner=keep)
        return
    copy_tree(sources[0], base, what=f'copying "{sources[0]}"', keep_owner=keep)
