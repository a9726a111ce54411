"""Small file-system primitives shared by pods and the store: replacing a small file whole (a
temp file next to it, then a rename over it, so a reader sees the old content or the new,
never half of it) and taking an flock without waiting. Standard library only (stage1 and
`rkt list` import it on their start paths)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


def try_lock(fd: int, exclusive: bool = True) -> bool:
    """Take an flock on ``fd`` without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def replace_file(path: Path, data: bytes | str, *, mode: int = 0o644,
                 durable: bool = False) -> None:
    """``durable``: fsync the data before the rename (pod state that must survive a crash);
    without it the rename is still atomic for concurrent readers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)  # whatever the umask
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
