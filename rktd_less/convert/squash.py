"""Squash Docker/OCI layers into one uncompressed ACI, without extracting anything to disk.

rkt always squashes converted Docker images; the ACI equals applying the layers in order:

* ``.wh.<name>`` deletes ``<name>`` (and what is below it) from the layers below; the marker
  ``.wh..wh..opq`` makes its directory opaque (hides everything below it in lower layers);
  other ``.wh..wh.*`` (aufs metadata) are ignored; none is written to the ACI;
* an entry replaces what lower layers have at its path: a file over a directory hides the
  directory's lower contents, a directory over a directory only updates its metadata;
* a hard link names the file its target is *at that point*: the same layer's earlier entry or
  whatever the layers below hold, even when an upper layer later replaces or deletes the target
  (then one of the link's own paths carries the data).

Layers are read top-down, each once, as a stream: the first occurrence of a path from the top
wins, so every path is decided once and only winning file data is copied, to a spool file
(the rare hard link to an entry that lost makes its layer be read a second time). Per path and
layer the masks that hide lower entries are kept (``self_mask``: the path itself;
``desc_mask``: what is below it), which also answers hard-link look-ups that start below an
upper layer. The ACI is then written in path order (parents first, a hard link after its
target) by copying the spooled data with ``copy_file_range``.

Refused (:class:`~rktd_less.errors.ImageError`, naming the layer and the entry): absolute names
and ``..``; entries below a symlink of the squashed tree (GNU tar would follow it when the ACI
is extracted); char/block devices outside ``/dev``; a ``/dev`` that is not a directory
(docker2aci); hard links to directories or to nothing; corrupt or truncated layers.
As docker2aci does, ``/dev/stdin``, ``/dev/stdout``, ``/dev/stderr`` and ``/dev/fd`` are added as
symlinks when the image has no such entry.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from ..appc.manifest import parse_image_manifest
from ..errors import ImageError, StoreError
from . import acitar
from . import layer as lay

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
AUFS_META = ".wh..wh."
# docker2aci writeStdioSymlinks: stdout/stderr point at the console, not /proc/self/fd/{1,2},
# so that they work when the app's output is a socket (the journal).
STDIO_LINKS = (("dev/stdin", "/proc/self/fd/0"), ("dev/stdout", "/dev/console"),
               ("dev/stderr", "/dev/console"), ("dev/fd", "/proc/self/fd"))


_DIR = acitar.new_info(tarfile.DIRTYPE, 0o755)  # rootfs/ and directories only implied


class _Node:
    """An inode: a non-directory entry one or more paths of the result may name.

    A hard link whose target lies in lower layers starts as a node without ``info`` that is
    ``forward``-ed to the target's node once the layer holding it is read.
    """

    __slots__ = ("forward", "index", "info", "keep", "level", "offset", "size", "want")

    def __init__(self, info: tarfile.TarInfo | None, level: int, index: int,
                 want: str = "") -> None:
        self.info = info
        self.level = level
        self.index = index  # member number in its layer, to read it again if needed
        self.want = want  # a pending hard link's target path
        self.forward: _Node | None = None
        self.keep = False  # in the result or the target of a hard link: its data is needed
        self.offset = -1  # data in the spool file, once copied
        self.size = 0


def _find(node: _Node) -> _Node:
    while node.forward is not None:
        node = node.forward
    return node


def _unsafe(label: str, name: str, why: str) -> ImageError:
    return lay.layer_error(label, f"unsafe entry {json.dumps(name)}: {why}")


def _norm(name: str, label: str) -> str:
    """A member name as a path below the root ("" for the root itself)."""
    if name.startswith("/"):
        raise _unsafe(label, name, "absolute path")
    if "\0" in name:
        raise _unsafe(label, name, "NUL in the name")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise _unsafe(label, name, "path escapes the image")
    return "/".join(parts)


class Kind(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    FIFO = "fifo"
    DEVICE = "device"


def _kind(info: tarfile.TarInfo, label: str) -> Kind:
    if info.isreg():
        return Kind.FILE
    if info.isdir():
        return Kind.DIR
    if info.issym():
        return Kind.SYMLINK
    if info.islnk():
        return Kind.HARDLINK
    if info.isfifo():
        return Kind.FIFO
    if info.ischr() or info.isblk():
        return Kind.DEVICE
    raise _unsafe(label, info.name, f"unsupported tar entry type {info.type!r}")


def _mark(masks: dict[str, list[int]], path: str, level: int) -> None:
    levels = masks.get(path)
    if levels is None:
        masks[path] = [level]
    elif levels[-1] != level:
        levels.append(level)  # levels arrive top-down: each list stays descending


def _parents(path: str) -> list[str]:
    """The root ("") and every proper ancestor of ``path``."""
    out = [""]
    i = path.find("/")
    while i != -1:
        out.append(path[:i])
        i = path.find("/", i + 1)
    return out


class _Merge:
    def __init__(self, spool: IO[bytes]) -> None:
        self.spool = spool
        self.spooled = 0
        self.out: dict[str, tarfile.TarInfo | _Node] = {}  # dirs as TarInfo, the rest as nodes
        self.self_mask: dict[str, list[int]] = {}
        self.desc_mask: dict[str, list[int]] = {}
        self.need_dir: set[str] = set()  # ancestors of emitted entries (closed upwards)
        self.pending: dict[str, list[tuple[int, _Node]]] = {}
        self.labels: dict[int, str] = {}

    # --- masks ------------------------------------------------------------------------------
    def _hidden(self, path: str, level: int) -> bool:
        """Is ``path`` of layer ``level`` hidden by an upper layer?"""
        levels = self.self_mask.get(path)
        if levels is not None and levels[0] > level:
            return True
        desc = self.desc_mask
        levels = desc.get("")
        if levels is not None and levels[0] > level:
            return True
        i = path.find("/")
        while i != -1:
            levels = desc.get(path[:i])
            if levels is not None and levels[0] > level:
                return True
            i = path.find("/", i + 1)
        return False

    def _masked_between(self, path: str, lo: int, hi: int) -> bool:
        """Does a layer strictly between ``lo`` and ``hi`` hide ``path``?"""
        lists = [self.self_mask.get(path)] + [self.desc_mask.get(a) for a in _parents(path)]
        return any(lo < lv < hi for levels in lists if levels for lv in levels)

    # --- reading ----------------------------------------------------------------------------
    def add_layer(self, level: int, path: Path, label: str) -> None:
        self.labels[level] = label
        seen: dict[str, _Node | None] = {}  # this layer's entries so far (None: a directory)
        unspooled: list[_Node] = []
        with lay.open_layer(path, label) as tf:
            if tf is None:
                return
            for index, info in enumerate(lay.members(tf, label)):
                node = self._entry(level, index, info, seen, label)
                if node is None:
                    continue
                if node.keep:
                    self._spool(tf, info, node, label)
                else:  # a later hard link of this layer may still want it
                    unspooled.append(node)
        again = {n.index: n for n in unspooled if n.keep}
        if again:
            self._read_again(path, label, again)

    def _spool(self, tf: tarfile.TarFile, info: tarfile.TarInfo, node: _Node,
               label: str) -> None:
        node.offset = self.spooled
        node.size = lay.copy_data(tf, info, self.spool, label)
        self.spooled += node.size

    def _read_again(self, path: Path, label: str, nodes: dict[int, _Node]) -> None:
        """Copy the data of entries that lost to upper layers but are hard-link targets."""
        with lay.open_layer(path, label) as tf:
            if tf is None:
                return
            for index, info in enumerate(lay.members(tf, label)):
                node = nodes.pop(index, None)
                if node is not None:
                    self._spool(tf, info, node, label)
                if not nodes:
                    break

    def _entry(self, level: int, index: int, info: tarfile.TarInfo,
               seen: dict[str, _Node | None], label: str) -> _Node | None:
        """Account for one member; its node when it is a regular file that may need data."""
        name = _norm(info.name, label)
        if not name:
            return None  # the layer's "./": the ACI's rootfs has fixed metadata
        parent, _, base = name.rpartition("/")
        if base.startswith(WHITEOUT):
            self._whiteout(level, parent, base, info.name, label)
            return None
        kind = _kind(info, label)
        if name == "dev" and kind != Kind.DIR:
            raise _unsafe(label, info.name, '"/dev" is not a directory')
        if kind == Kind.DEVICE and not name.startswith("dev/"):
            raise _unsafe(label, info.name, "device node outside /dev")
        visible = not self._hidden(name, level)
        _mark(self.self_mask, name, level)
        node: _Node | None = None
        if kind == Kind.DIR:
            seen[name] = None
        else:
            _mark(self.desc_mask, name, level)
            if kind == Kind.HARDLINK:
                node = self._link(level, index, info, seen, label)
            else:
                node = _Node(info, level, index)
            seen[name] = node
        waiting = self.pending.get(name)
        if waiting:
            self._resolve(name, level, node, waiting)
        if visible:
            self._emit(name, info if node is None else node, label, info.name)
        return node if kind == Kind.FILE else None

    def _whiteout(self, level: int, parent: str, base: str, raw: str, label: str) -> None:
        if base == OPAQUE:
            _mark(self.desc_mask, parent, level)
        elif not base.startswith(AUFS_META):
            gone = base[len(WHITEOUT):]
            if gone in ("", ".", ".."):
                raise _unsafe(label, raw, "invalid whiteout")
            path = f"{parent}/{gone}" if parent else gone
            _mark(self.self_mask, path, level)
            _mark(self.desc_mask, path, level)

    def _link(self, level: int, index: int, info: tarfile.TarInfo,
              seen: dict[str, _Node | None], label: str) -> _Node:
        # Docker resolves link targets below the layer root, so "/x" is the image's /x.
        target = _norm(info.linkname.lstrip("/"), label)
        if target in seen:
            node = seen[target]
            if node is None:
                raise _unsafe(label, info.name, "hard link to a directory")
            node.keep = True
            return node
        # Not (yet) in this layer: the file the layers below hold at that path.
        proxy = _Node(None, level, index, want=target)
        proxy.keep = True
        self.pending.setdefault(target, []).append((level, proxy))
        return proxy

    def _resolve(self, name: str, level: int, node: _Node | None,
                 waiting: list[tuple[int, _Node]]) -> None:
        """Hard links of upper layers waiting for ``name`` find it here unless a layer in
        between hides it (then they never will: what is below is hidden too)."""
        left = []
        for from_level, proxy in waiting:
            if from_level <= level:  # the same layer: its links look below it
                left.append((from_level, proxy))
                continue
            if self._masked_between(name, level, from_level):
                continue
            if node is None:
                raise _unsafe(self.labels[from_level], name, "hard link to a directory")
            proxy.forward = node
            node.keep = True
        if left:
            self.pending[name] = left
        else:
            del self.pending[name]

    def _emit(self, name: str, entry: tarfile.TarInfo | _Node, label: str, raw: str) -> None:
        if isinstance(entry, _Node) and name in self.need_dir:
            # Upper layers put entries below this path: it must stay a directory.
            info = _find(entry).info
            if info is not None and info.issym():
                raise _unsafe(label, raw, "upper layers have entries below this symlink")
            return
        self.out[name] = entry
        if isinstance(entry, _Node):
            entry.keep = True
        i = name.rfind("/")
        while i > 0:
            parent = name[:i]
            if parent in self.need_dir:
                break
            self.need_dir.add(parent)
            above = self.out.get(parent)
            if isinstance(above, _Node):  # the same layer made it a non-directory
                info = _find(above).info
                if info is not None and info.issym():
                    raise _unsafe(label, raw, f"path goes through the symlink "
                                              f"{json.dumps('/' + parent)}")
                del self.out[parent]
            i = name.rfind("/", 0, i)

    # --- writing ----------------------------------------------------------------------------
    def finish(self) -> None:
        """Add docker2aci's stdio symlinks and the directories only implied by entries."""
        for path, target in STDIO_LINKS:
            if path not in self.out and path not in self.need_dir:
                link = acitar.new_info(tarfile.SYMTYPE, 0o777, link=target)
                self._emit(path, _Node(link, -1, -1), "stdio", path)
        for path in self.need_dir:
            if path not in self.out:
                self.out[path] = _DIR

    def write(self, fd: int, manifest: bytes) -> None:
        w = acitar.Writer(fd, self.spool.fileno())
        w.add(acitar.header(acitar.new_info(tarfile.REGTYPE, 0o644), "manifest",
                            size=len(manifest)))
        w.data(manifest)
        w.add(acitar.header(_DIR, "rootfs"))
        carriers: dict[_Node, str] = {}
        for path in sorted(self.out):
            entry = self.out[path]
            name = f"rootfs/{path}"
            if isinstance(entry, tarfile.TarInfo):
                w.add(acitar.header(entry, name))
                continue
            node = _find(entry)
            if node.info is None:
                raise lay.layer_error(self.labels.get(entry.level, "?"),
                                      f"hard link {json.dumps(path)} to "
                                      f"{json.dumps(entry.want)}: no such file")
            if not node.info.isreg():  # symlinks, fifos, devices: each path its own copy
                if (node.info.ischr() or node.info.isblk()) and not path.startswith("dev/"):
                    raise _unsafe(self.labels.get(entry.level, "?"), path,
                                  "device node outside /dev")
                w.add(acitar.header(node.info, name))
                continue
            first = carriers.get(node)
            if first is not None:
                w.add(acitar.header(node.info, name, tarfile.LNKTYPE, link=first))
                continue
            if node.offset < 0:  # cannot happen: every emitted or linked file is spooled
                raise lay.layer_error(self.labels.get(node.level, "?"),
                                      f"lost the data of {json.dumps(path)}")
            carriers[node] = name
            w.add(acitar.header(node.info, name, tarfile.REGTYPE, size=node.size))
            w.copy(node.offset, node.size)
        w.end()


def squash(layers: Sequence[tuple[Path, str]], manifest: Mapping[str, Any], out: Path) -> None:
    """Write ``out``: one uncompressed ACI with ``manifest`` and the layers (blob path, media
    type; bottom to top) applied in order. The compression is read from the blobs themselves,
    so any layer media type works. On error ``out`` is removed and the error raised:
    ImageError (a bad layer), ManifestError (a bad manifest), StoreError (cannot write).
    """
    raw_manifest = json.dumps(manifest, separators=(",", ":")).encode()
    parse_image_manifest(raw_manifest)  # never write an ACI the store would refuse
    try:
        with tempfile.TemporaryFile(dir=out.parent, prefix=".squash-") as spool:
            merge = _Merge(spool)
            top = len(layers) - 1
            for level in range(top, -1, -1):
                path, _media_type = layers[level]
                merge.add_layer(level, path, path.name)
            merge.finish()
            spool.flush()
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                merge.write(fd, raw_manifest)
            finally:
                os.close(fd)
    except BaseException as e:
        out.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise StoreError(f"cannot write {out}: {e.strerror or e}") from e
        raise
