"""Reading one Docker/OCI layer blob as a stream of tar members, never extracting it.

The compression is told by the blob's first bytes (gzip, zstd, or none: a plain tar), which
covers every layer media type (``…tar+gzip``, ``…tar+zstd``, ``…tar``, Docker's
``…diff.tar.gzip``) and schema1 layers that have none. Headers are parsed by ``tarfile``;
everything that is not a well-formed archive (corrupt or truncated compressed data, bad
headers, missing data, a tar that stops without its end-of-archive blocks) becomes one
:class:`~rktd_less.errors.ImageError` naming the layer. This is the only module that imports
``zstandard``.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO, NoReturn, Protocol

from ..errors import ImageError

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def layer_error(label: str, detail: str) -> ImageError:
    return ImageError(f"image error: layer {json.dumps(label)}: {detail}")


class _Corrupt(Exception):
    """Damage the libraries would let pass: a bad header tarfile takes for the end of the
    archive, zstd data cut inside a frame."""


class _StrictInfo(tarfile.TarInfo):
    """``TarFile.next()`` ends the archive quietly at a bad or missing header after the first;
    a layer cut short or damaged there must be refused instead."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _StrictInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.HeaderError as e:
            kind = type(e).__name__
            if kind == "EOFHeaderError":  # a zero block: the regular end of the archive
                raise
            if kind == "EmptyHeaderError":
                raise _Corrupt("truncated tar data (no end-of-archive marker)") from e
            raise _Corrupt(f"corrupt tar data ({e})") from e


@functools.cache
def _read_errors() -> tuple[type[Exception], ...]:
    """What reading a layer can raise: codecs, tarfile, and the file itself (OSError)."""
    import zstandard

    return (zlib.error, EOFError, OSError, tarfile.TarError, _Corrupt, zstandard.ZstdError)


def fail(label: str, e: BaseException) -> NoReturn:
    """Raise the ImageError for a read failure ``e`` of layer ``label``."""
    if isinstance(e, _Corrupt):
        detail = str(e)
    elif isinstance(e, EOFError):
        detail = "truncated compressed data"
    elif isinstance(e, tarfile.ReadError) and "unexpected end" in str(e):
        detail = "truncated tar data"
    elif isinstance(e, tarfile.TarError):
        detail = f"corrupt tar data ({e})"
    elif isinstance(e, OSError) and e.strerror:
        detail = f"cannot read: {e.strerror}"
    else:
        detail = f"corrupt compressed data ({e})"
    raise layer_error(label, detail) from e


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _decompressed(raw: BinaryIO) -> _Readable:
    head = raw.read(4)
    raw.seek(0)
    if head.startswith(GZIP_MAGIC):
        return _Gunzip(raw)
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        check_zstd_frames(raw)
        reader: _Readable = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=CHUNK, read_across_frames=True, closefd=False)
        return reader
    return raw


_ZSTD_FRAME = 0xFD2FB528
_ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)


def check_zstd_frames(raw: BinaryIO) -> None:
    """Walk the frame and block headers of zstd data (RFC 8878, 3.1) to its end, then rewind.

    zstandard's readers end quietly where their input stops inside a frame (a layer cut in
    half may decompress to nothing at all, which would pass for an empty layer), and a
    decompressor object has no bound on its output; the headers tell a cut-short stream in a
    few thousand small reads.
    """
    size = os.fstat(raw.fileno()).st_size

    def need(n: int) -> bytes:
        data = raw.read(n)
        if len(data) != n:
            raise _Corrupt("truncated zstd data")
        return data

    def skip(n: int) -> None:
        if raw.seek(n, os.SEEK_CUR) > size:
            raise _Corrupt("truncated zstd data")

    while raw.tell() < size:
        magic = int.from_bytes(need(4), "little")
        if magic in _ZSTD_SKIPPABLE:
            skip(int.from_bytes(need(4), "little"))
            continue
        if magic != _ZSTD_FRAME:
            raise _Corrupt("corrupt zstd data (no frame where one should start)")
        desc = need(1)[0]
        if desc & 0x08:
            raise _Corrupt("corrupt zstd data (reserved bit set)")
        single = bool(desc & 0x20)
        need((0 if single else 1) + (0, 1, 2, 4)[desc & 3]
             + (1 if single else 0, 2, 4, 8)[desc >> 6])
        last = False
        while not last:
            block = int.from_bytes(need(3), "little")
            last, kind, length = bool(block & 1), (block >> 1) & 3, block >> 3
            if kind == 3:
                raise _Corrupt("corrupt zstd data (reserved block type)")
            skip(1 if kind == 1 else length)  # an RLE block holds one byte
        if desc & 0x04:
            need(4)  # content checksum
    raw.seek(0)


class _Gunzip:
    """gzip → bytes with less overhead than ``gzip.GzipFile`` (a quarter of the read time
    here): zlib checks each member's CRC and size; members may follow each other (pigz),
    trailing zero padding is allowed, input that stops inside a member is EOFError."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(31)
        self._buf = b""
        self._pos = 0

    def read(self, size: int = -1, /) -> bytes:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._more(), 0
        if size < 0:
            size = len(self._buf) - self._pos
        out = self._buf[self._pos : self._pos + size]
        self._pos += len(out)
        return out

    def _more(self) -> bytes:
        while True:
            if self._z.eof:
                rest = self._z.unused_data.lstrip(b"\0")
                if not rest:
                    rest = self._raw.read(CHUNK // 4)
                    if not rest:
                        return b""
                    rest = rest.lstrip(b"\0")
                    if not rest:
                        continue
                self._z = zlib.decompressobj(31)
                out = self._z.decompress(rest, CHUNK)
            else:
                src = self._z.unconsumed_tail or self._raw.read(CHUNK // 4)
                out = self._z.decompress(src, CHUNK)  # b"" in: what zlib still holds
                if not src and not out and not self._z.eof:
                    raise EOFError("compressed data ends inside a gzip member")
            if out:
                return out


def _open_tar(raw: BinaryIO, label: str) -> tuple[tarfile.TarFile | None, _Readable]:
    try:
        stream = _decompressed(raw)
        first = stream.read(tarfile.BLOCKSIZE)
        if not first:
            return None, stream
        # Closed by open_layer's "with".
        tf = tarfile.open(fileobj=_Prefixed(first, stream), mode="r|",  # noqa: SIM115
                          tarinfo=_StrictInfo, encoding="utf-8", errors="surrogateescape")
    except _read_errors() as e:
        fail(label, e)
    return tf, stream


@contextmanager
def open_layer(path: Path, label: str) -> Iterator[tarfile.TarFile | None]:
    """The layer's members as a streaming ``TarFile`` (None for an empty blob, which
    ``docker save`` writes for empty layers); read errors become ImageError."""
    try:
        raw = path.open("rb")
    except OSError as e:
        raise layer_error(label, f"cannot read: {e.strerror}") from e
    with raw:
        tf, stream = _open_tar(raw, label)
        if tf is None:
            yield None
            return
        with tf:
            yield tf
        try:
            # Read to the end: the codecs check their trailers (gzip CRC and size).
            while stream.read(CHUNK):
                pass
        except _read_errors() as e:
            fail(label, e)


def members(tf: tarfile.TarFile, label: str) -> Iterator[tarfile.TarInfo]:
    """Iterate ``tf`` without keeping every member in memory; errors become ImageError."""
    errors = _read_errors()
    while True:
        try:
            info = tf.next()
        except errors as e:
            fail(label, e)
        if info is None:
            return
        vars(tf)["members"].clear()  # TarFile keeps every member; a streaming read never
        # looks back, and a layer's 100k headers need not stay in memory
        yield info


def copy_data(tf: tarfile.TarFile, info: tarfile.TarInfo, dst: IO[bytes], label: str) -> int:
    """Copy the data of the current member ``info`` to ``dst``; the number of bytes."""
    errors = _read_errors()
    if info.sparse is None and tf.fileobj.tell() == info.offset_data:
        # The stream is at the member's data: read it there, without the two buffering
        # layers of extractfile() (a sixth of the read time for small files).
        left = info.size
        while left:
            try:
                chunk = tf.fileobj.read(min(left, CHUNK))
            except errors as e:
                fail(label, e)
            if not chunk:
                fail(label, tarfile.ReadError("unexpected end of data"))
            dst.write(chunk)
            left -= len(chunk)
        return info.size
    try:
        src = tf.extractfile(info)
    except errors as e:
        fail(label, e)
    if src is None:
        return 0
    n = 0
    with src:
        while True:
            try:
                chunk = src.read(CHUNK)
            except errors as e:
                fail(label, e)
            if not chunk:
                return n
            dst.write(chunk)
            n += len(chunk)


class _Prefixed:
    """A stream that first returns ``head`` (bytes already read to tell an empty layer)."""

    def __init__(self, head: bytes, rest: _Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if 0 <= size < len(self._head):
            head, self._head = self._head[:size], self._head[size:]
            return head
        head, self._head = self._head, b""
        return head + self._rest.read(-1 if size < 0 else size - len(head))

    # The rest of what tarfile.open() wants of a file object; a "r|" stream never calls it.
    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("write")

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("seek")

    def close(self) -> None:
        pass
