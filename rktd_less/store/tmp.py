"""The store's temp area ``cas/tmp``, and collecting what dead processes left there (issue 9).

* Each process that needs temp space gets a private directory ``cas/tmp/p-<random>``, held
  with an flock on the directory for the rest of the process's life and removed at exit.
  A process killed with SIGKILL leaves it unlocked: :func:`collect` removes every unlocked
  one (and any loose file an older version left), so nothing outlives its process for long.
* Resumable downloads (``dl-<hash>.part`` and its ``.meta``) live directly in ``cas/tmp`` so
  that a later fetch of the same URL continues them; while in use they are locked through
  ``cas/locks/dl-<hash>`` (:func:`hold_partial`), and one left untouched for
  ``PARTIAL_MAX_AGE`` is collected.

Creating a private directory and locking it happen under a shared flock on
``cas/locks/tmp``; :func:`collect` takes it exclusively, so it never sees a directory between
its mkdir and its flock.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError
from ..paths import Paths
from .lock import ensure_dir, flocked

PRIVATE_PREFIX = "p-"
PARTIAL_PREFIX = "dl-"
PARTIAL_MAX_AGE = 24 * 3600.0  # s since a partial download was last written

_held: dict[Path, tuple[int, int, Path]] = {}  # cas/tmp → (pid, locked fd, the pid's dir)


def _create_lock(paths: Paths) -> Path:
    return paths.cas_locks / "tmp"


def private_dir(paths: Paths) -> Path:
    """This process's own temp directory under ``cas/tmp`` (made on first use, after
    collecting what dead processes left)."""
    held = _held.get(paths.cas_tmp)
    if held is not None and held[0] == os.getpid():  # (not a forked child's parent's)
        return held[2]
    ensure_dir(paths.data, paths.cas_tmp)
    ensure_dir(paths.data, paths.cas_locks)
    collect(paths)
    with flocked(_create_lock(paths), exclusive=False):
        try:
            d = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX, dir=paths.cas_tmp))
        except OSError as e:
            raise StoreError(f"cannot create a temp directory in {paths.cas_tmp}: "
                             f"{e.strerror}") from e
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
    if not _held:
        atexit.register(_remove_own)
    _held[paths.cas_tmp] = (os.getpid(), fd, d)
    return d


def _remove_own() -> None:
    for key, (pid, fd, d) in list(_held.items()):
        if pid != os.getpid():  # a forked child leaves its parent's dirs alone
            continue
        shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(fd)
        del _held[key]


def is_partial(name: str) -> bool:
    return name.startswith(PARTIAL_PREFIX) and (name.endswith(".part")
                                                or name.endswith(".part.meta"))


def partial_lock(paths: Paths, part: Path) -> Path:
    return paths.cas_locks / part.name.split(".", 1)[0]


@contextlib.contextmanager
def hold_partial(paths: Paths, part: Path) -> Iterator[None]:
    """Use the resumable partial ``part`` alone: another fetch of the same URL waits, and
    :func:`collect` leaves it."""
    ensure_dir(paths.data, paths.cas_locks)
    with flocked(partial_lock(paths, part)):
        yield


def _try_lock(path: Path, is_dir: bool) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if a live process holds it (or
    it is gone, or not ours to open)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
                     | (os.O_DIRECTORY if is_dir else 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def _remove(path: Path, is_dir: bool) -> bool:
    try:
        if is_dir:
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return False  # another user's leftovers: root's collection takes them
    return True


def collect(paths: Paths, now: float | None = None) -> list[Path]:
    """Remove what no live process holds in ``cas/tmp``: dead processes' private dirs and
    loose files, and resumable partials untouched for ``PARTIAL_MAX_AGE``. Returns them."""
    if not paths.cas_tmp.is_dir():
        return []
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(paths.cas_tmp))
    except OSError:
        return []
    with flocked(_create_lock(paths)):
        for entry in entries:
            path = Path(entry.path)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if is_partial(entry.name):
                if now - st.st_mtime < PARTIAL_MAX_AGE:
                    continue
                lock = partial_lock(paths, path)
                lfd = _try_lock(lock, False) if lock.exists() else -1
                if lfd is None:
                    continue  # a fetch is using it
                try:
                    if _remove(path, False):
                        removed.append(path)
                finally:
                    if lfd >= 0:
                        os.close(lfd)
                continue
            fd = _try_lock(path, is_dir)
            if fd is None:
                continue
            try:
                if _remove(path, is_dir):
                    removed.append(path)
            finally:
                os.close(fd)
    return removed
