"""Writing the squashed ACI tar: headers, and file data copied from the spool file.

Headers are packed here: ustar, plus a PAX header for what ustar cannot hold (long or
non-ASCII names, big numbers, sub-second times, extended attributes). Five times faster than
``TarInfo.tobuf``, which made up most of the write time, and byte for byte the same for plain
entries.
File data is copied from the spool in the kernel (``copy_file_range``) when large, through one
buffered write together with the headers when small.
"""

from __future__ import annotations

import errno
import os
import struct
import tarfile

# PAX records carried over: extended attributes (file capabilities!) and ACLs. Names, sizes,
# owners and times are written anew from the header fields; sparse maps do not apply to the
# expanded data written here.
KEEP_PAX = ("SCHILY.xattr.", "LIBARCHIVE.xattr.", "SCHILY.acl.")
BLOCK = tarfile.BLOCKSIZE
_NUL = b"\0"
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_BIG_COPY = 1 << 16  # smaller files go through the header buffer
_FLUSH_AT = 1 << 20
_CHUNK = 1 << 20


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _split(name: bytes) -> tuple[bytes, bytes] | None:
    """ustar's (prefix, name) for a long name, or None if it cannot be split."""
    i = name.find(b"/", max(0, len(name) - 101))
    while i != -1:
        if 0 < i <= 155 and 0 < len(name) - i - 1 <= 100:
            return name[:i], name[i + 1 :]
        i = name.find(b"/", i + 1)
    return None


def _block(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, type_: bytes,
           link: bytes, uname: bytes, gname: bytes, major: int, minor: int,
           prefix: bytes = b"") -> bytes:
    hdr = bytearray(_USTAR.pack(
        name, _octal(mode, 8), _octal(uid, 8), _octal(gid, 8), _octal(size, 12),
        _octal(mtime, 12), b"        ", type_, link, b"ustar\0", b"00", uname, gname,
        _octal(major, 8), _octal(minor, 8), prefix))
    hdr[148:155] = b"%06o\0" % sum(hdr)
    return bytes(hdr)


def _record(key: str, value: bytes) -> bytes:
    """One PAX record, ``"<length> <key>=<value>\\n"``, the length counting itself."""
    body = b" %s=%s\n" % (key.encode(), value)
    n = len(body) + 1
    while len(b"%d" % n) + len(body) != n:
        n = len(b"%d" % n) + len(body)
    return b"%d" % n + body


def _fit(raw: bytes, width: int, key: str, records: list[bytes]) -> bytes:
    if raw.isascii() and len(raw) <= width:
        return raw
    records.append(_record(key, raw))
    return raw[:width]


def _number(value: int, limit: int, key: str, records: list[bytes]) -> int:
    if 0 <= value < limit:
        return value
    records.append(_record(key, b"%d" % value))
    return 0


def header(src: tarfile.TarInfo, name: str, type_: bytes | None = None, *, size: int = 0,
           link: str | None = None) -> bytes:
    """The header block(s) of ``src`` renamed ``name`` (type, size and link target changed
    if given), keeping mode, owners, times, devices and extended attributes.

    What a ustar header cannot hold goes to a PAX header as GNU tar writes it: values are
    the raw bytes (binary capabilities, names that are not UTF-8), without the
    ``hdrcharset`` record Python's tarfile adds and GNU tar warns about.
    """
    type_ = src.type if type_ is None else type_
    records: list[bytes] = []
    raw = name.encode("utf-8", "surrogateescape")
    if type_ == tarfile.DIRTYPE and not raw.endswith(b"/"):
        raw += b"/"
    prefix = b""
    if len(raw) > 100 and raw.isascii():
        parts = _split(raw)
        if parts is not None:
            prefix, raw = parts
    raw = _fit(raw, 100, "path", records)
    linkname = _fit((src.linkname if link is None else link).encode("utf-8", "surrogateescape"),
                    100, "linkpath", records)
    uname = _fit(src.uname.encode("utf-8", "surrogateescape"), 32, "uname", records)
    gname = _fit(src.gname.encode("utf-8", "surrogateescape"), 32, "gname", records)
    uid = _number(src.uid, 8**7, "uid", records)
    gid = _number(src.gid, 8**7, "gid", records)
    size_field = _number(size, 8**11, "size", records)
    mtime = src.mtime
    if isinstance(mtime, int) and 0 <= mtime < 8**11:
        mtime_field = mtime
    else:  # sub-second or out-of-range times, as PAX keeps them
        records.append(_record("mtime", repr(mtime).encode()))
        mtime_field = int(mtime) if 0 <= int(mtime) < 8**11 else 0
    if src.pax_headers:
        for key, value in src.pax_headers.items():
            if key.startswith(KEEP_PAX):
                records.append(_record(key, value.encode("utf-8", "surrogateescape")))
    major = src.devmajor if 0 <= src.devmajor < 8**7 else 0
    minor = src.devminor if 0 <= src.devminor < 8**7 else 0
    hdr = _block(raw, src.mode & 0o7777, uid, gid, size_field, mtime_field, type_, linkname,
                 uname, gname, major, minor, prefix)
    if not records:
        return hdr
    body = b"".join(records)
    pax = _block(b"././@PaxHeader", 0o644, 0, 0, len(body), mtime_field, tarfile.XHDTYPE,
                 b"", b"", b"", 0, 0)
    return pax + body + _NUL * (-len(body) % BLOCK) + hdr


def new_info(type_: bytes, mode: int, *, size: int = 0, link: str = "") -> tarfile.TarInfo:
    """Metadata of an entry the conversion makes itself (root-owned, mtime 0 as docker2aci)."""
    ti = tarfile.TarInfo("")
    ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = type_, mode, size, link, 0
    ti.uname = ti.gname = ""
    return ti


class Writer:
    """Tar output on a file descriptor, file data copied from ``spool_fd``."""

    def __init__(self, fd: int, spool_fd: int) -> None:
        self.fd = fd
        self.spool_fd = spool_fd
        self.buf = bytearray()
        self.total = 0
        self.in_kernel = True

    def add(self, hdr: bytes) -> None:
        self.buf += hdr

    def data(self, data: bytes) -> None:
        self.buf += data
        self.buf += _NUL * (-len(data) % BLOCK)

    def flush(self) -> None:
        view = memoryview(self.buf)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.total += len(self.buf)
        self.buf = bytearray()

    def copy(self, offset: int, size: int) -> None:
        """Append ``size`` bytes of the spool at ``offset`` as an entry's data."""
        if size >= _BIG_COPY:
            self.flush()
            done = self._kernel_copy(offset, size) if self.in_kernel else 0
            self._user_copy(offset + done, size - done)
            self.total += size
        elif size:
            data = os.pread(self.spool_fd, size, offset)
            if len(data) != size:
                raise OSError(errno.EIO, "the spool file is shorter than expected")
            self.buf += data
        self.buf += _NUL * (-size % BLOCK)
        if len(self.buf) >= _FLUSH_AT:
            self.flush()

    def _kernel_copy(self, offset: int, size: int) -> int:
        done = 0
        try:
            while done < size:
                n = os.copy_file_range(self.spool_fd, self.fd, size - done, offset + done)
                if n == 0:
                    break
                done += n
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            self.in_kernel = False  # e.g. across file systems on older kernels
        return done

    def _user_copy(self, offset: int, size: int) -> None:
        while size > 0:
            chunk = os.pread(self.spool_fd, min(size, _CHUNK), offset)
            if not chunk:
                raise OSError(errno.EIO, "the spool file is shorter than expected")
            view = memoryview(chunk)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            offset += len(chunk)
            size -= len(chunk)

    def end(self) -> None:
        """The end-of-archive blocks, padded to a full record as tar writers do."""
        self.buf += _NUL * (2 * BLOCK)
        self.buf += _NUL * (-(self.total + len(self.buf)) % tarfile.RECORDSIZE)
        self.flush()
