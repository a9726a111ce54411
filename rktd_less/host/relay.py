"""The stdin relay of `rkt run --interactive` when the caller's stdin is not a terminal
(`cat file | rkt run --interactive ...`, rkt #2414): a child of stage1 copies the pod's stdin
into the app's stdin FIFO and closes it at end of input, so the app reads the data and then EOF.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
from collections.abc import Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _copy(src: int, dst: int) -> None:
    while True:
        try:
            data = os.read(src, 65536)
        except OSError:
            return
        if not data:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(dst, view)
            except OSError:  # the app closed its stdin (EPIPE): stop
                return
            view = view[n:]


def start_stdin_relay(fifo: Path, close_fds: Sequence[int] = ()) -> int:
    """Fork the relay; returns its pid. It ends at end of input, when the app stops reading,
    or (PR_SET_PDEATHSIG) when its parent — stage1, then the nspawn it execs — is gone. It
    holds no other descriptor of ours: in particular not the pod lock, which means
    "running"."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _die_with_parent()
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(0)
        for fd in close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1)  # nothing keeps the caller's output open but the pod itself
        os.dup2(null, 2)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        out = os.open(fifo, os.O_WRONLY | os.O_CLOEXEC)  # waits until the app opens it
        _copy(0, out)
        os.close(out)
    except BaseException:
        code = 1
    finally:
        os._exit(code)
