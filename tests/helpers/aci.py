"""Test ACIs: a real busybox-static image, and raw tars for crafting malicious archives.

Everything is written with fixed mtimes and owners, so the same arguments give the same bytes
(and the same image ID).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Compress = Literal["gzip", "bzip2", "xz"] | None

BUSYBOX = Path("/bin/busybox")  # Debian busybox-static: one static binary, no libraries
APPLETS = ("sh", "echo", "true", "false", "cat", "sleep", "ls", "env", "id", "pwd", "hostname",
           "mount", "ps", "kill", "test", "printf")
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:100:user:/home/user:/bin/sh\n"
GROUP = b"root:x:0:\nusers:x:100:user\n"
MTIME = 1_700_000_000

FileSpec = bytes | tuple[bytes, int]  # content, or (content, mode)


def manifest_dict(*, name: str = "example.com/busybox", version: str | None = "1.0",
                  exec_: Sequence[str] | None = ("/bin/sh",),
                  manifest_extra: Mapping[str, Any] | None = None,
                  app_extra: Mapping[str, Any] | None = None,
                  arch: str = "amd64") -> dict[str, Any]:
    labels = [{"name": "os", "value": "linux"}, {"name": "arch", "value": arch}]
    if version is not None:
        labels.insert(0, {"name": "version", "value": version})
    m: dict[str, Any] = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
                         "labels": labels}
    if exec_ is not None:
        m["app"] = {"exec": list(exec_), "user": "0", "group": "0", **(app_extra or {})}
    m.update(manifest_extra or {})
    return m


def manifest_bytes(**kwargs: Any) -> bytes:
    return json.dumps(manifest_dict(**kwargs), indent=2).encode()


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def _compress(data: bytes, compress: Compress) -> bytes:
    if compress is None:
        return data
    if compress == "gzip":
        return gzip.compress(data, mtime=0)
    if compress == "bzip2":
        return bz2.compress(data)
    if compress == "xz":
        return lzma.compress(data)
    raise ValueError(compress)


def build_aci(dest: Path, *, name: str = "example.com/busybox", version: str | None = "1.0",
              exec_: Sequence[str] | None = ("/bin/sh",),
              files: Mapping[str, FileSpec] | None = None,
              links: Mapping[str, str] | None = None,
              manifest_extra: Mapping[str, Any] | None = None,
              app_extra: Mapping[str, Any] | None = None,
              compress: Compress = None, busybox: bool = True,
              dot_prefix: bool = False, arch: str = "amd64",
              owners: Mapping[str, tuple[int, int]] | None = None) -> Path:
    """Write a valid ACI to ``dest``.

    ``files`` maps paths in the rootfs ("etc/x" or "/etc/x") to content or (content, mode);
    ``links`` maps paths to symlink targets; ``owners`` gives some of them a uid and gid.
    ``exec_=None`` leaves the app out (a dependency image). ``dot_prefix`` names members
    "./rootfs/..." as ``tar -C dir -c .`` does.
    """
    entries: dict[str, tuple[bytes, tarfile.TarInfo]] = {}
    dirs: set[str] = set()
    pre = "./" if dot_prefix else ""

    def add_dirs(path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))

    def add(path: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
        path = path.strip("/")
        add_dirs(path)
        entries[path] = (data, _info(f"{pre}rootfs/{path}", kind, mode, len(data), link))

    if busybox:
        add("bin/busybox", tarfile.REGTYPE, 0o755, BUSYBOX.read_bytes())
        for applet in APPLETS:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, PASSWD)
        add("etc/group", tarfile.REGTYPE, 0o644, GROUP)
    for path, spec in (files or {}).items():
        data, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        add(path, tarfile.REGTYPE, mode, data)
    for path, target in (links or {}).items():
        add(path, tarfile.SYMTYPE, 0o777, link=target)
    for path, (uid, gid) in (owners or {}).items():  # uid/gid of files given above
        ti = entries[path.strip("/")][1]
        ti.uid, ti.gid, ti.uname, ti.gname = uid, gid, "", ""

    manifest = manifest_bytes(name=name, version=version, exec_=exec_,
                              manifest_extra=manifest_extra, app_extra=app_extra, arch=arch)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        if dot_prefix:
            tar.addfile(_info("./", tarfile.DIRTYPE, 0o755))
        tar.addfile(_info(f"{pre}manifest", tarfile.REGTYPE, 0o644, len(manifest)),
                    io.BytesIO(manifest))
        tar.addfile(_info(f"{pre}rootfs", tarfile.DIRTYPE, 0o755))
        for d in sorted(dirs):
            tar.addfile(_info(f"{pre}rootfs/{d}", tarfile.DIRTYPE, 0o755))
        for path in sorted(entries):
            data, ti = entries[path]
            tar.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(_compress(buf.getvalue(), compress))
    return dest


# --- raw archives -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawMember:
    name: str
    kind: Literal["file", "dir", "symlink", "hardlink", "fifo"] = "file"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


def raw_file(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0,
             gid: int = 0) -> RawMember:
    return RawMember(name, "file", data, mode=mode, uid=uid, gid=gid)


def raw_dir(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> RawMember:
    return RawMember(name, "dir", mode=mode, uid=uid, gid=gid)


def raw_symlink(name: str, target: str) -> RawMember:
    return RawMember(name, "symlink", link=target, mode=0o777)


def raw_hardlink(name: str, target: str) -> RawMember:
    return RawMember(name, "hardlink", link=target)


def raw_manifest(**kwargs: Any) -> RawMember:
    return raw_file("manifest", manifest_bytes(**kwargs))


_KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
          "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}


def build_raw_tar(dest: Path, members: Sequence[RawMember], *,
                  compress: Compress = None) -> Path:
    """Write exactly ``members`` (names untouched, no checks) as a tar to ``dest``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            ti = _info(m.name, _KINDS[m.kind], m.mode, len(m.data) if m.kind == "file" else 0,
                       m.link)
            ti.uid, ti.gid = m.uid, m.gid
            tar.addfile(ti, io.BytesIO(m.data) if m.kind == "file" else None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(_compress(buf.getvalue(), compress))
    return dest


def truncate(path: Path, keep: int) -> Path:
    """Cut ``path`` to its first ``keep`` bytes (negative: drop that many from the end)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return path
