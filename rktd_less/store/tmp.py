"""The store's temp area ``cas/tmp``, and collecting what dead processes left there (issue 9).

* Each process that needs temp space gets a private directory ``cas/tmp/p-<random>`` (0700),
  held with an flock on the directory for the rest of the process's life and removed at exit.
  A process killed with SIGKILL leaves it unlocked: :func:`collect` removes every unlocked
  one (and any loose file an older version left), so nothing outlives its process for long.
* Resumable downloads (``dl-<hash>.aci.part``, its ``.meta`` sidecar and the sidecar's own
  temp file) live directly in ``cas/tmp`` so that a later fetch of the same URL continues them;
  while in use they are locked through ``cas/locks/dl-<hash>`` (:func:`hold_partial`), and
  ones left untouched for ``PARTIAL_MAX_AGE`` are collected.

``cas/tmp`` is writable by group ``rkt`` and :func:`collect` runs as root, so it trusts no
name there: the directory is opened without following symlinks, its entries are handled
relative to that descriptor, nothing but regular files and directories is opened (a FIFO
would block), and nothing waits on a lock a member could hold. Root uses only a ``cas/tmp``
that root owns (members cannot rename root's entries in it: it is sticky).

Creating a private directory and locking it happen under a shared flock on
``cas/locks/tmp``; :func:`collect` takes it exclusively (without waiting), so it never sees a
directory between its mkdir and its flock.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError
from ..fsio import try_lock
from ..paths import Paths
from .lock import ensure_dir, flocked, try_flock

PRIVATE_PREFIX = "p-"
PARTIAL_PREFIX = "dl-"
PARTIAL_MAX_AGE = 24 * 3600.0  # s since a partial download was last written

_held: dict[Path, tuple[int, int, Path]] = {}  # cas/tmp → (pid, locked fd, the pid's dir)


def _create_lock(paths: Paths) -> Path:
    return paths.cas_locks / "tmp"


def _open_tmp(paths: Paths) -> int:
    """``cas/tmp`` itself, never through a symlink; root uses only one that root owns."""
    try:
        fd = os.open(paths.cas_tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StoreError(f"{paths.cas_tmp} is not a directory (a symbolic link?)",
                             hint="remove it; rkt makes it anew") from e
        raise StoreError(f"cannot open {paths.cas_tmp}: {e.strerror}") from e
    owner = os.fstat(fd).st_uid
    if os.geteuid() == 0 and owner != 0:
        os.close(fd)
        raise StoreError(f"{paths.cas_tmp} belongs to uid {owner}, not root",
                         hint=f"give it to root: chown root {paths.cas_tmp}")
    return fd


def private_dir(paths: Paths) -> Path:
    """This process's own temp directory under ``cas/tmp`` (made on first use, after
    collecting what dead processes left)."""
    held = _held.get(paths.cas_tmp)
    if held is not None and held[0] == os.getpid():  # (not a forked child's parent's)
        return held[2]
    ensure_dir(paths.data, paths.cas_tmp)
    ensure_dir(paths.data, paths.cas_locks)
    collect(paths)
    tmp_fd = _open_tmp(paths)
    try:
        with flocked(_create_lock(paths), exclusive=False):
            name = _mkdir_private(paths, tmp_fd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=tmp_fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(tmp_fd)
    if not _held:
        atexit.register(_remove_own)
    d = paths.cas_tmp / name
    _held[paths.cas_tmp] = (os.getpid(), fd, d)
    return d


def _mkdir_private(paths: Paths, tmp_fd: int) -> str:
    for _ in range(100):
        name = PRIVATE_PREFIX + secrets.token_hex(6)
        try:
            os.mkdir(name, 0o700, dir_fd=tmp_fd)
            return name
        except FileExistsError:
            continue
        except OSError as e:
            raise StoreError(f"cannot create a temp directory in {paths.cas_tmp}: "
                             f"{e.strerror}") from e
    raise StoreError(f"cannot create a temp directory in {paths.cas_tmp}: no free name")


def _remove_own() -> None:
    for key, (pid, fd, d) in list(_held.items()):
        if pid != os.getpid():  # a forked child leaves its parent's dirs alone
            continue
        shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(fd)
        del _held[key]


def is_partial(name: str) -> bool:
    """A resumable download's file: the partial, its sidecar or the sidecar's temp file."""
    return name.startswith(PARTIAL_PREFIX)


def partial_lock(paths: Paths, name: str) -> Path:
    return paths.cas_locks / name.split(".", 1)[0]


@contextlib.contextmanager
def hold_partial(paths: Paths, part: Path) -> Iterator[None]:
    """Use the resumable partial ``part`` alone: another fetch of the same URL waits, and
    :func:`collect` leaves it."""
    ensure_dir(paths.data, paths.cas_locks)
    with flocked(partial_lock(paths, part.name)):
        yield


def _stale_entry(tmp_fd: int, name: str, is_dir: bool) -> int | None:
    """A descriptor of the entry with an exclusive flock when no live process holds it."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
                     | (os.O_DIRECTORY if is_dir else 0), dir_fd=tmp_fd)
    except OSError:
        return None
    if not try_lock(fd):
        os.close(fd)
        return None
    return fd


def _remove(tmp_fd: int, name: str, is_dir: bool) -> bool:
    try:
        if is_dir:
            shutil.rmtree(name, dir_fd=tmp_fd)  # fd-based: no symlink inside is followed
        else:
            os.unlink(name, dir_fd=tmp_fd)
    except OSError:
        return False  # gone meanwhile, or another user's leftovers (root's collection takes them)
    return True


def collect(paths: Paths, now: float | None = None) -> list[Path]:
    """Remove what no live process holds in ``cas/tmp``: dead processes' private dirs and
    loose files, and resumable partials untouched for ``PARTIAL_MAX_AGE``. Returns them.
    Skipped, not waited for, while another process holds the collection lock."""
    if not os.path.isdir(paths.cas_tmp) or not os.path.isdir(paths.cas_locks):
        return []
    now = time.time() if now is None else now
    lock_fd = try_flock(_create_lock(paths))
    if lock_fd is None:
        return []
    removed: list[Path] = []
    try:
        tmp_fd = _open_tmp(paths)
        try:
            for name in os.listdir(tmp_fd):
                if _collect_one(paths, tmp_fd, name, now):
                    removed.append(paths.cas_tmp / name)
        finally:
            os.close(tmp_fd)
    finally:
        os.close(lock_fd)
    return removed


def _collect_one(paths: Paths, tmp_fd: int, name: str, now: float) -> bool:
    try:
        st = os.stat(name, dir_fd=tmp_fd, follow_symlinks=False)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode) or not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return _remove(tmp_fd, name, False)  # nothing of ours: a planted link or FIFO
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_partial(name) and not is_dir:
        if now - st.st_mtime < PARTIAL_MAX_AGE:
            return False
        lfd = try_flock(partial_lock(paths, name))
        if lfd is None:
            return False  # a fetch is using it
        try:
            return _remove(tmp_fd, name, False)
        finally:
            os.close(lfd)
    fd = _stale_entry(tmp_fd, name, is_dir)
    if fd is None:
        return False
    try:
        return _remove(tmp_fd, name, is_dir)
    finally:
        os.close(fd)
