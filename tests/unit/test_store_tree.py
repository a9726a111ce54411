"""Rendered trees: GNU tar extraction, dependency order, path whitelist, crash and race safety."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from rktd_less.errors import ImageError, ManifestError, NotFound, StoreError, UsageError
from rktd_less.ids import key_from_digest
from rktd_less.paths import Paths
from rktd_less.store import Store
from rktd_less.store.tree import TreeStore, dependency_list, tar_extract_argv, tree_id_for
from tests.helpers.aci import (
    build_aci,
    build_raw_tar,
    raw_dir,
    raw_file,
    raw_hardlink,
    raw_manifest,
    raw_symlink,
)

ROOT = os.geteuid() == 0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(Paths(tmp_path / "data"))


def leftovers(store: Store) -> list[str]:
    return sorted(p.name for p in store.paths.tree_dir.iterdir() if p.name.startswith(".tmp-"))


def test_render_busybox_tree(store: Store, tmp_path: Path) -> None:
    key = store.import_aci(build_aci(tmp_path / "bb.aci", files={
        "usr/bin/suid": (b"#!/bin/sh\n", 0o4755), "etc/secret": (b"s", 0o600)}))
    tid = store.render(key)
    assert tid == "deps-" + key_from_digest(hashlib.sha512(key.encode()).hexdigest())
    tree = store.paths.tree(tid)
    assert sorted(p.name for p in tree.iterdir()) == ["image", "rendered", "rootfs"]
    assert (tree / "image").read_text() == key
    root = store.tree_rootfs(tid)
    assert root == tree / "rootfs"
    assert (root / "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert stat.S_IMODE((root / "bin/busybox").stat().st_mode) == 0o755
    # setuid survives only a root render: as any other user it would be setuid-<that user>
    assert stat.S_IMODE((root / "usr/bin/suid").lstat().st_mode) == (0o4755 if ROOT else 0o755)
    assert stat.S_IMODE((root / "etc/secret").lstat().st_mode) == 0o600
    assert os.readlink(root / "bin/sh") == "busybox"
    assert (root / "etc/passwd").read_text().splitlines()[1].startswith("user:x:1000:100:")
    assert leftovers(store) == []
    info = store.get_image(key)
    assert info.tree_size > Path("/bin/busybox").stat().st_size
    # rendering again is a lookup: the same files, not a new extraction
    inode = (root / "bin/busybox").stat().st_ino
    assert store.render(key) == tid
    assert (root / "bin/busybox").stat().st_ino == inode


@pytest.mark.skipif(not ROOT, reason="ownership is restored only as root")
def test_render_keeps_numeric_owners(store: Store, tmp_path: Path) -> None:
    aci = build_raw_tar(tmp_path / "own.aci", [
        raw_manifest(), raw_dir("rootfs"), raw_dir("rootfs/home", uid=1000, gid=100),
        raw_file("rootfs/home/f", b"x", uid=4242, gid=4343)])
    root = store.tree_rootfs(store.render(store.import_aci(aci)))
    assert ((root / "home").stat().st_uid, (root / "home").stat().st_gid) == (1000, 100)
    assert ((root / "home/f").stat().st_uid, (root / "home/f").stat().st_gid) == (4242, 4343)


def test_render_dot_prefixed_archive_and_hardlinks(store: Store, tmp_path: Path) -> None:
    key = store.import_aci(build_aci(tmp_path / "dot.aci", dot_prefix=True, busybox=False,
                                     files={"a/b": b"x"}))
    assert (store.tree_rootfs(store.render(key)) / "a/b").read_bytes() == b"x"
    aci = build_raw_tar(tmp_path / "hl.aci", [
        raw_manifest(), raw_dir("rootfs"), raw_file("rootfs/f", b"data"),
        raw_hardlink("rootfs/g", "rootfs/f")])
    root = store.tree_rootfs(store.render(store.import_aci(aci)))
    assert (root / "g").stat().st_ino == (root / "f").stat().st_ino


def _img(tmp_path: Path, tag: str, files: dict[str, bytes], deps: list[dict[str, Any]] | None,
         version: str = "1", **extra: Any) -> Path:
    manifest_extra: dict[str, Any] = dict(extra)
    if deps:
        manifest_extra["dependencies"] = deps
    return build_aci(tmp_path / f"{tag}.aci", name=f"example.com/{tag}", version=version,
                     busybox=False, files=files, exec_=None, manifest_extra=manifest_extra)


def test_dependencies_render_in_appc_override_order(store: Store, tmp_path: Path) -> None:
    # A -> [B, C], C -> [D]: override order B, D, C, A (later wins)
    d = store.import_aci(_img(tmp_path, "d", {"f1": b"d", "f2": b"d", "only-d": b"d"}, None))
    b = store.import_aci(_img(tmp_path, "b", {"f1": b"b", "f4": b"b", "f5": b"b"}, None))
    c = store.import_aci(_img(tmp_path, "c", {"f2": b"c", "f3": b"c", "f4": b"c"},
                              [{"imageName": "example.com/d"}]))
    a = store.import_aci(_img(tmp_path, "a", {"f3": b"a"}, [
        {"imageName": "example.com/b", "imageID": b},  # by ID
        {"imageName": "example.com/c", "labels": [{"name": "version", "value": "1"}]}]))
    assert [lay.key for lay in dependency_list(store, a)] == [a, c, d, b]
    tid = store.render(a)
    assert tid == tree_id_for([a, c, d, b])
    assert tid == "deps-" + key_from_digest(hashlib.sha512(",".join([a, c, d, b]).encode())
                                            .hexdigest())
    root = store.tree_rootfs(tid)
    got = {p.name: p.read_bytes() for p in root.iterdir()}
    assert got == {"f1": b"d", "f2": b"c", "f3": b"a", "f4": b"c", "f5": b"b", "only-d": b"d"}
    assert (store.paths.tree(tid) / "image").read_text() == a
    # the dependency's own tree is a different tree
    assert store.render(c) == tree_id_for([c, d])


def test_missing_dependency_names_it(store: Store, tmp_path: Path) -> None:
    a = store.import_aci(_img(tmp_path, "a", {"x": b"1"},
                              [{"imageName": "example.com/base",
                                "labels": [{"name": "version", "value": "7"}]}]))
    with pytest.raises(NotFound) as ei:
        store.render(a)
    assert str(ei.value) == ('dependency "example.com/base" of image "example.com/a" is not '
                             "in the store")
    assert ei.value.hint is not None and "must be fetched first" in ei.value.hint
    store.import_aci(_img(tmp_path, "base", {"y": b"2"}, None, version="6"))
    with pytest.raises(NotFound):  # a version 6 is no version 7
        store.render(a)
    b = store.import_aci(_img(tmp_path, "b", {"x": b"1"},
                              [{"imageName": "example.com/base", "imageID": "sha512-" + "0" * 64}]))
    with pytest.raises(NotFound, match=r'dependency "example\.com/base" of image "example\.com/b"'):
        store.render(b)
    assert not store.paths.tree_dir.exists() or os.listdir(store.paths.tree_dir) == []


def test_dependency_cycle_is_refused(store: Store, tmp_path: Path) -> None:
    a = store.import_aci(_img(tmp_path, "a", {"x": b"1"}, [{"imageName": "example.com/b"}]))
    store.import_aci(_img(tmp_path, "b", {"y": b"1"}, [{"imageName": "example.com/a"}]))
    with pytest.raises(ManifestError, match="dependency cycle"):
        store.render(a)


def test_path_whitelist_keeps_only_listed_files_and_directories(store: Store,
                                                               tmp_path: Path) -> None:
    key = store.import_aci(build_aci(tmp_path / "w.aci", files={"opt/x": b"x"},
                                     manifest_extra={"pathWhitelist": ["/bin/busybox",
                                                                       "/etc/passwd"]}))
    root = store.tree_rootfs(store.render(key))
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "bin", "bin/busybox", "etc", "etc/passwd", "opt"]


def test_symlink_of_a_lower_dependency_cannot_be_written_through(store: Store,
                                                                  tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    for i, target in enumerate([str(outside), "../" * 30 + str(outside).lstrip("/")]):
        base = build_raw_tar(tmp_path / f"base{i}.aci", [
            raw_manifest(name=f"example.com/base{i}", exec_=None), raw_dir("rootfs"),
            raw_symlink("rootfs/lib", target)])
        store.import_aci(base)
        top = build_raw_tar(tmp_path / f"top{i}.aci", [
            raw_manifest(name=f"example.com/top{i}", exec_=None,
                         manifest_extra={"dependencies": [
                             {"imageName": f"example.com/base{i}"}]}),
            raw_dir("rootfs"), raw_file("rootfs/lib/evil", b"pwned")])
        key = store.import_aci(top)  # fine on its own
        with pytest.raises(ImageError, match='unsafe member "rootfs/lib/evil" over a lower '
                                             'dependency: path goes through the symlink'):
            store.render(key)
        assert list(outside.iterdir()) == []
        assert leftovers(store) == []
        assert [p for p in store.paths.tree_dir.iterdir() if not p.name.startswith(".")] == []


def test_upper_file_replacing_a_lower_symlink_is_fine(store: Store, tmp_path: Path) -> None:
    store.import_aci(_img(tmp_path, "base", {"real": b"r"}, None))
    base_link = build_raw_tar(tmp_path / "bl.aci", [
        raw_manifest(name="example.com/bl", exec_=None), raw_dir("rootfs"),
        raw_symlink("rootfs/x", "/etc/passwd")])
    store.import_aci(base_link)
    top = store.import_aci(_img(tmp_path, "top", {"x": b"mine"}, [
        {"imageName": "example.com/bl"}]))
    root = store.tree_rootfs(store.render(top))
    assert not (root / "x").is_symlink() and (root / "x").read_bytes() == b"mine"


def test_half_tree_and_stale_temp_dirs_are_replaced(store: Store, tmp_path: Path) -> None:
    key = store.import_aci(build_aci(tmp_path / "a.aci", busybox=False, files={"f": b"1"}))
    tid = tree_id_for([key])
    half = store.paths.tree(tid)
    (half / "rootfs").mkdir(parents=True)
    (half / "rootfs" / "junk").write_text("from a crash")
    stale = store.paths.tree_dir / f".tmp-{tid}-crashed"
    (stale / "rootfs").mkdir(parents=True)
    assert store.render(key) == tid
    assert sorted(p.name for p in store.tree_rootfs(tid).iterdir()) == ["f"]
    assert leftovers(store) == []


def test_extraction_failure_leaves_no_tree(store: Store, tmp_path: Path) -> None:
    key = store.import_aci(build_aci(tmp_path / "a.aci", busybox=False, files={"f": b"1"}))
    blob = store.paths.blob(key)
    blob.write_bytes(blob.read_bytes()[:1024])  # damaged after import
    with pytest.raises(StoreError, match=r'extract image "example\.com/busybox" failed'):
        store.render(key)
    assert os.listdir(store.paths.tree_dir) == []


def test_remove_tree_and_tree_id_checks(store: Store, tmp_path: Path) -> None:
    key = store.import_aci(build_aci(tmp_path / "a.aci", busybox=False, files={"f": b"1"}))
    tid = store.render(key)
    store.remove_tree(tid)
    assert not store.paths.tree(tid).exists()
    store.remove_tree(tid)  # removing twice is fine
    assert store.render(key) == tid
    assert (store.tree_rootfs(tid) / "f").read_bytes() == b"1"
    for bad in ("../../etc", "deps-sha512-xyz", "sha512-" + "a" * 64):
        with pytest.raises(UsageError):
            store.tree_rootfs(bad)
        with pytest.raises(UsageError):
            store.remove_tree(bad)


def test_tar_argv() -> None:
    argv = tar_extract_argv(Path("/b"), Path("/d"), "rootfs", as_root=True)
    assert argv == ["tar", "-x", "-f", "/b", "-C", "/d", "--numeric-owner", "--same-owner",
                    "--same-permissions", "--xattrs", "--xattrs-include=*",
                    "--xattrs-exclude=trusted.overlay.*", "rootfs"]
    assert "--no-same-owner" in tar_extract_argv(Path("/b"), Path("/d"), "./rootfs",
                                                 as_root=False)


def test_extraction_keeps_xattrs_but_overlayfs_own(tmp_path: Path) -> None:
    """An image's trusted.overlay.* (opaque, redirect) would act in a pod's or an acbuild
    step's overlay, where the tree is a layer: GNU tar leaves them out, keeps the rest."""
    import subprocess

    src = tmp_path / "src" / "rootfs"
    (src / "d").mkdir(parents=True)
    os.setxattr(src / "d", "trusted.overlay.opaque", b"y")
    os.setxattr(src / "d", "user.kept", b"1")
    blob = tmp_path / "image.tar"
    subprocess.run(["tar", "-c", "-f", str(blob), "-C", str(src.parent), "--xattrs",
                    "--xattrs-include=*", "rootfs"], check=True)
    dest = tmp_path / "dest"
    dest.mkdir()
    subprocess.run(tar_extract_argv(blob, dest, "rootfs", as_root=True), check=True)
    assert os.listxattr(dest / "rootfs" / "d") == ["user.kept"]


def _render_in_child(data_dir: str, key: str, barrier: Any, log: str) -> None:
    orig = TreeStore._build

    def counting(self: TreeStore, tree_id: str, layers: Any) -> int:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return orig(self, tree_id, layers)

    TreeStore._build = counting  # type: ignore[method-assign]
    store = Store(Paths(Path(data_dir)))
    barrier.wait()
    tid = store.render(key)
    assert (store.tree_rootfs(tid) / "bin" / "busybox").is_file()


def test_concurrent_renders_build_one_tree(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = Store(Paths(data)).import_aci(build_aci(tmp_path / "bb.aci", files={
        f"data/{i}": os.urandom(4096) for i in range(300)}))
    # spawn, not fork: like separate rkt commands, and no inherited sqlite state
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    log = tmp_path / "builds.log"
    procs = [ctx.Process(target=_render_in_child, args=(str(data), key, barrier, str(log)))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(log.read_text().splitlines()) == 1  # one extraction, the others waited
    store = Store(Paths(data))
    tid = tree_id_for([key])
    assert sorted(os.listdir(store.paths.tree_dir)) == [tid]
    assert (store.paths.tree(tid) / "rendered").is_file()
    assert len(os.listdir(store.tree_rootfs(tid) / "data")) == 300
