"""rkt's diagnostic of a program that cannot be executed: the first missing link of the
program -> interpreter chain, looked up inside the app's rootfs."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from rktd_less.stage1.diagnose import elf_interpreter, exec_problem


def put(root: Path, path: str, data: bytes, mode: int = 0o755) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.chmod(p, mode)


def test_chain_of_interpreters(tmp_path: Path) -> None:
    assert exec_problem(tmp_path, "/bin/app") == \
        'Error: Unable to open "/bin/app": No such file or directory'
    put(tmp_path, "/bin/app", b"#!/usr/bin/env python3\n")
    assert exec_problem(tmp_path, "/bin/app") == \
        'Error: Unable to open "/usr/bin/env": No such file or directory'
    put(tmp_path, "/usr/bin/env", Path("/usr/bin/env").read_bytes())
    loader = elf_interpreter(lambda off, n: Path("/usr/bin/env").read_bytes()[off:off + n])
    assert loader and loader.startswith("/")
    assert exec_problem(tmp_path, "/bin/app") == \
        f'Error: Unable to open "{loader}": No such file or directory'
    # the loader there (through a link, as Debian's /lib64 -> usr/lib64): nothing to say
    put(tmp_path, "/usr" + loader, b"\x7fELF static-ish")
    (tmp_path / loader.split("/")[1]).symlink_to("usr/" + loader.split("/")[1])
    assert exec_problem(tmp_path, "/bin/app") is None


def test_not_executable_relative_and_loops(tmp_path: Path) -> None:
    put(tmp_path, "/bin/data", b"x", 0o644)
    assert exec_problem(tmp_path, "/bin/data") is None  # the reaper: "Permission denied"
    put(tmp_path, "/bin/script", b"#!/bin/data\n")
    assert exec_problem(tmp_path, "/bin/script") == 'Error: "/bin/data" is not executable'
    put(tmp_path, "/bin/rel", b"#!bash\n")
    assert exec_problem(tmp_path, "/bin/rel") == 'Error: Path must be absolute: "bash"'
    put(tmp_path, "/bin/self", b"#!/bin/self\n")
    assert exec_problem(tmp_path, "/bin/self") == \
        "Error: Excessive interpreter recursion, giving up"
    (tmp_path / "bin/loop").symlink_to("loop")
    assert exec_problem(tmp_path, "/bin/loop") == \
        'Error: Unable to open "/bin/loop": No such file or directory'
    # a link may not lead out of the app's rootfs
    (tmp_path / "bin/out").symlink_to("../../../../usr/bin/env")
    assert exec_problem(tmp_path, "/bin/out") == \
        'Error: Unable to open "/bin/out": No such file or directory'


def test_elf32_big_endian_interpreter() -> None:
    interp = b"/lib/ld.so.1\0"
    ehdr = bytearray(0x34)
    ehdr[:6] = b"\x7fELF\x01\x02"  # 32-bit, big-endian
    struct.pack_into(">I", ehdr, 0x1C, 0x34)  # e_phoff
    struct.pack_into(">HH", ehdr, 0x2A, 0x20, 2)  # e_phentsize, e_phnum
    load = struct.pack(">8I", 1, 0, 0, 0, 0, 0, 0, 0)
    pinterp = struct.pack(">8I", 3, 0x74, 0, 0, len(interp), 0, 0, 0)
    image = bytes(ehdr) + load + pinterp + interp
    assert elf_interpreter(lambda off, n: image[off:off + n]) == "/lib/ld.so.1"
    assert elf_interpreter(lambda off, n: b"#!/bin/sh\n"[off:off + n]) is None
