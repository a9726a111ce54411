"""Docker/OCI layer tars for tests, from compact entry specs.

    build_layer(tmp / "l1", [d("etc"), f("etc/passwd", b"root:x:0:0::/:/bin/sh\\n"),
                             hard("etc/passwd2", "etc/passwd"), sym("bin", "usr/bin"),
                             wh("etc/old"), opq("var/cache"), chardev("dev/null", 1, 3)],
                compress="gzip")

returns ``(path, media type)``, what :func:`rktd_less.convert.squash.squash` takes. Names are
written exactly as given (``/abs``, ``../x``, ``./x`` included), so the same helpers build
malicious layers. Fixed owners and mtimes: the same specs give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Compress = Literal["gzip", "zstd"] | None
Kind = Literal["file", "dir", "symlink", "hardlink", "fifo", "char", "block"]

MTIME = 1_600_000_000
MEDIA_TYPES: Mapping[Compress, str] = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    None: "application/vnd.oci.image.layer.v1.tar",
}
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_TYPES: Mapping[Kind, bytes] = {
    "file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
}


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Kind = "file"
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    xattrs: Mapping[str, bytes] = field(default_factory=dict)
    major: int = 0
    minor: int = 0


def f(name: str, data: bytes = b"", mode: int = 0o644, *, uid: int = 0, gid: int = 0,
      mtime: int = MTIME, xattrs: Mapping[str, bytes] | None = None) -> Entry:
    return Entry(name, "file", data, mode=mode, uid=uid, gid=gid, mtime=mtime,
                 xattrs=xattrs or {})


def d(name: str, mode: int = 0o755, *, uid: int = 0, gid: int = 0, mtime: int = MTIME,
      xattrs: Mapping[str, bytes] | None = None) -> Entry:
    return Entry(name, "dir", mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=xattrs or {})


def sym(name: str, target: str) -> Entry:
    return Entry(name, "symlink", link=target, mode=0o777)


def hard(name: str, target: str) -> Entry:
    return Entry(name, "hardlink", link=target)


def fifo(name: str, mode: int = 0o600) -> Entry:
    return Entry(name, "fifo", mode=mode)


def chardev(name: str, major: int, minor: int, mode: int = 0o666) -> Entry:
    return Entry(name, "char", mode=mode, major=major, minor=minor)


def blockdev(name: str, major: int, minor: int, mode: int = 0o660) -> Entry:
    return Entry(name, "block", mode=mode, major=major, minor=minor)


def wh(path: str) -> Entry:
    """The whiteout that deletes ``path`` from the layers below."""
    parent, _, base = path.rpartition("/")
    return f(f"{parent}/.wh.{base}" if parent else f".wh.{base}")


def opq(dir_: str) -> Entry:
    """The marker that makes ``dir_`` opaque: hides everything below it in lower layers."""
    dir_ = dir_.strip("/")
    return f(f"{dir_}/.wh..wh..opq" if dir_ else ".wh..wh..opq")


def tar_bytes(entries: Sequence[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type = _TYPES[e.kind]
            ti.mode = e.mode
            ti.uid, ti.gid = e.uid, e.gid
            ti.uname = ti.gname = ""
            ti.mtime = e.mtime
            ti.linkname = e.link
            ti.devmajor, ti.devminor = e.major, e.minor
            if e.xattrs:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                                  for k, v in e.xattrs.items()}
            if e.kind == "file":
                ti.size = len(e.data)
                tar.addfile(ti, io.BytesIO(e.data))
            else:
                tar.addfile(ti)
    return buf.getvalue()


def zstd_frame(data: bytes, *, checksum: bool = False) -> bytes:
    """One zstd frame (without the content size, as streaming compressors write them)."""
    import zstandard  # tests only: the engine reads zstd in rktd_less.convert.layer

    return zstandard.ZstdCompressor(level=1, write_checksum=checksum,
                                    write_content_size=not checksum).compress(data)


def compress_bytes(data: bytes, compress: Compress) -> bytes:
    if compress == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compress == "zstd":
        return zstd_frame(data)
    return data


def build_layer(dest: Path, entries: Sequence[Entry], *, compress: Compress = "gzip",
                media_type: str | None = None) -> tuple[Path, str]:
    """Write a layer blob; returns ``(dest, media type)``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(compress_bytes(tar_bytes(entries), compress))
    return dest, media_type or MEDIA_TYPES[compress]


def write_raw(dest: Path, data: bytes, media_type: str = MEDIA_TYPES["gzip"]) -> tuple[Path, str]:
    """A blob with exactly ``data`` (corrupt or truncated layers)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest, media_type
