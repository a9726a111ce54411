"""Why an app's program could not be executed, as rkt's stage1 ``diagnostic`` said it: the
program, then its interpreter (a script's ``#!`` line, an ELF program's ``PT_INTERP``, the
dynamic loader), then that one's, each looked up in the app's rootfs; the first that is not
there is named (``Error: Unable to open "/lib64/ld-linux-x86-64.so.2": No such file or
directory``).

The run entrypoint works it out for each app before the pod boots and leaves the message in
``rkt/diag/<app>``; the app's reaper prints it should the program fail with systemd's 203
(EXIT_EXEC), instead of saying only that something may be missing. Reading a few kB of the
program costs nothing next to a pod start. Pure file reading, standard library only.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

from ..common.volumes import safe_target
from ..errors import PodError

MAX_DEPTH = 10  # rkt's MAX_DIAG_DEPTH: interpreters of interpreters
_HEAD = 4096
PT_INTERP = 3


def _in_root(root: Path, path: str) -> Path | None:
    """``path`` as the app sees it from its chroot (symlinks followed inside ``root``), if it
    is there."""
    try:
        host = safe_target(root, path)
    except PodError:  # a link loop, or the root itself
        return None
    return host if os.path.lexists(host) else None


def elf_interpreter(read_at: Callable[[int, int], bytes]) -> str | None:
    """The ``PT_INTERP`` path of an ELF file read with ``read_at(offset, size)``; None for a
    static program or anything that is not ELF."""
    head = read_at(0, 0x40)
    if len(head) < 0x34 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) \
            or head[5] not in (1, 2):
        return None
    e = "<" if head[5] == 1 else ">"
    wide = head[4] == 2  # ELFCLASS64
    if wide and len(head) < 0x40:
        return None
    phoff = struct.unpack_from(e + ("Q" if wide else "I"), head, 0x20 if wide else 0x1C)[0]
    phentsize, phnum = struct.unpack_from(e + "HH", head, 0x36 if wide else 0x2A)
    word = e + ("Q" if wide else "I")
    for i in range(min(phnum, 256)):
        ph = read_at(phoff + i * phentsize, phentsize)
        if len(ph) < (0x38 if wide else 0x20):
            return None
        if struct.unpack_from(e + "I", ph, 0)[0] != PT_INTERP:
            continue
        off = struct.unpack_from(word, ph, 8 if wide else 4)[0]
        size = struct.unpack_from(word, ph, 32 if wide else 16)[0]
        raw = read_at(off, min(size, 4096))
        return raw.split(b"\0", 1)[0].decode(errors="replace") or None
    return None


def _interpreter(path: Path) -> str | None:
    """A script's ``#!`` interpreter or an ELF program's loader; None if it names none."""
    with open(path, "rb") as f:
        head = f.read(_HEAD)
        if head.startswith(b"#!"):
            line = head[2:].split(b"\n", 1)[0].strip()
            return line.split()[0].decode(errors="replace") if line else None

        def read_at(off: int, n: int) -> bytes:
            f.seek(off)
            return f.read(n)

        return elf_interpreter(read_at)


def exec_problem(root: Path, program: str) -> str | None:
    """rkt's message for a program (absolute, as the app sees it) that cannot be executed, or
    None when the program and its interpreters are all there (then the reaper's own wording
    stays: a shared library may be missing)."""
    path = program
    for _ in range(MAX_DEPTH):
        host = _in_root(root, path)
        if host is None:
            return f'Error: Unable to open "{path}": No such file or directory'
        if not host.is_file():
            return None  # a directory and the like: the reaper says "Permission denied"
        if not os.stat(host).st_mode & 0o111:
            # the program itself: the reaper's "Unable to execute ...: Permission denied"
            return None if path == program else f'Error: "{path}" is not executable'
        try:
            interp = _interpreter(host)
        except OSError:
            return None
        if interp is None:
            return None
        if not interp.startswith("/"):
            return f'Error: Path must be absolute: "{interp}"'
        path = interp
    return "Error: Excessive interpreter recursion, giving up"
