"""Squashing layers into one ACI: the result equals applying the layers in order."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rktd_less.appc.manifest import parse_image_manifest
from rktd_less.convert.squash import STDIO_LINKS, squash
from tests.helpers.layers import (
    DOCKER_GZIP,
    Compress,
    Entry,
    build_layer,
    chardev,
    d,
    f,
    fifo,
    hard,
    opq,
    sym,
    wh,
)

MANIFEST: dict[str, Any] = {"acKind": "ImageManifest", "acVersion": "0.8.11",
                            "name": "example.com/squashed",
                            "labels": [{"name": "version", "value": "1"}]}
STDIO = {p for p, _ in STDIO_LINKS} | {"dev"}


@dataclass
class Aci:
    order: list[str]  # member names as written
    members: dict[str, tarfile.TarInfo]  # by path below rootfs ("" = rootfs itself)
    data: dict[str, bytes]
    manifest: dict[str, Any]

    def paths(self, *, stdio: bool = False) -> set[str]:
        return {p for p in self.members if p and (stdio or p not in STDIO)}

    def content(self, path: str) -> bytes:
        m = self.members[path]
        if m.islnk():
            return self.data[m.linkname.removeprefix("rootfs/")]
        assert m.isreg(), path
        return self.data[path]

    def kind(self, path: str) -> str:
        m = self.members[path]
        return {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
                tarfile.LNKTYPE: "hardlink", tarfile.FIFOTYPE: "fifo",
                tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block"}[m.type]

    def same_file(self, a: str, b: str) -> bool:
        """Do ``a`` and ``b`` end up as one inode (one carries the data, the other links)?"""
        ma, mb = self.members[a], self.members[b]
        return (mb.islnk() and mb.linkname == f"rootfs/{a}") or \
            (ma.islnk() and ma.linkname == f"rootfs/{b}")


def read_aci(path: Path) -> Aci:
    order: list[str] = []
    members: dict[str, tarfile.TarInfo] = {}
    data: dict[str, bytes] = {}
    manifest: dict[str, Any] = {}
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            order.append(m.name)
            if m.name == "manifest":
                fo = tf.extractfile(m)
                assert fo is not None
                manifest = json.loads(fo.read())
                continue
            assert m.name == "rootfs" or m.name.startswith("rootfs/"), m.name
            p = m.name.removeprefix("rootfs").strip("/")
            assert p not in members, f"duplicate {p}"
            members[p] = m
            if m.isreg():
                fo = tf.extractfile(m)
                assert fo is not None
                data[p] = fo.read()
    return Aci(order, members, data, manifest)


def run(tmp: Path, *layers: Sequence[Entry], compress: Compress = "gzip",
        manifest: dict[str, Any] | None = None) -> Aci:
    blobs = [build_layer(tmp / f"layer{i}", list(ents), compress=compress)
             for i, ents in enumerate(layers)]
    out = tmp / "out.aci"
    squash(blobs, manifest or MANIFEST, out)
    return read_aci(out)


def test_layout_manifest_first_parents_before_children(tmp_path: Path) -> None:
    aci = run(tmp_path, [d("usr"), d("usr/bin"), f("usr/bin/tool", b"x", 0o755),
                         sym("bin", "usr/bin"), f("etc/hosts", b"h"), fifo("run/fifo")])
    assert aci.order[:2] == ["manifest", "rootfs"]
    assert aci.manifest == MANIFEST
    parse_image_manifest(json.dumps(aci.manifest))
    for i, name in enumerate(aci.order[2:], 2):
        parent = name.rsplit("/", 1)[0]
        assert parent in aci.order[:i], f"{name} before its parent"
    assert aci.paths() == {"usr", "usr/bin", "usr/bin/tool", "bin", "etc", "etc/hosts", "run",
                           "run/fifo"}
    assert aci.kind("etc") == "dir" and aci.members["etc"].mode == 0o755  # implied
    assert aci.kind("run/fifo") == "fifo"
    assert aci.members["bin"].linkname == "usr/bin"
    assert aci.content("usr/bin/tool") == b"x"


def test_stdio_symlinks_added_when_absent(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("a")])
    assert {p: aci.members[p].linkname for p, _ in STDIO_LINKS} == {
        "dev/stdin": "/proc/self/fd/0", "dev/stdout": "/dev/console",
        "dev/stderr": "/dev/console", "dev/fd": "/proc/self/fd"}
    assert aci.kind("dev") == "dir"


def test_stdio_symlinks_kept_when_the_image_has_them(tmp_path: Path) -> None:
    aci = run(tmp_path, [d("dev", 0o700), sym("dev/stdout", "/proc/self/fd/1"),
                         f("dev/stdin", b"in"), d("dev/fd"), chardev("dev/null", 1, 3)])
    assert aci.members["dev/stdout"].linkname == "/proc/self/fd/1"
    assert aci.kind("dev/stdin") == "file" and aci.kind("dev/fd") == "dir"
    assert aci.members["dev/stderr"].linkname == "/dev/console"
    assert aci.members["dev"].mode == 0o700
    null = aci.members["dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3)


def test_upper_file_overrides_lower(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("etc/conf", b"old", 0o600, uid=1)],
              [f("etc/conf", b"new", 0o644, uid=2)])
    assert aci.content("etc/conf") == b"new"
    assert (aci.members["etc/conf"].mode, aci.members["etc/conf"].uid) == (0o644, 2)


def test_duplicate_path_in_one_layer_the_later_wins(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("a", b"1"), f("a", b"2"), d("b"), f("b/x")],
              [f("c", b"c"), f("c", b"C")])
    assert aci.content("a") == b"2" and aci.content("c") == b"C"


def test_whiteout_removes_file_and_is_not_written(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("etc/a", b"a"), f("etc/b", b"b")], [wh("etc/a")])
    assert aci.paths() == {"etc", "etc/b"}
    assert not any(".wh." in n for n in aci.order)


def test_whiteout_removes_directory_tree(tmp_path: Path) -> None:
    aci = run(tmp_path, [d("var/cache/apt"), f("var/cache/apt/pkg", b"p"), f("var/keep")],
              [wh("var/cache")])
    assert aci.paths() == {"var", "var/keep"}


def test_whiteout_only_hides_lower_layers(tmp_path: Path) -> None:
    aci = run(tmp_path, [d("d"), f("d/old", b"o")],
              [wh("d"), d("d", 0o700), f("d/new", b"n")],
              [f("d/top", b"t")])
    assert aci.paths() == {"d", "d/new", "d/top"}
    assert aci.members["d"].mode == 0o700


def test_whiteout_then_readded_without_directory_entry(tmp_path: Path) -> None:
    aci = run(tmp_path, [d("d", 0o711), f("d/old")], [wh("d"), f("d/new", b"n")])
    assert aci.paths() == {"d", "d/new"}
    assert aci.members["d"].mode == 0o755  # implied again, not the deleted one's


def test_opaque_directory_hides_lower_contents_only(tmp_path: Path) -> None:
    aci = run(tmp_path,
              [d("etc"), d("etc/app"), f("etc/app/a"), d("etc/app/sub"), f("etc/app/sub/b"),
               f("etc/other")],
              [d("etc/app", 0o750), f("etc/app/mine", b"m"), opq("etc/app")],
              [f("etc/app/top", b"t")])
    assert aci.paths() == {"etc", "etc/other", "etc/app", "etc/app/mine", "etc/app/top"}
    assert aci.members["etc/app"].mode == 0o750


def test_opaque_root_hides_every_lower_layer(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("a"), d("b"), f("b/c")], [opq(""), f("x", b"x")])
    assert aci.paths() == {"x"}


def test_aufs_metadata_is_ignored(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("a"), d(".wh..wh.plnk"), f(".wh..wh.aufs")])
    assert aci.paths() == {"a"}


def test_file_replaces_directory_and_its_contents(tmp_path: Path) -> None:
    aci = run(tmp_path, [d("x"), d("x/y"), f("x/y/z"), f("x/w")], [f("x", b"now a file")])
    assert aci.paths() == {"x"} and aci.content("x") == b"now a file"


def test_directory_replaces_file(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("x", b"file"), f("y")], [d("x", 0o700), f("x/inner", b"i")])
    assert aci.kind("x") == "dir" and aci.members["x"].mode == 0o700
    assert aci.paths() == {"x", "x/inner", "y"}


def test_symlink_replaced_by_directory_in_upper_layer(tmp_path: Path) -> None:
    aci = run(tmp_path, [sym("lib", "usr/lib")], [d("lib"), f("lib/libc.so", b"c")])
    assert aci.kind("lib") == "dir" and aci.content("lib/libc.so") == b"c"


def test_directory_metadata_from_the_top_most_layer(tmp_path: Path) -> None:
    aci = run(tmp_path, [d("srv", 0o755, uid=0, mtime=1), f("srv/a")],
              [d("srv", 0o1777, uid=33, gid=33, mtime=2), f("srv/b")])
    srv = aci.members["srv"]
    assert (srv.mode, srv.uid, srv.gid, srv.mtime) == (0o1777, 33, 33, 2)
    assert aci.paths() == {"srv", "srv/a", "srv/b"}


def test_modes_owners_times_and_xattrs_kept(tmp_path: Path) -> None:
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    aci = run(tmp_path, [
        d("opt", 0o750, uid=7, gid=8, mtime=1234567890, xattrs={"user.dir": b"d"}),
        f("opt/ping", b"ELF", 0o4755, uid=1000, gid=100, mtime=1500000000,
          xattrs={"security.capability": cap, "user.note": b"hello"}),
        f("opt/plain", b"p", 0o2640, uid=65534, gid=65534, mtime=2000000000),
    ])
    ping = aci.members["opt/ping"]
    assert (ping.mode, ping.uid, ping.gid, ping.mtime) == (0o4755, 1000, 100, 1500000000)
    assert ping.pax_headers["SCHILY.xattr.user.note"] == "hello"
    assert ping.pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == cap
    opt = aci.members["opt"]
    assert (opt.mode, opt.uid, opt.gid, opt.mtime) == (0o750, 7, 8, 1234567890)
    assert opt.pax_headers["SCHILY.xattr.user.dir"] == "d"
    plain = aci.members["opt/plain"]
    assert (plain.mode, plain.uid, plain.gid) == (0o2640, 65534, 65534)
    assert not plain.pax_headers


def test_long_and_non_ascii_names(tmp_path: Path) -> None:
    long_dir = "/".join(["d" * 60] * 4)
    names = [f"{long_dir}/file", "é/ü.txt", "x" * 150]
    aci = run(tmp_path, [f(n, n.encode()) for n in names] + [sym("s", "t" * 200)])
    for n in names:
        assert aci.content(n) == n.encode()
    assert aci.members["s"].linkname == "t" * 200


def test_hardlink_within_a_layer(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("bin/a", b"same", 0o755), hard("bin/b", "bin/a"),
                         hard("bin/c", "bin/b")])
    assert {aci.content(p) for p in ("bin/a", "bin/b", "bin/c")} == {b"same"}
    assert aci.same_file("bin/a", "bin/b") and aci.same_file("bin/a", "bin/c")
    assert aci.members["bin/a"].isreg()


def test_hardlink_sorting_before_its_target_carries_the_data(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("z/target", b"data", 0o700, uid=5), hard("a/link", "z/target")])
    link, target = aci.members["a/link"], aci.members["z/target"]
    assert link.isreg() and aci.data["a/link"] == b"data"
    assert (link.mode, link.uid) == (0o700, 5)  # the inode's metadata
    assert target.islnk() and target.linkname == "rootfs/a/link"
    assert aci.order.index("rootfs/a/link") < aci.order.index("rootfs/z/target")


def test_hardlink_to_a_lower_layer_file(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("usr/lib/x.so.1", b"lib")], [hard("usr/lib/x.so", "usr/lib/x.so.1")])
    assert aci.content("usr/lib/x.so") == b"lib"
    assert aci.same_file("usr/lib/x.so", "usr/lib/x.so.1")


def test_hardlink_target_overridden_above_keeps_old_content(tmp_path: Path) -> None:
    # The link names the file as it was: the upper layer's new file is another inode.
    aci = run(tmp_path, [f("t", b"old"), hard("l", "t")], [f("t", b"new")])
    assert aci.content("t") == b"new" and aci.content("l") == b"old"
    assert not aci.same_file("t", "l")


def test_hardlink_target_deleted_above(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("t", b"data", 0o640, uid=3), hard("l", "t"), hard("m", "t")],
              [wh("t")])
    assert aci.paths() == {"l", "m"}
    assert aci.content("l") == aci.content("m") == b"data"
    assert aci.same_file("l", "m")
    assert (aci.members["l"].mode, aci.members["l"].uid) == (0o640, 3)


def test_cross_layer_hardlink_whose_target_is_deleted_higher_up(tmp_path: Path) -> None:
    aci = run(tmp_path, [f("t", b"base")], [hard("l", "t")], [wh("t")])
    assert aci.paths() == {"l"} and aci.content("l") == b"base"


def test_cross_layer_hardlink_whose_target_is_replaced_higher_up(tmp_path: Path) -> None:
    aci = run(tmp_path, [d("dir"), f("dir/t", b"base")], [hard("l", "dir/t")],
              [f("dir", b"dir is a file now")])
    assert aci.paths() == {"l", "dir"} and aci.content("l") == b"base"


def test_cross_layer_hardlink_skips_layers_above_its_own(tmp_path: Path) -> None:
    # l→t in layer 1 names layer 0's t, not layer 2's.
    aci = run(tmp_path, [f("t", b"zero")], [hard("l", "t")], [f("t", b"two")])
    assert aci.content("l") == b"zero" and aci.content("t") == b"two"


def test_cross_layer_hardlink_through_a_middle_layer(tmp_path: Path) -> None:
    # Layer 2's link finds layer 1's copy of t, itself a link to layer 0's file.
    aci = run(tmp_path, [f("t0", b"zero")], [hard("t", "t0"), f("t1", b"one")],
              [hard("l", "t"), wh("t0")])
    assert aci.content("l") == b"zero" and aci.content("t") == b"zero"
    assert aci.same_file("l", "t")
    assert "t0" not in aci.members


def test_hardlink_to_a_symlink_is_kept_as_a_symlink(tmp_path: Path) -> None:
    aci = run(tmp_path, [sym("s", "target"), hard("s2", "s")])
    assert aci.kind("s2") == "symlink" and aci.members["s2"].linkname == "target"


def test_layer_compressions_and_media_types(tmp_path: Path) -> None:
    blobs = [build_layer(tmp_path / "a", [f("a", b"gz")], compress="gzip",
                         media_type=DOCKER_GZIP),
             build_layer(tmp_path / "b", [f("b", b"zst")], compress="zstd"),
             build_layer(tmp_path / "c", [f("c", b"plain")], compress=None)]
    squash(blobs, MANIFEST, tmp_path / "out.aci")
    aci = read_aci(tmp_path / "out.aci")
    assert (aci.content("a"), aci.content("b"), aci.content("c")) == (b"gz", b"zst", b"plain")


@pytest.mark.parametrize("compress", ["gzip", "zstd", None])
def test_empty_layers(tmp_path: Path, compress: Compress) -> None:
    empty = build_layer(tmp_path / "empty", [], compress=compress)
    nothing = tmp_path / "nothing"
    nothing.write_bytes(b"")
    top = build_layer(tmp_path / "top", [f("x", b"x")], compress=compress)
    squash([empty, (nothing, DOCKER_GZIP), top], MANIFEST, tmp_path / "out.aci")
    assert read_aci(tmp_path / "out.aci").paths() == {"x"}


def test_multi_member_gzip(tmp_path: Path) -> None:
    import gzip

    from tests.helpers.layers import tar_bytes
    data = tar_bytes([f("a", b"A" * 5000), f("b", b"B")])
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(data[:3000]) + gzip.compress(data[3000:]) + b"\0" * 8)
    squash([(blob, DOCKER_GZIP)], MANIFEST, tmp_path / "out.aci")
    aci = read_aci(tmp_path / "out.aci")
    assert aci.content("a") == b"A" * 5000 and aci.content("b") == b"B"


def test_same_layers_give_the_same_bytes(tmp_path: Path) -> None:
    layers = [[d("a"), f("a/1", b"1"), hard("a/2", "a/1")], [f("b", b"2"), wh("a/1")]]
    run(tmp_path / "x", *layers)
    run(tmp_path / "y", *layers)
    assert (tmp_path / "x/out.aci").read_bytes() == (tmp_path / "y/out.aci").read_bytes()


def test_big_file_is_copied_intact(tmp_path: Path) -> None:
    big = bytes(range(256)) * 4096 + b"tail"  # past the in-kernel copy threshold
    aci = run(tmp_path, [f("big", big)], [f("small", b"s"), hard("big2", "big")])
    assert aci.content("big") == big and aci.content("big2") == big


def test_each_layer_is_read_once_unless_a_lost_entry_is_linked(tmp_path: Path,
                                                               monkeypatch: Any) -> None:
    from rktd_less.convert import squash as squash_mod

    again: list[str] = []
    orig = squash_mod._Merge._read_again

    def spy(self: Any, path: Path, label: str, nodes: Any) -> None:
        again.append(label)
        orig(self, path, label, nodes)

    monkeypatch.setattr(squash_mod._Merge, "_read_again", spy)
    run(tmp_path / "a", [f("t", b"old"), hard("l", "t")], [f("u")])
    assert again == []
    run(tmp_path / "b", [f("t", b"old"), hard("l", "t")], [f("t", b"new")])
    assert again == ["layer0"]
