"""Swapping two directories in one step: Linux ``renameat2(RENAME_EXCHANGE)``.

Python's ``os`` has no ``renameat2``; glibc has it since 2.28. Where the call or the flag is
missing (old kernel, a file system without it), two renames do it, with a moment in between
when only one of the names exists.
"""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)


def _renameat2(a: Path, b: Path) -> int:
    """0, or the errno of ``renameat2(a, b, RENAME_EXCHANGE)`` (ENOSYS without the call)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return errno.ENOSYS
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return 0
    return ctypes.get_errno()


def exchange(a: Path, b: Path) -> None:
    """``a`` and ``b`` (both existing, in one directory) swap names. Raises OSError."""
    err = _renameat2(a, b)
    if err == 0:
        return
    if err not in _UNSUPPORTED:
        raise OSError(err, os.strerror(err), str(b))
    # Fallback: b to a free name (a new empty dir: rename replaces it), a to b, then that to a.
    spare = Path(tempfile.mkdtemp(prefix=f"{a.name}.", dir=a.parent))
    os.rename(b, spare)
    try:
        os.rename(a, b)
    except OSError:
        os.rename(spare, b)
        raise
    os.rename(spare, a)
