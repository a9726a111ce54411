"""Build the default stage1 ACI from ``stage1-nspawn/`` and make sure it is in the store."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import Stage1Error

if TYPE_CHECKING:
    from ..store import Store

STAGE1_NAME = "rktd-less/stage1-nspawn"
SOURCE_LABEL = "source"
SOURCE_DIR = Path(__file__).resolve().parents[2] / "stage1-nspawn"
ENTRYPOINTS = ("init", "stop", "gc", "enter")
_DIRS = ("usr", "proc", "sys", "dev", "run", "tmp", "var/log/journal", "rkt/status", "rkt/env",
         "rkt/iomux", "opt/stage2", "etc/systemd/system")
_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64",
          "var/run": "../run"}
_MTIME = 1_700_000_000  # fixed, so the same sources give the same image ID


def host_arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "aarch64", "i686": "i386"}.get(m, m)


def entry_script(verb: str, python: str) -> bytes:
    return (
        f"#!{python} -I\n"
        "# stage1 entrypoint of rktd-less; the code lives in rktd_less.stage1.entry.\n"
        "import sys\n"
        "from rktd_less.stage1.entry import main\n"
        f"sys.exit(main({verb!r}, sys.argv[1:]))\n"
    ).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, mode: int = 0o644,
         kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.mtime = _MTIME
    ti.type = kind
    ti.mode = mode
    ti.linkname = link
    ti.size = len(data) if data is not None else 0
    tar.addfile(ti, io.BytesIO(data) if data is not None else None)


def source_digest(python: str, source: Path = SOURCE_DIR) -> str:
    """Identifies what the built image would contain: its sources, the interpreter the
    entrypoints use and our version. A changed source gives a new image, not a stale one."""
    h = hashlib.sha256(f"{__version__}\0{python}\0".encode())
    h.update(entry_script("x", python))
    h.update(Path(__file__).read_bytes())
    h.update(repr(host_generators()).encode())
    for path in sorted(source.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(source).as_posix().encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


# The host's generators would run at every pod boot (one process each, some shell scripts):
# none of them has anything to do in a stage1 (no fstab, gettys, init scripts, disks), so the
# stage1 masks them as systemd documents: a same-named link to /dev/null under /etc.
GENERATOR_DIRS = ("system-generators", "system-environment-generators")


def host_generators() -> list[tuple[str, str]]:
    """(generator dir, name) of every generator of the machine's systemd."""
    out = []
    for d in GENERATOR_DIRS:
        try:
            names = sorted(os.listdir(Path("/usr/lib/systemd") / d))
        except FileNotFoundError:
            continue
        out += [(d, n) for n in names]
    return out


def build_aci(dest: Path, python: str | None = None, source: Path = SOURCE_DIR) -> None:
    """Write the stage1 ACI (plain tar) to ``dest``."""
    if not (source / "manifest.json").is_file():
        raise Stage1Error(f"stage1 source not found at {source}",
                          hint="use --stage1-path to name a stage1 image")
    manifest = json.loads((source / "manifest.json").read_text().replace("@VERSION@", __version__))
    python = python or sys.executable
    for label in manifest["labels"]:
        if label["name"] == "arch":
            label["value"] = host_arch()
    manifest["labels"].append({"name": SOURCE_LABEL, "value": source_digest(python, source)})
    os_release = Path("/etc/os-release").resolve().read_bytes()
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "manifest", json.dumps(manifest, indent=2).encode())
        _add(tar, "rootfs", kind=tarfile.DIRTYPE, mode=0o755)
        seen = {"rootfs"}
        for d in _DIRS:
            parts = d.split("/")
            for i in range(1, len(parts) + 1):
                p = "rootfs/" + "/".join(parts[:i])
                if p not in seen:
                    seen.add(p)
                    mode = 0o1777 if p == "rootfs/tmp" else 0o755
                    _add(tar, p, kind=tarfile.DIRTYPE, mode=mode)
        for name, target in _LINKS.items():
            _add(tar, f"rootfs/{name}", kind=tarfile.SYMTYPE, mode=0o777, link=target)
        for gdir, gen in host_generators():
            for i in (3, 4):  # rootfs/etc/systemd, rootfs/etc/systemd/<gdir>
                p = "/".join(["rootfs", "etc", "systemd", gdir][:i])
                if p not in seen:
                    seen.add(p)
                    _add(tar, p, kind=tarfile.DIRTYPE, mode=0o755)
            _add(tar, f"rootfs/etc/systemd/{gdir}/{gen}", kind=tarfile.SYMTYPE, mode=0o777,
                 link="/dev/null")
        _add(tar, "rootfs/etc/os-release", os_release)  # a real file: nspawn checks it
        _add(tar, "rootfs/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _add(tar, "rootfs/etc/group", b"root:x:0:\n")
        for verb in ENTRYPOINTS:
            _add(tar, f"rootfs/{verb}", entry_script(verb, python), mode=0o755)
        static = source / "rootfs"
        for path in sorted(static.rglob("*")):
            rel = "rootfs/" + path.relative_to(static).as_posix()
            if path.is_dir():
                if rel not in seen:
                    seen.add(rel)
                    _add(tar, rel, kind=tarfile.DIRTYPE, mode=0o755)
            else:
                _add(tar, rel, path.read_bytes(), mode=path.stat().st_mode & 0o7777)


def build_to_temp(tmp_dir: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix="stage1-", suffix=".aci", dir=tmp_dir)
    os.close(fd)
    try:
        build_aci(Path(name))
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def ensure_default(store: Store) -> str:
    """The default stage1's store key; built and imported on first use."""
    key = store.find_by_name(STAGE1_NAME, {"version": __version__, "os": "linux",
                                           "arch": host_arch(),
                                           SOURCE_LABEL: source_digest(sys.executable)})
    if key is not None:
        return key
    from ..store.tmp import private_dir

    aci = build_to_temp(private_dir(store.paths))
    try:
        return store.import_aci(aci)
    finally:
        aci.unlink(missing_ok=True)
