"""ACI blobs: decompress while hashing into a temp file, then check the tar's layout and safety.

The store keeps ACIs as uncompressed tars (rkt §3.1); their key is the sha512 of those bytes.
Extraction later is done by GNU tar, which trusts the member names, so every rule that keeps
extraction inside the tree is enforced here, once, at import, on GNU tar's own listing of the
archive (appc ``spec/aci.md``):

* top level: exactly a regular file ``manifest`` and a directory ``rootfs`` (explicit or
  implied by ``rootfs/...`` members), optionally the archive root ``./``; nothing else;
* no absolute member names, no ``..`` components;
* no member (nor hard-link target) reached through a member that is a symlink, and no name
  that is both a symlink and a directory (GNU tar would follow or re-use the link);
* hard-link targets inside ``rootfs/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from ..appc.manifest import MAX_MANIFEST
from ..errors import ImageError, StoreError
from ..host.proc import run
from ..ids import key_from_digest
from .perms import Role, apply_fd, current

CHUNK = 1 << 20

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"


def detect_compression(head: bytes) -> Compression:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return Compression(name)
    return Compression.NONE


def _q(text: str) -> str:
    return json.dumps(text)  # ASCII, escaped: one printable line whatever the member name


def image_error(label: str, detail: str) -> ImageError:
    return ImageError(f"image error: {_q(label)}: {detail}")


@dataclass(frozen=True)
class Decompressed:
    """The uncompressed tar in a temp file, its full sha512 and its store key."""

    path: Path
    digest: str
    key: str
    size: int
    compression: Compression


class _Prefixed(io.RawIOBase):
    """A stream that first returns ``head`` (bytes already read to sniff the format)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _read_head(f: IO[bytes], n: int = 6) -> bytes:
    head = b""
    while len(head) < n:
        chunk = f.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head


def _decompressor(kind: Compression, raw: IO[bytes]) -> _Reader:
    if kind == Compression.GZIP:
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == Compression.BZIP2:
        import bz2

        return bz2.BZ2File(raw)
    if kind == Compression.XZ:
        import lzma

        return lzma.LZMAFile(raw)
    return raw


def is_tar_header(block: bytes) -> bool:
    """A first tar header with a good checksum: then GNU tar reads the file as a tar and never
    guesses a compression (a doubly compressed file would otherwise be listed decompressed)."""
    if len(block) < 512:
        return False
    field = block[148:156].split(b"\0", 1)[0].strip()
    try:
        want = int(field, 8)
    except ValueError:
        return False
    rest = block[:148] + b" " * 8 + block[156:512]
    return want in (sum(rest), sum(b - 256 if b > 127 else b for b in rest))


def _chunks(stream: _Reader, kind: Compression, label: str) -> Iterator[bytes]:
    what = "tar" if kind == Compression.NONE else kind.value
    first = True
    while True:
        try:
            chunk = stream.read(CHUNK)
        except EOFError as e:
            raise image_error(label, f"truncated {what} data") from e
        except Exception as e:  # zlib.error, lzma.LZMAError, OSError from the codecs
            raise image_error(label, f"corrupt {what} data") from e
        if first and not is_tar_header(chunk[:512]):
            raise image_error(label, "not a tar archive" if kind == Compression.NONE
                              else f"not a tar archive inside the {what} data")
        first = False
        if not chunk:
            return
        yield chunk


def decompress_to_temp(src: Path | BinaryIO, tmp_dir: Path, label: str) -> Decompressed:
    """One streaming pass: sniff, decompress, hash and write to a temp file in ``tmp_dir``.

    The caller owns the returned temp file; on error nothing is left behind.
    """
    own = isinstance(src, Path)
    try:
        f: IO[bytes] = src.open("rb") if isinstance(src, Path) else src
    except OSError as e:
        raise image_error(label, f"cannot read: {e.strerror}") from e
    try:
        try:
            head = _read_head(f)
        except OSError as e:
            raise image_error(label, f"cannot read: {e.strerror}") from e
        if not head:
            raise image_error(label, "empty file")
        kind = detect_compression(head)
        raw = io.BufferedReader(_Prefixed(head, f), CHUNK)
        return _write(_decompressor(kind, raw), kind, tmp_dir, label)
    finally:
        if own:
            f.close()


def _write(stream: _Reader, kind: Compression, tmp_dir: Path, label: str) -> Decompressed:
    try:
        fd, name = tempfile.mkstemp(prefix="import-", suffix=".tar", dir=tmp_dir)
    except OSError as e:
        raise StoreError(f"cannot create a temp file in {tmp_dir}: {e.strerror}") from e
    tmp = Path(name)
    h = hashlib.sha512()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            # Renamed into place as the blob: give it the store's perms now (mkstemp: 0600).
            apply_fd(out.fileno(), current(Role.FILE))
            for chunk in _chunks(stream, kind, label):
                h.update(chunk)
                size += len(chunk)
                try:
                    out.write(chunk)
                except OSError as e:
                    raise StoreError(f"cannot write to the store: {e.strerror}") from e
            # no fsync here: most imports find the blob already stored (a file run again, the
            # stage1 at every start); Store._commit syncs what it renames into place
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    return Decompressed(tmp, digest, key_from_digest(digest), size, kind)


# --- tar layout -------------------------------------------------------------------------------
#
# The listing comes from GNU tar itself (``tar -tv --quoting-style=c``): the names checked here
# are exactly the names the extracting tar will use, with no second tar parser to disagree
# with it, and GNU tar lists 54k members in 0.3 s where Python's tarfile needs 2 s.

_TYPES = {"-": "file", "S": "file", "C": "file", "d": "dir", "l": "symlink", "h": "hardlink",
          "c": "other", "b": "other", "p": "other"}
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"(?:( -> | link to )"((?:[^"\\]|\\.)*)")?')
_C_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34,
              "'": 39, "?": 63}


def _unquote(text: str) -> str:
    """Undo GNU quotearg's C style (octal escapes are raw bytes of the name)."""
    if "\\" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt and nxt in "01234567":
            j = i + 1
            while j < min(i + 4, len(text)) and text[j] in "01234567":
                j += 1
            out.append(int(text[i + 1 : j], 8) & 0xFF)
            i = j
        elif nxt in _C_ESCAPES:
            out.append(_C_ESCAPES[nxt])
            i += 2
        else:
            raise ValueError(f"unknown escape in {text!r}")
    return out.decode("utf-8", "surrogateescape")


def _parse_line(line: str) -> tuple[str, str, str] | None:
    """One ``tar -tv`` line → (kind, raw name, link target) or None if not understood."""
    i = line.find('"')
    kind = _TYPES.get(line[:1])
    if i < 0 or kind is None:
        return None
    body = line[i + 1 :]
    if "\\" not in body:  # fast path: no escapes, so the next quote closes the name
        j = body.find('"')
        if j < 0:
            return None
        name, rest = body[:j], body[j + 1 :]
        if not rest:
            return kind, name, ""
        for sep in (' -> "', ' link to "'):
            if rest.startswith(sep) and rest.endswith('"') and '"' not in rest[len(sep):-1]:
                return kind, name, rest[len(sep) : -1]
        return None
    m = _QUOTED.fullmatch(line, i)
    if m is None:
        return None
    try:
        return kind, _unquote(m.group(1)), _unquote(m.group(3) or "")
    except ValueError:
        return None


def _tar_failure(cp: subprocess.CompletedProcess[bytes]) -> str:
    lines = [ln.removeprefix("tar: ") for ln in cp.stderr.decode(errors="replace").splitlines()
             if "Exiting with failure status" not in ln and "is not recoverable" not in ln]
    return lines[0] if lines else f"tar exited with status {cp.returncode}"


@dataclass(frozen=True)
class Member:
    """A member's canonical name (no ``./``, no empty or ``.`` parts) and what it is."""

    name: str
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    link: str = ""  # canonical hard-link target


@dataclass(frozen=True)
class AciListing:
    manifest: bytes
    dot_prefix: bool  # members are named "./rootfs/..." (as `tar -C dir -c .` writes them)
    members: tuple[Member, ...]  # everything below rootfs/, in archive order

    @property
    def rootfs_member(self) -> str:
        """The name GNU tar must be given to extract the rootfs of this archive."""
        return "./rootfs" if self.dot_prefix else "rootfs"


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def ancestors(name: str) -> Iterator[str]:
    """Proper ancestors below ``rootfs``: ``rootfs/a/b/c`` → ``rootfs/a``, ``rootfs/a/b``."""
    i = name.find("/", len("rootfs/"))
    while i != -1:
        yield name[:i]
        i = name.find("/", i + 1)


def unsafe_reason(members: Iterable[Member], symlinks: set[str]) -> tuple[str, str] | None:
    """The first member reached through a symlink in ``symlinks``, as (name, why), or None."""
    if not symlinks:
        return None
    for m in members:
        for a in ancestors(m.name):
            if a in symlinks:
                return m.name, f"path goes through the symlink {_q(a)}"
        if m.kind == "dir" and m.name in symlinks:
            return m.name, "is both a symlink and a directory"
        if m.kind == "hardlink":
            for a in ancestors(m.link):
                if a in symlinks:
                    return m.name, f"hard link target goes through the symlink {_q(a)}"
    return None


def list_tar(path: Path, label: str) -> list[tuple[str, str, str, str]]:
    """(kind, raw name, link, size field) of every member, as GNU tar reads them."""
    cp = run(["tar", "-t", "-v", "-f", str(path), "--numeric-owner", "--quoting-style=c"],
             check=False, what="list image")
    if cp.returncode != 0:
        raise image_error(label, f"corrupt tar data ({_tar_failure(cp)})")
    out = []
    for line in cp.stdout.decode("utf-8", "surrogateescape").splitlines():
        entry = _parse_line(line)
        if entry is None:
            raise image_error(label, f"unsupported tar member {_q(line)}")
        fields = line.split(maxsplit=3)
        out.append((*entry, fields[2] if len(fields) > 2 else ""))
    return out


def _read_member(path: Path, raw_name: str, label: str) -> bytes:
    cp = run(["tar", "-x", "-O", "-f", str(path), "--occurrence=1", "--", raw_name],
             check=False, what="read image manifest")
    if cp.returncode != 0:
        raise image_error(label, f"cannot read {_q(raw_name)} ({_tar_failure(cp)})")
    return cp.stdout


def scan_aci(path: Path, label: str) -> AciListing:
    """List an uncompressed ACI and enforce the rules of this module; read its manifest."""
    manifest_name: str | None = None
    has_rootfs = False
    forms: set[bool] = set()
    members: list[Member] = []
    symlinks: set[str] = set()

    def unsafe(name: str, why: str) -> ImageError:
        return image_error(label, f"unsafe member {_q(name)}: {why}")

    for kind, raw, link, size in list_tar(path, label):
        if raw.startswith("/"):
            raise unsafe(raw, "absolute path")
        parts = _parts(raw)
        if ".." in parts:
            raise unsafe(raw, "path escapes the image")
        if not parts:  # the archive root "./"
            if kind != "dir":
                raise unsafe(raw, "the archive root must be a directory")
            continue
        forms.add(raw.startswith("./"))
        top = parts[0]
        if top == "manifest":
            if len(parts) > 1 or kind != "file":
                raise image_error(label, '"manifest" must be a regular file')
            if manifest_name is not None:
                raise image_error(label, 'more than one "manifest"')
            if not size.isdigit() or int(size) > MAX_MANIFEST:
                raise image_error(label, '"manifest" is too large')
            manifest_name = raw
            continue
        if top != "rootfs":
            raise image_error(label, f"unexpected top-level entry {_q(top)} "
                                     '(an ACI holds only "manifest" and "rootfs/")')
        has_rootfs = True
        if len(parts) == 1:
            if kind != "dir":
                raise image_error(label, '"rootfs" must be a directory')
            continue
        name = "/".join(parts)
        target = ""
        if kind == "hardlink":
            if link.startswith("/"):
                raise unsafe(raw, "hard link to an absolute path")
            lparts = _parts(link)
            if ".." in lparts or len(lparts) < 2 or lparts[0] != "rootfs":
                raise unsafe(raw, "hard link target outside rootfs")
            target = "/".join(lparts)
        elif kind == "symlink":
            symlinks.add(name)
        members.append(Member(name, kind, target))
    if len(forms) > 1:
        raise image_error(label, 'member names mix "./name" and "name" forms')
    if manifest_name is None:
        raise image_error(label, 'missing "manifest"')
    if not has_rootfs:
        raise image_error(label, 'missing "rootfs/"')
    bad = unsafe_reason(members, symlinks)
    if bad:
        raise unsafe(*bad)
    manifest = _read_member(path, manifest_name, label)
    return AciListing(manifest, forms == {True}, tuple(members))


def rootfs_member(path: Path) -> str:
    """How an already validated blob names its rootfs (``rootfs`` or ``./rootfs``)."""
    import tarfile

    with tarfile.open(path, "r:") as tf:
        for m in tf:
            if _parts(m.name):
                return "./rootfs" if m.name.startswith("./") else "rootfs"
    return "rootfs"
