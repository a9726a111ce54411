"""Test images for confinement tests: busybox, the static ``probe`` (tests/helpers/probe.c) and
glibc programs copied from the machine with the libraries ``ldd`` names."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.helpers.aci import FileSpec, build_aci

SOURCE = Path(__file__).with_name("probe.c")
GLIBC_PROGRAMS = ("/usr/bin/sort", "/usr/bin/ls", "/usr/bin/stat", "/usr/bin/cp")


def build_probe(dest: Path) -> Path:
    """Compile the probe, static (no libraries in the image)."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the confinement probe (scripts/install.sh installs it)"
    subprocess.run([gcc, "-static", "-O2", "-Wall", "-o", str(dest), str(SOURCE)], check=True,
                   capture_output=True)
    return dest


def _libraries(program: str) -> list[str]:
    out = subprocess.run(["ldd", program], check=True, capture_output=True, text=True).stdout
    return [m.group(1) for m in re.finditer(r"(/\S+) \(0x", out)]


def glibc_files(programs: Sequence[str] = GLIBC_PROGRAMS) -> dict[str, FileSpec]:
    """Each program and every library it loads, at their own paths; /lib64 etc. are real
    directories in the image, so the dynamic loader's path resolves as on the machine."""
    files: dict[str, FileSpec] = {}
    for prog in programs:
        for path in (prog, *_libraries(prog)):
            real = Path(path).resolve()
            files[path] = (real.read_bytes(), 0o755)
    return files


def build_probe_aci(dest: Path, probe: Path, *, name: str = "example.com/probe",
                    app_extra: Mapping[str, Any] | None = None,
                    glibc: bool = True) -> Path:
    files: dict[str, FileSpec] = {"probe": (probe.read_bytes(), 0o755),
                                  "etc/probe-file": b"owned by root\n"}
    if glibc:
        files.update(glibc_files())
    return build_aci(dest, name=name, version="1.0", files=files, app_extra=app_extra,
                     links={"bin/mknod": "busybox", "bin/grep": "busybox",
                            "bin/mkdir": "busybox", "bin/unshare": "busybox",
                            "bin/readlink": "busybox"})


def probe_aci_for(work: Path, **kw: Any) -> Path:
    """The probe image in ``work`` (built once per directory)."""
    dest = work / "probe.aci"
    if not dest.exists():
        build_probe_aci(dest, build_probe(work / "probe"), **kw)
    return dest
