"""Build stage1 images (ACI files) from the ``stage1-<flavour>/`` source directories.

This runs when a package is built (setup.py, scripts/build-deb.sh) or by a developer
(``python -m rktd_less.stage1.image OUTDIR``), never on the pod start path: stage0 only ever
sees a stage1 as an ACI file in the stage1 images directory, imported into the store like any
other image (pod/stage1select.py).

An image holds nothing of the machine it was built on except its ``arch`` label: what a pod
needs of the machine it runs on (its os-release, its systemd's generators to mask) the run
entrypoint writes at every start. Its entrypoints are shell shims that run this package's
stage1 code with the interpreter stage0 names in ``RKTD_LESS_PYTHON`` (the one stage0 runs
under, so a virtual environment's install runs its own code), else the system's python3.
Standard library only: setup.py imports it from the source tree.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from .. import __version__
from ..common.contract import PYTHON_ENV, stage1_file_name, stage1_image_name
from ..common.platform import host_arch

SYSTEM_PYTHON = "/usr/bin/python3"
ENTRYPOINTS = ("init", "stop", "gc", "enter", "stop-post")
_DIRS = ("usr", "proc", "sys", "dev", "run", "tmp", "var/log/journal", "rkt/status", "rkt/env",
         "rkt/iomux", "opt/stage2", "etc/systemd/system")
_LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64",
          "var/run": "../run"}
_MTIME = 1_700_000_000  # fixed, so the same sources give the same image ID


class BuildError(Exception):
    pass


# The Python module of a flavour's entrypoints (its ``main(verb, args)``), named in the source's
# manifest; nspawn's is the default.
ENTRY_MODULE_ANNOTATION = "rktd-less.io/stage1/python-entry"
DEFAULT_ENTRY_MODULE = "rktd_less.stage1.entry"


def entry_script(verb: str, module: str = DEFAULT_ENTRY_MODULE) -> bytes:
    code = (f"import sys; from {module} import main; "
            f"sys.exit(main({verb!r}, sys.argv[1:]))")
    return (
        "#!/bin/sh\n"
        "# stage1 entrypoint of rktd-less: its code is the rktd_less package of the rkt that\n"
        f"# started it (${PYTHON_ENV}), else the system's.\n"
        f'exec "${{{PYTHON_ENV}:-{SYSTEM_PYTHON}}}" -I -c "{code}" "$@"\n'
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


def flavour_of(source: Path) -> str:
    """``stage1-nspawn/`` -> ``nspawn``."""
    name = source.name
    if not name.startswith("stage1-") or len(name) == len("stage1-"):
        raise BuildError(f'"{source}": a stage1 source directory is named stage1-<flavour>')
    return name[len("stage1-"):]


def _manifest(source: Path) -> bytes:
    try:
        manifest = json.loads((source / "manifest.json").read_text()
                              .replace("@VERSION@", __version__))
    except (OSError, ValueError) as e:
        raise BuildError(f'"{source / "manifest.json"}": {e}') from None
    if manifest.get("name") != stage1_image_name(flavour_of(source)):
        raise BuildError(f'"{source}/manifest.json" names {manifest.get("name")!r}, '
                         f"expected {stage1_image_name(flavour_of(source))!r}")
    for label in manifest["labels"]:
        if label["name"] == "arch":
            label["value"] = host_arch()
    return json.dumps(manifest, indent=2).encode()


def build_aci(source: Path, dest: Path) -> None:
    """Write the stage1 ACI (plain tar) of ``source`` to ``dest``."""
    manifest = _manifest(source)
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "manifest", manifest)
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
        _add(tar, "rootfs/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _add(tar, "rootfs/etc/group", b"root:x:0:\n")
        module = next((a["value"] for a in json.loads(manifest).get("annotations", [])
                       if a.get("name") == ENTRY_MODULE_ANNOTATION), DEFAULT_ENTRY_MODULE)
        own = source / "entrypoints"  # a flavour's own entrypoint, in place of the Python one
        for verb in ENTRYPOINTS:
            script = own / verb
            _add(tar, f"rootfs/{verb}",
                 script.read_bytes() if script.is_file() else entry_script(verb, module),
                 mode=0o755)
        static = source / "rootfs"
        files = sorted(static.rglob("*"))
        guest = source / "guest"  # a VM flavour's guest files (the initramfs's /init)
        if guest.is_dir():
            _add(tar, "rootfs/guest", kind=tarfile.DIRTYPE, mode=0o755)
            for path in sorted(guest.rglob("*")):
                rel = "rootfs/guest/" + path.relative_to(guest).as_posix()
                if path.is_dir():
                    _add(tar, rel, kind=tarfile.DIRTYPE, mode=0o755)
                else:
                    _add(tar, rel, path.read_bytes(), mode=path.stat().st_mode & 0o7777)
        for path in files:
            rel = "rootfs/" + path.relative_to(static).as_posix()
            if path.is_dir():
                if rel not in seen:
                    seen.add(rel)
                    _add(tar, rel, kind=tarfile.DIRTYPE, mode=0o755)
            else:
                _add(tar, rel, path.read_bytes(), mode=path.stat().st_mode & 0o7777)


def sources(root: Path) -> list[Path]:
    """Every stage1 source directory (``stage1-*/manifest.json``) of a source tree."""
    return sorted(p.parent for p in root.glob("stage1-*/manifest.json"))


def build_all(root: Path, outdir: Path) -> list[Path]:
    """Build every stage1 of the source tree ``root`` into ``outdir``/stage1-<flavour>.aci,
    each written to a temporary file and renamed: a reader never sees half an image."""
    found = sources(root)
    if not found:
        raise BuildError(f'no stage1 sources (stage1-*/manifest.json) under "{root}"')
    outdir.mkdir(parents=True, exist_ok=True)
    built = []
    for source in found:
        dest = outdir / stage1_file_name(flavour_of(source))
        fd, tmp = tempfile.mkstemp(prefix=".stage1-", dir=outdir)
        os.close(fd)
        try:
            build_aci(source, Path(tmp))
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
        built.append(dest)
    return built


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m rktd_less.stage1.image OUTDIR [SOURCE-TREE]", file=sys.stderr)
        return 2
    root = Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parents[2]
    try:
        for path in build_all(root, Path(argv[0])):
            print(path)
    except (BuildError, OSError) as e:
        print(f"stage1 image build: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
