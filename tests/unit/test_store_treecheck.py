"""Rendered trees under `rkt image verify`: the tree digest, mismatch detection, the fresh
render compared on first verify, repair by swap, old copies kept for pods (no root)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rktd_less.errors import StoreError
from rktd_less.paths import Paths
from rktd_less.store import Store, treecheck, treehash
from rktd_less.store.treecheck import Outcome
from rktd_less.store.treehash import TreeRecord
from tests.helpers.aci import build_aci
from tests.unit.test_image_cmds import Env, make_pod, running

ROOT = os.geteuid() == 0


@pytest.fixture
def env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Env:
    return Env(tmp_path, capsys)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(Paths(tmp_path / "data"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small rootfs with each kind of entry the digest covers."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + b"x" * 300_000)  # > a pipe's buffer
    os.chmod(root / "bin" / "busybox", 0o755)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.symlink("busybox", root / "bin" / "sh")
    os.link(root / "bin" / "busybox", root / "bin" / "ls")
    (root / "empty").mkdir()
    return root


def _files_of(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- the digest -------------------------------------------------------------------------------
def test_hash_argv_is_canonical() -> None:
    argv = treehash.tar_hash_argv(Path("/t/rootfs"), "/proc/1/fd/5")
    assert argv[:4] == ["tar", "-c", "-f", "/proc/1/fd/5"]
    for opt in ("--sort=name", "--numeric-owner", "--mtime=@0", "--format=posix", "--xattrs",
                "--xattrs-exclude=security.selinux"):
        assert opt in argv
    pax = next(a for a in argv if a.startswith("--pax-option="))
    assert "delete=atime" in pax and "delete=ctime" in pax and "%p" not in pax
    assert argv[-4:] == ["-C", "/t/rootfs", "--", "."]


def test_digest_is_the_hash_of_the_canonical_archive(tree: Path, tmp_path: Path) -> None:
    d = treehash.digest(tree)
    assert d.startswith("sha256-") and len(d) == len("sha256-") + 64
    archive = tmp_path / "canonical.tar"
    subprocess.run(treehash.tar_hash_argv(tree, str(archive)), check=True)
    assert d == "sha256-" + hashlib.sha256(archive.read_bytes()).hexdigest()
    assert treehash.digest(tree) == d  # deterministic


def test_digest_ignores_times(tree: Path) -> None:
    before = treehash.digest(tree)
    for p in [tree, *tree.rglob("*")]:
        os.utime(p, (1, 2), follow_symlinks=False)
    (tree / "etc" / "passwd").read_bytes()
    os.chmod(tree / "etc" / "passwd", 0o600)  # a ctime change, and back
    os.chmod(tree / "etc" / "passwd", 0o644)
    assert treehash.digest(tree) == before


@pytest.mark.parametrize("change", [
    "content", "mode", "new file", "new dir", "removed", "renamed", "symlink target",
    "hardlink broken", "type", "xattr"])
def test_digest_sees_each_change(tree: Path, change: str) -> None:
    before = treehash.digest(tree)
    passwd = tree / "etc" / "passwd"
    match change:
        case "content":  # same size, same times
            st = passwd.stat()
            passwd.write_text(passwd.read_text().replace("root", "toor"))
            os.utime(passwd, ns=(st.st_atime_ns, st.st_mtime_ns))
        case "mode":
            os.chmod(tree / "bin" / "busybox", 0o4755)
        case "new file":
            (tree / "etc" / "marker").write_bytes(b"")
        case "new dir":
            (tree / "etc" / "d").mkdir()
        case "removed":
            (tree / "empty").rmdir()
        case "renamed":
            passwd.rename(tree / "etc" / "passwd-")
        case "symlink target":
            (tree / "bin" / "sh").unlink()
            os.symlink("/bin/busybox", tree / "bin" / "sh")
        case "hardlink broken":
            data = (tree / "bin" / "ls").read_bytes()
            (tree / "bin" / "ls").unlink()
            (tree / "bin" / "ls").write_bytes(data)
            os.chmod(tree / "bin" / "ls", 0o755)
        case "type":
            (tree / "empty").rmdir()
            (tree / "empty").write_bytes(b"")
        case "xattr":
            try:
                os.setxattr(passwd, "user.rkt-test", b"1")
            except OSError as e:
                pytest.skip(f"no user xattrs here: {e}")
    assert treehash.digest(tree) != before, change


@pytest.mark.skipif(not ROOT, reason="changing an owner needs root")
def test_digest_sees_owners(tree: Path) -> None:
    before = treehash.digest(tree)
    os.chown(tree / "etc" / "passwd", 1000, 0)
    assert treehash.digest(tree) != before
    os.chown(tree / "etc" / "passwd", 0, 0)
    os.lchown(tree / "bin" / "sh", 0, 1000)
    assert treehash.digest(tree) != before


def test_digest_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a directory"):
        treehash.digest(tmp_path / "missing")
    if not ROOT:  # root reads anything
        d = tmp_path / "closed"
        (d / "sub").mkdir(parents=True)
        os.chmod(d / "sub", 0)
        try:
            with pytest.raises(StoreError, match="hash the tree"):
                treehash.digest(d)
        finally:
            os.chmod(d / "sub", 0o755)


def test_record_round_trip_and_refusals() -> None:
    rec = TreeRecord(("sha512-" + "a" * 64,), "sha256-" + "b" * 64, "GNU tar 1.34, format 1")
    assert TreeRecord.loads(rec.dumps()) == rec
    for bad in (b"", b"sha512-abc", b"{}",
                json.dumps({"layers": [], "digest": "sha256-x", "method": "m"}).encode(),
                json.dumps({"layers": ["k"], "digest": "md5-x", "method": "m"}).encode()):
        with pytest.raises(ValueError):
            TreeRecord.loads(bad)


def test_mismatch_wording() -> None:
    assert treehash.mismatch("sha256-a", "sha256-a") is None
    assert treehash.mismatch("sha256-a", "sha256-b") == \
        "wrong tree hash: sha256-b, expected: sha256-a"
    assert treehash.mismatch("sha256-a", "sha256-b", recorded_by="GNU tar 1.34, format 1",
                             now="GNU tar 1.35, format 1").endswith(
        "(recorded with GNU tar 1.34, format 1, now GNU tar 1.35, format 1)")


# --- trees in the store -----------------------------------------------------------------------
def _nopods() -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


class Said:
    """What verify_tree reported through its `failing` callback."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, why: str) -> None:
        self.lines.append(why)


def _verify(store: Store, key: str, tid: str, in_use: frozenset[str] = frozenset()
            ) -> tuple[treecheck.TreeVerdict, list[str]]:
    said = Said()
    v = treecheck.verify_tree(store, key, tid, failing=said, pods_locked=_nopods,
                              in_use=lambda: in_use)
    return v, said.lines


def _temps(store: Store) -> list[Path]:
    return sorted(p for p in store.paths.tree_dir.iterdir() if p.name.startswith(".tmp-"))


@pytest.fixture
def rendered(store: Store, tmp_path: Path) -> tuple[str, str]:
    key = store.import_aci(build_aci(tmp_path / "a.aci", name="example.com/a",
                                     files={"etc/conf": b"setting=1\n"}))
    return key, store.render(key)


def test_render_records_no_hash(store: Store, rendered: tuple[str, str]) -> None:
    _, tid = rendered
    assert treehash.read_record(store.paths.tree(tid)) is None  # hashing waits for a verify
    assert treecheck.check(store.trees, tid) == treecheck.TreeCheck(Outcome.UNRECORDED)


def test_first_verify_compares_with_a_fresh_render(store: Store,
                                                   rendered: tuple[str, str]) -> None:
    key, tid = rendered
    root = store.tree_rootfs(tid)
    inode = (root / "etc" / "conf").stat().st_ino
    v, said = _verify(store, key, tid)
    assert v == treecheck.TreeVerdict(None) and said == []
    assert (root / "etc" / "conf").stat().st_ino == inode  # the same tree, now with a digest
    rec = treehash.read_record(store.paths.tree(tid))
    assert rec is not None and rec.digest == treehash.digest(root)
    assert rec.method == treehash.method() and rec.layers == (key,)
    assert treecheck.check(store.trees, tid).outcome == Outcome.MATCHES
    assert _temps(store) == []


def test_first_verify_catches_a_change_made_before_it(store: Store,
                                                      rendered: tuple[str, str]) -> None:
    key, tid = rendered
    root = store.tree_rootfs(tid)
    (root / "tamper-marker").write_text("x")
    v, said = _verify(store, key, tid)
    assert v.problem is not None and v.problem.startswith("wrong tree hash: sha256-")
    assert said == [v.problem] and v.note is None
    assert not (root / "tamper-marker").exists()  # the fresh render took its place
    assert _temps(store) == []  # no pod: the old copy went at once
    assert treecheck.check(store.trees, tid).outcome == Outcome.MATCHES


def test_a_changed_tree_is_rendered_again(store: Store, rendered: tuple[str, str]) -> None:
    key, tid = rendered
    _verify(store, key, tid)
    root = store.tree_rootfs(tid)
    good = treehash.digest(root)
    conf = root / "etc" / "conf"
    conf.write_text("setting=2\n")
    checked = treecheck.check(store.trees, tid)
    assert checked.outcome == Outcome.DIFFERS
    assert checked.problem == f"wrong tree hash: {treehash.digest(root)}, expected: {good}"
    v, said = _verify(store, key, tid)
    assert said == [checked.problem] and v.problem == checked.problem
    assert conf.read_text() == "setting=1\n" and treehash.digest(root) == good
    assert treecheck.check(store.trees, tid).outcome == Outcome.MATCHES
    assert store.get_image(key).tree_size > 0


def test_an_old_tree_a_pod_may_use_stays_until_gc(store: Store,
                                                  rendered: tuple[str, str]) -> None:
    key, tid = rendered
    root = store.tree_rootfs(tid)
    (root / "tamper-marker").write_text("x")
    held = os.open(root / "etc" / "conf", os.O_RDONLY)  # as a running pod's overlay would
    try:
        v, _ = _verify(store, key, tid, in_use=frozenset({tid}))
        assert v.note is not None and "stays for the pods that use it" in v.note
        [old] = _temps(store)
        assert (old / "rootfs" / "tamper-marker").exists()  # whole, under a temp name
        assert os.read(held, 100) == b"setting=1\n"
    finally:
        os.close(held)
    assert not (root / "tamper-marker").exists()
    assert store.trees.ids() == [tid]  # the old copy is one of the tree's, for gc
    store.remove_tree(tid)  # what `image gc` does once no pod names the tree
    assert store.trees.ids() == [] and list(store.paths.tree_dir.iterdir()) == []


def test_unreadable_record_is_a_failure_and_repaired(store: Store,
                                                     rendered: tuple[str, str]) -> None:
    key, tid = rendered
    (store.paths.tree(tid) / treehash.HASH_FILE).write_text("garbage")
    checked = treecheck.check(store.trees, tid)
    assert checked.outcome == Outcome.DIFFERS and "cannot read its hash record" in checked.problem
    v, _ = _verify(store, key, tid)
    assert v.problem == checked.problem
    assert treecheck.check(store.trees, tid).outcome == Outcome.MATCHES


def test_unrendered_tree_is_not_checked(store: Store, rendered: tuple[str, str]) -> None:
    key, tid = rendered
    (store.paths.tree(tid) / "rendered").unlink()
    assert treecheck.check(store.trees, tid).outcome == Outcome.ABSENT
    assert _verify(store, key, tid) == (treecheck.TreeVerdict(None), [])


def _base_and_app(store: Store, tmp: Path, base_conf: bytes = b"base 1\n") -> tuple[str, str]:
    base = store.import_aci(build_aci(tmp / f"base-{len(base_conf)}.aci",
                                      name="example.com/base", exec_=None, busybox=False,
                                      files={"etc/base": base_conf, "etc/drop": b"x"}))
    app = store.import_aci(build_aci(
        tmp / "app.aci", name="example.com/app", busybox=False, files={"app": b"app"},
        manifest_extra={"dependencies": [{"imageName": "example.com/base"}],
                        "pathWhitelist": ["/etc/base", "/app"]}))
    return base, app


def test_trees_with_dependencies_render_again_from_their_recorded_layers(
        store: Store, tmp_path: Path) -> None:
    base, app = _base_and_app(store, tmp_path)
    tid = store.render(app)
    root = store.tree_rootfs(tid)
    assert _files_of(root) == ["app", "etc", "etc/base"]
    assert _verify(store, app, tid) == (treecheck.TreeVerdict(None), [])  # records the layers
    (root / "etc" / "base").write_text("changed\n")
    # a newer base is fetched: the image's dependency list now makes another tree
    _base_and_app(store, tmp_path, b"base 2, longer\n")
    assert treecheck.layers_of(store.trees, tid, app)[1].key == base
    v, _ = _verify(store, app, tid)
    assert v.problem is not None
    assert (root / "etc" / "base").read_text() == "base 1\n"
    assert _files_of(root) == ["app", "etc", "etc/base"]
    # without the record the tree cannot be made again
    (store.paths.tree(tid) / treehash.HASH_FILE).unlink()
    changed = re.escape('dependencies of image "example.com/app" changed')
    with pytest.raises(StoreError, match=changed):
        treecheck.layers_of(store.trees, tid, app)


def test_no_repair_from_a_corrupt_dependency(store: Store, tmp_path: Path) -> None:
    base, app = _base_and_app(store, tmp_path)
    tid = store.render(app)
    (store.tree_rootfs(tid) / "tamper-marker").write_text("x")
    blob = store.paths.blob(base)
    data = bytearray(blob.read_bytes())
    data[-2000] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f'dependency "example.com/base" \\("{base}"\\) is '
                                         "corrupt"):
        _verify(store, app, tid)
    assert (store.tree_rootfs(tid) / "tamper-marker").exists()  # untouched
    assert _temps(store) == []


# --- rkt image verify -------------------------------------------------------------------------
def test_image_verify_repairs_trees(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    tid = env.store().render(key)
    ok = f'successfully verified checksum for image: "example.com/a" ("{key}")\n'
    assert env.rkt("image", "verify", "example.com/a") == (0, ok, "")  # records the digest
    root = env.paths.tree(tid) / "rootfs"
    (root / "tamper-marker").write_text("x")
    code, out, err = env.rkt("image", "verify", "example.com/a")
    assert (code, err) == (0, "")
    first, second = out.splitlines()
    assert first.startswith(f'tree cache verification failed for image example.com/a: tree '
                            f'"{tid}": wrong tree hash: sha256-')
    assert first.endswith("; rebuilding...")
    assert second + "\n" == ok
    assert not (root / "tamper-marker").exists()
    assert env.rkt("image", "verify", key) == (0, ok.replace('"example.com/a"', f'"{key}"'), "")


def test_image_verify_keeps_the_old_tree_for_a_pod(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    tid = env.store().render(key)
    (env.paths.tree(tid) / "rootfs" / "tamper-marker").write_text("x")
    pod = make_pod(env.paths, "run", app_trees=[tid], images=[key])
    with running(pod):
        code, out, _ = env.rkt("image", "verify", key)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("tree cache verification failed") and \
        lines[1] == f'the old copy of tree "{tid}" stays for the pods that use it: ' \
                    "`rkt image gc` removes it once none does"
    assert lines[2].startswith("successfully verified checksum")
    [old] = [p for p in env.paths.tree_dir.iterdir() if p.name.startswith(".tmp-")]
    assert (old / "rootfs" / "tamper-marker").exists()
    # gc keeps it while a pod names the tree, and takes it with the tree afterwards
    assert env.rkt("image", "gc")[0] == 0 and old.exists()
    for p in sorted(pod.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() else p.rmdir()
    pod.rmdir()
    code, _, err = env.rkt("image", "gc")
    assert code == 0 and f'removed treestore "{tid}"' in err
    assert list(env.paths.tree_dir.iterdir()) == []


def test_image_verify_leaves_trees_of_a_corrupt_blob(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    tid = env.store().render(key)
    marker = env.paths.tree(tid) / "rootfs" / "tamper-marker"
    marker.write_text("x")
    blob = env.paths.blob(key)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0x01
    blob.write_bytes(bytes(data))
    code, out, err = env.rkt("image", "verify", key)
    assert code == 254 and out == ""
    assert "checksum verification failed" in err and err.count("\n") == 1
    assert marker.exists()


def test_image_verify_reports_a_tree_it_cannot_repair(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    tid = env.store().render(key)
    tree = env.paths.tree(tid)
    # never verified (no record), and the image makes another tree
    other = tid[:-1] + ("0" if tid[-1] != "0" else "1")
    os.rename(tree, env.paths.tree(other))
    code, out, err = env.rkt("image", "verify", key)
    assert (code, out) == (254, "")
    assert err.startswith(f"verify: unable to repair cache for image {key}: cannot render "
                          f'tree "{other}" again')
    assert err.count("\n") == 1


# A member of group rkt without access to cas/tree: tests/integration/test_nonroot.py.


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    import threading

    before = threading.active_count()
    yield
    assert threading.active_count() == before
