"""Writing the squashed ACI tar: headers, and file data copied from the spool file.

Most entries fit a plain ustar header (ASCII names, small numbers, no extended attributes);
those are packed here directly, five times faster than ``TarInfo.tobuf`` (which made up most
of the write time). Anything else goes through ``tarfile``'s PAX writer, as it would anyway.
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


def header(src: tarfile.TarInfo, name: str, type_: bytes | None = None, *, size: int = 0,
           link: str | None = None) -> bytes:
    """The header(s) of ``src`` renamed ``name`` (type, size and link target changed if
    given), keeping mode, owners, times, devices and extended attributes."""
    type_ = src.type if type_ is None else type_
    linkname = src.linkname if link is None else link
    pax = {k: v for k, v in src.pax_headers.items() if k.startswith(KEEP_PAX)} \
        if src.pax_headers else None
    mtime = src.mtime
    if not pax and isinstance(mtime, int) and 0 <= mtime < 8**11 and 0 <= src.uid < 8**7 \
            and 0 <= src.gid < 8**7 and size < 8**11 and src.devmajor < 8**7 \
            and src.devminor < 8**7 and name.isascii() and linkname.isascii() \
            and src.uname.isascii() and src.gname.isascii() and len(linkname) <= 100 \
            and len(src.uname) <= 32 and len(src.gname) <= 32:
        raw = name.encode("ascii")
        if type_ == tarfile.DIRTYPE and not raw.endswith(b"/"):
            raw += b"/"
        prefix = b""
        if len(raw) > 100:
            parts = _split(raw)
            if parts is not None:
                prefix, raw = parts
        if len(raw) <= 100:
            hdr = bytearray(_USTAR.pack(
                raw, _octal(src.mode & 0o7777, 8), _octal(src.uid, 8), _octal(src.gid, 8),
                _octal(size, 12), _octal(mtime, 12), b"        ", type_,
                linkname.encode("ascii"), b"ustar\0", b"00", src.uname.encode("ascii"),
                src.gname.encode("ascii"), _octal(src.devmajor, 8), _octal(src.devminor, 8),
                prefix))
            hdr[148:155] = b"%06o\0" % sum(hdr)
            return bytes(hdr)
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.mode = src.mode & 0o7777
    ti.uid, ti.gid, ti.uname, ti.gname = src.uid, src.gid, src.uname, src.gname
    ti.mtime = mtime
    ti.size = size
    ti.linkname = linkname
    ti.devmajor, ti.devminor = src.devmajor, src.devminor
    if pax:
        ti.pax_headers = pax
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


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
