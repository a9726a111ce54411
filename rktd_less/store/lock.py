"""Advisory file locks (flock) and small durable-write helpers for the store.

Everything created here gets the store's group and modes (:mod:`.perms`).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import PermissionDenied, RktError, StoreError
from ..fsio import try_lock
from .perms import Role, apply_fd, current, role_of

DIR_MODE = 0o755  # without group rkt; see perms.decide


def _denied(what: str, path: Path, e: OSError) -> RktError:
    if e.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"cannot {what} {path}: {e.strerror}",
                                hint="run as root or as a member of group rkt")
    return StoreError(f"cannot {what} {path}: {e.strerror}")


def makedirs(path: Path, role: Role = Role.DIR, parents: Role | None = Role.DIR) -> None:
    """Create ``path`` and missing parents. ``path`` gets ``role``'s group and mode, created
    parents ``parents``' (None: what mkdir and the umask give, for dirs outside the store)."""
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        which = role if d == path else parents
        try:
            d.mkdir(mode=0o777 if which is None else 0o700)
        except FileExistsError:
            if d.is_dir():
                continue  # created by a concurrent process, with its perms
            raise StoreError(f"cannot create store directory {d}: not a directory") from None
        except OSError as e:
            raise _denied("create store directory", d, e) from e
        if which is None:
            continue
        try:
            # by descriptor: the parent may be group-writable, the name swapped meanwhile
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                apply_fd(fd, current(which))
            finally:
                os.close(fd)
        except OSError as e:
            raise _denied("set the permissions of", d, e) from e


def ensure_dir(data: Path, path: Path) -> None:
    """Create ``path`` — the data dir ``data`` or a directory below it — and every missing
    directory on the way, each with the group and mode of its role (:func:`.perms.role_of`,
    those of units/tmpfiles.d), whichever command comes first. Directories above the data dir
    get what mkdir and the umask give."""
    if not data.is_dir():
        makedirs(data, Role.DATA_DIR, parents=None)
    cur = data
    for part in path.relative_to(data).parts:
        cur = cur / part
        if not cur.is_dir():
            makedirs(cur, role_of(data, cur), parents=None)


# Lock directories are group-writable: never follow a symlink planted there by another user.
_LOCK_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW


def _open_lock(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _LOCK_FLAGS, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise _denied("open lock file", path, e) from e
    else:
        try:
            apply_fd(fd, current(Role.SHARED_FILE))
        except OSError:
            os.close(fd)
            raise
        return fd
    try:
        return os.open(path, os.O_RDWR | _LOCK_FLAGS)
    except PermissionError:
        pass  # another user's lock file: flock works on a read-only descriptor too
    except FileNotFoundError:
        return _open_lock(path)  # removed in between (never done by rkt, but be safe)
    except OSError as e:
        raise _denied("open lock file", path, e) from e
    try:
        return os.open(path, os.O_RDONLY | _LOCK_FLAGS)
    except OSError as e:
        raise _denied("open lock file", path, e) from e


@contextmanager
def flocked(path: Path, *, exclusive: bool = True) -> Iterator[None]:
    """Hold an flock on ``path`` (created if needed); released when the block ends."""
    makedirs(path.parent)
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def try_flock(path: Path) -> int | None:
    """A descriptor holding an exclusive flock on ``path`` (created if needed), or None when
    another process holds it. Closing the descriptor releases it."""
    fd = _open_lock(path)
    if not try_lock(fd):
        os.close(fd)
        return None
    return fd


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory, fsync, rename.

    The file gets the store's write-once file perms unless ``mode`` is given."""
    import tempfile

    makedirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            perms = current(Role.FILE)
            apply_fd(f.fileno(), perms if mode is None else type(perms)(mode, perms.gid))
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
