"""The stdin relay of `rkt run --interactive` when the caller's stdin is not a terminal
(`cat file | rkt run --interactive ...`, rkt #2414): a child of stage1 copies the pod's stdin
into the app's stdin FIFO, so the app reads the data and then EOF.

systemd opens ``StandardInput=file:`` anew for every command of the app's service: an event
handler (ExecStartPre=) opens the FIFO before the app does, and may close it without reading.
So the relay serves reader after reader: it writes one chunk at a time and waits until the
chunk was read; bytes a reader leaves unread when it closes are offered again to the next reader.
After the end of input every later reader gets EOF at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import select
import signal
import struct
import termios
import time
from collections.abc import Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
CHUNK = 65536


def _die_with_parent() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _unread(fd: int) -> int:
    buf = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", buf)[0])


def _readers_gone(fd: int) -> bool:
    """A FIFO's write end polls POLLERR once no reader has it open."""
    p = select.poll()
    p.register(fd, select.POLLOUT)
    return any(ev & select.POLLERR for _fd, ev in p.poll(0))


def _serve_one(out: int, pending: bytes, src: int) -> tuple[bytes, bool]:
    """Feed one reader. Returns (bytes still to deliver, end of input reached)."""
    while True:
        if not pending:
            pending = os.read(src, CHUNK)
            if not pending:
                return b"", True
        try:
            n = os.write(out, pending[:CHUNK])
        except BrokenPipeError:
            return pending, False
        sent, pending = pending[:n], pending[n:]
        while (left := _unread(out)) and not _readers_gone(out):
            time.sleep(0.001)
        if left:  # the reader went away without reading all of it: keep it for the next
            return sent[-left:] + pending, False
        if _readers_gone(out):
            return pending, False


def _relay(fifo: Path, src: int) -> None:
    pending, eof = b"", False
    pause = 0.01
    while True:
        out = os.open(fifo, os.O_WRONLY | os.O_CLOEXEC)  # waits for the next reader
        try:
            if not eof:
                pending, eof = _serve_one(out, pending, src)
        finally:
            os.close(out)  # with eof: this reader (and every later one) sees end of input
        if eof:
            # A reader that got EOF may keep the FIFO open, and the open above would return at
            # once again: back off (a later reader, e.g. post-stop, waits at most a second).
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def start_stdin_relay(fifo: Path, close_fds: Sequence[int] = ()) -> int:
    """Fork the relay; returns its pid. It lives until killed with the pod: PR_SET_PDEATHSIG
    ends it with its parent (stage1, then the nspawn stage1 execs), and it is in the pod's
    unit. It holds no other descriptor of ours, in particular not the pod lock ("running")."""
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
        _relay(fifo, 0)
    except BaseException:
        code = 1
    finally:
        os._exit(code)
