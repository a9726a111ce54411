"""What an ``acbuild run`` step adds to the image: an overlayfs upper directory, made into
changes of the build's own layer (``currentaci/rootfs``).

During the step the image is an overlay (reference acbuild.md §1 "How run works", with its
defects fixed)::

    upper     .acbuild/run/upper        fresh and empty: what the step writes
    lower 1   .acbuild/run/scaffold     read-only: the host's resolv.conf (DNS during the
                                        step) and the mount points systemd-nspawn needs
                                        that the image lacks; never part of the image
    lower 2   .acbuild/currentaci/rootfs   the build's own files
    lower 3…  each dependency's rendered tree, the last dependency first (appc: a later
              dependency wins over an earlier one; acbuild had this backwards)

Only after the step succeeded is the upper directory merged into the build's own files
(:func:`merge`); a failed step leaves the build exactly as it was.

Deletions: overlayfs records a deleted file as a whiteout and a replaced directory as an
opaque one. A whiteout of one of the build's own files deletes it. An appc image cannot
delete a file of its dependencies (its layer has no whiteouts), so such a deletion is
*kept out* of the image: the file stays in the rendered image, and ``merge`` returns its
path so that ``acbuild run`` says so. Nothing else of the overlay reaches the image: no
whiteout device nodes, no ``trusted.overlay.*`` attributes.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..store.tree import rmtree
from .context import BuildError

OVERLAY_XATTR = "trusted.overlay."
MAX_DEPTH = 256  # directory levels a step may leave (the merge walks them recursively)
MAX_PATH = 3800  # bytes of a path below the rootfs (PATH_MAX is 4096 with the build's own)
OPAQUE = "trusted.overlay.opaque"
# What systemd-nspawn (252) mounts over or makes when the image lacks it (a non-booting nspawn
# refuses a tree without usr/; it makes root/ and var/), with the modes it gives them.
MOUNT_POINTS = {"dev": 0o755, "proc": 0o555, "sys": 0o555, "run": 0o755, "tmp": 0o1777,
                "usr": 0o755, "var": 0o755, "root": 0o750}


def find_below(lowers: Sequence[Path], rel: str) -> os.stat_result | None:
    """The entry at ``rel`` as the image shows it below the step: the first lower layer
    that has it (the layers are top-most first). A layer whose path to it goes through a
    symlink does not count: the image's symlinks are never followed on the machine."""
    parts = rel.split("/")
    for layer in lowers:
        cur = layer
        try:
            for part in parts[:-1]:
                cur = cur / part
                if not stat.S_ISDIR(os.lstat(cur).st_mode):
                    raise NotADirectoryError
            return os.lstat(cur / parts[-1])
        except OSError:
            continue
    return None


def make_scaffold(scaffold: Path, lowers: Sequence[Path]) -> bool:
    """The top lower layer: the mount points the image lacks and, where the image's /etc is a
    directory, an empty ``etc/resolv.conf`` for the host's to be bind-mounted on (read-only:
    a step that writes to it fails rather than copying the host's file into the image).
    Directories the image has keep its owner and mode. Whether the mount point is there."""
    scaffold.mkdir(mode=0o755)
    for name, mode in MOUNT_POINTS.items():
        if find_below(lowers, name) is None:
            (scaffold / name).mkdir()
            os.chmod(scaffold / name, mode)
    etc = find_below(lowers, "etc")
    if etc is not None and not stat.S_ISDIR(etc.st_mode):
        return False  # an image whose /etc is not a directory: left as it is (no host DNS)
    (scaffold / "etc").mkdir(mode=0o755)
    if etc is not None:
        os.chown(scaffold / "etc", etc.st_uid, etc.st_gid)
        os.chmod(scaffold / "etc", stat.S_IMODE(etc.st_mode))
    (scaffold / "etc" / "resolv.conf").write_bytes(b"")
    os.chmod(scaffold / "etc" / "resolv.conf", 0o644)
    return True


def check_upper(upper: Path) -> None:
    """Refuse, before anything of it is merged, a step's tree the merge could not apply whole
    (deeper or longer than it or the kernel can take): the build then stays as it was."""
    stack = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        if depth > MAX_DEPTH or len(os.fsencode(rel)) > MAX_PATH:
            raise BuildError(f'the step made "/{rel[:80]}...", too deep a tree to keep in an '
                             "image", hint=f"at most {MAX_DEPTH} levels")
        with os.scandir(upper / rel if rel else upper) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append((f"{rel}/{e.name}" if rel else e.name, depth + 1))


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _xattrs(path: Path) -> Iterator[str]:
    try:
        yield from os.listxattr(path, follow_symlinks=False)
    except OSError:
        return


def _drop_overlay_xattrs(path: Path) -> None:
    for name in _xattrs(path):
        if name.startswith(OVERLAY_XATTR):
            with contextlib.suppress(OSError):
                os.removexattr(path, name, follow_symlinks=False)


def _copy_dir_meta(src: Path, dst: Path, st: os.stat_result) -> None:
    """Owner, mode, extended attributes (but overlayfs's own) and times of a directory."""
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    for name in _xattrs(src):
        if not name.startswith(OVERLAY_XATTR):
            with contextlib.suppress(OSError):
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                            follow_symlinks=False)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        rmtree(path)
    else:
        path.unlink()


def merge(upper: Path, own: Path, deps: Sequence[Path]) -> list[str]:
    """Apply the step's ``upper`` directory to the build's ``own`` files, moving what it
    wrote (same filesystem: renames, hard links kept). ``deps``: the dependencies' trees.
    Returns the paths (relative, sorted) whose deletion could not reach the image because a
    dependency provides them."""
    kept: list[str] = []

    def walk(rel: str) -> None:
        for name in sorted(os.listdir(upper / rel) if rel else os.listdir(upper)):
            r = f"{rel}/{name}" if rel else name
            u, o = upper / r, own / r
            st = os.lstat(u)
            if _is_whiteout(st):
                if os.path.lexists(o):
                    _remove(o)
                if find_below(deps, r) is not None:
                    kept.append(r)
                continue
            if stat.S_ISDIR(st.st_mode):
                opaque = False
                with contextlib.suppress(OSError):
                    opaque = os.getxattr(u, OPAQUE, follow_symlinks=False) == b"y"
                if os.path.lexists(o) and (opaque or not o.is_dir() or o.is_symlink()):
                    _remove(o)
                if opaque:
                    below = find_below(deps, r)
                    if below is not None and stat.S_ISDIR(below.st_mode) and any(
                            _listing(d, r) - set(os.listdir(u)) for d in deps):
                        kept.append(r + "/")
                created = not os.path.lexists(o)
                if created:
                    o.mkdir()
                walk(r)
                if created and not opaque and not os.listdir(o) and _same_dir(
                        st, find_below(deps, r)):
                    o.rmdir()  # held only deletions the image cannot make: nothing new
                    continue
                _copy_dir_meta(u, o, st)
                continue
            if os.path.lexists(o):
                _remove(o)
            os.rename(u, o)
            _drop_overlay_xattrs(o)

    walk("")
    _copy_dir_meta(upper, own, os.lstat(upper))  # "/" itself (begun as the build's own)
    return sorted(kept)


def _same_dir(st: os.stat_result, below: os.stat_result | None) -> bool:
    return below is not None and stat.S_ISDIR(below.st_mode) and (
        st.st_mode, st.st_uid, st.st_gid) == (below.st_mode, below.st_uid, below.st_gid)


def _listing(layer: Path, rel: str) -> set[str]:
    """The names in directory ``rel`` of one layer (none through a symlink)."""
    st = find_below([layer], rel)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return set()
    try:
        return set(os.listdir(layer / rel))
    except OSError:
        return set()


def clear(path: Path) -> None:
    """Remove a step's directory (upper, work, scaffold), whatever overlayfs or the step left
    in it, however deep (rm works without recursion; Python's rmtree does not)."""
    if os.path.lexists(path):
        from ..host import proc

        proc.run(["rm", "-rf", "--one-file-system", "--", str(path)],
                 what=f'removing "{path}"', error=BuildError)
