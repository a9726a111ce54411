"""Replacing a small file whole: write a temp file next to it, then rename over it, so a reader
sees the old content or the new, never half of it. Standard library only (stage1 imports it on
the pod start path)."""

from __future__ import annotations

import os
from pathlib import Path


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
