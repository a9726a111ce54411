"""`rkt image rm|gc|extract|render|export|verify|list` end to end through the CLI, no root."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid as uuidlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from rktd_less.cli.main import main
from rktd_less.errors import StoreError
from rktd_less.ids import key_from_digest
from rktd_less.paths import Paths
from rktd_less.store import Remote, Store
from rktd_less.store import gc as store_gc
from tests.helpers.aci import build_aci


class Env:
    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.paths = Paths(self.data)
        self.capsys = capsys

    def rkt(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([f"--dir={self.data}", *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def store(self) -> Store:
        return Store(self.paths)

    def fetch(self, aci: Path) -> str:
        return self.store().import_aci(aci)

    def aci(self, name: str, version: str = "1.0", **kw: object) -> Path:
        return build_aci(self.tmp / f"{name.replace('/', '_')}-{version}.aci", name=name,
                         version=version, **kw)  # type: ignore[arg-type]


@pytest.fixture
def env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Env:
    return Env(tmp_path, capsys)


def make_pod(paths: Paths, phase: str, *, stage1_tree: str | None = None,
             app_trees: Sequence[str] = (), images: Sequence[str] = ()) -> Path:
    d = paths.pod(phase, str(uuidlib.uuid4()))
    d.mkdir(parents=True)
    if stage1_tree is not None:
        (d / "stage1TreeStoreID").write_text(stage1_tree)
    for i, t in enumerate(app_trees):
        (d / "appsinfo" / f"app{i}").mkdir(parents=True)
        (d / "appsinfo" / f"app{i}" / "treeStoreID").write_text(t)
    (d / "pod").write_text(json.dumps({"acKind": "PodManifest", "apps": [
        {"name": f"app{i}", "image": {"name": "x", "id": k}} for i, k in enumerate(images)]}))
    return d


@contextmanager
def running(pod: Path) -> Iterator[None]:
    """Hold the shared lock a running pod's stage0/stage1 hold."""
    fd = os.open(pod, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".rkt-" in p.name)


# --- rm -------------------------------------------------------------------------------------
def test_rm_removes_rows_blob_manifest_and_every_tree(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    s = env.store()
    s.index.put_remote(Remote("https://example.com/a.aci", "", "etag", key, 0, 1.0))
    tree = s.render(key)
    assert s.paths.tree(tree).is_dir()
    code, out, err = env.rkt("image", "rm", "example.com/a:1.0")
    assert code == 0, err
    assert out == f'successfully removed aci for image: "{key}"\n'
    assert err == "rm: 1 image(s) successfully removed\n"
    s = env.store()
    assert s.index.get(key) is None
    assert s.index.get_remote("https://example.com/a.aci") is None
    assert not env.paths.blob(key).exists()
    assert not env.paths.image_manifest(key).exists()
    assert not env.paths.tree(tree).exists()  # rkt #2890 leaked it


def test_rm_by_prefix_duplicates_and_unknown(env: Env) -> None:
    a = env.fetch(env.aci("example.com/a"))
    b = env.fetch(env.aci("example.com/b"))
    code, out, err = env.rkt("image", "rm", a[:20], "example.com/a", "nope.example/x",
                             "sha512-zz")
    assert code == 254
    assert out == f'successfully removed aci for image: "{a}"\n'  # once, not twice
    assert 'rm: no image found for "nope.example/x"' in err
    assert "rm: invalid image ID" in err or 'no image found for "sha512-zz"' in err
    assert err.endswith("rm: 1 image(s) successfully removed\n"
                        "rm: 2 image(s) cannot be removed\n"
                        "rm: error(s) found while removing images\n")
    assert env.store().index.get(b) is not None


def _colliding_acis(env: Env) -> tuple[Path, Path, str]:
    """Two ACIs whose keys share their first two hex digits (found by trying contents)."""
    seen: dict[str, Path] = {}
    for i in range(4096):
        p = build_aci(env.tmp / f"c{i}.aci", name=f"example.com/c{i}", busybox=False,
                      exec_=None, files={"f": str(i).encode()})
        key = key_from_digest(hashlib.sha512(p.read_bytes()).hexdigest())
        prefix = key[:9]
        if prefix in seen:
            return seen[prefix], p, prefix
        seen[prefix] = p
    raise AssertionError("no collision")


def test_ambiguous_prefix_is_refused_and_nothing_removed(env: Env) -> None:
    p1, p2, prefix = _colliding_acis(env)
    k1, k2 = env.fetch(p1), env.fetch(p2)
    code, out, err = env.rkt("image", "rm", prefix)
    assert code == 254 and out == ""
    assert f'ambiguous image ID "{prefix}": matches 2 images' in err
    assert env.store().index.get(k1) and env.store().index.get(k2)
    for sub in (["extract", prefix, str(env.tmp / "x")], ["export", prefix, str(env.tmp / "x")],
                ["verify", prefix], ["cat-manifest", prefix]):
        code, out, err = env.rkt("image", *sub)
        assert code == 254 and "ambiguous image ID" in err, sub
    assert not (env.tmp / "x").exists()


def test_rm_refuses_an_image_a_running_pod_uses(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    tree = env.store().render(key)
    pod = make_pod(env.paths, "run", stage1_tree=tree)  # used as a tree only
    with running(pod):
        code, out, err = env.rkt("image", "rm", key)
        assert code == 254 and out == ""
        assert f'error removing aci for image "{key}" ("example.com/a"): image is used by ' \
               f'running pod "{pod.name}" (stop the pod first)' in err
        assert env.paths.tree(tree).is_dir() and env.paths.blob(key).is_file()
    # exited: the image goes, the tree stays while the pod references it ...
    code, out, err = env.rkt("image", "rm", key)
    assert code == 0, err
    assert env.paths.tree(tree).is_dir()
    # ... until the pod is gone and image gc collects it
    (pod / "stage1TreeStoreID").unlink()
    code, out, err = env.rkt("image", "gc")
    assert code == 0 and err == f'gc: removed treestore "{tree}"\n'
    assert not env.paths.tree(tree).exists()


def test_rm_refuses_the_app_image_of_a_running_pod(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    pod = make_pod(env.paths, "run", images=[key])
    with running(pod):
        code, _, err = env.rkt("image", "rm", "example.com/a")
    assert code == 254 and "is used by running pod" in err
    assert env.store().index.get(key) is not None


def test_rm_that_cannot_remove_the_blob_changes_nothing(env: Env,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    key = env.fetch(env.aci("example.com/a"))
    s = env.store()
    s.index.put_remote(Remote("https://e.example/a.aci", "", "", key, 0, 1.0))
    before = s.index.get(key)
    real = store_gc._unlink
    monkeypatch.setattr(store_gc, "_unlink", lambda p: "denied" if p.name == key and
                        p.parent.parent == env.paths.blob_dir else real(p))
    with pytest.raises(StoreError, match="cannot remove the blob"):
        store_gc.remove_image(s, key, keep_trees=set())
    assert s.index.get(key) == before
    assert s.index.get_remote("https://e.example/a.aci") is not None
    assert env.paths.image_manifest(key).is_file()


def test_rm_without_arguments(env: Env) -> None:
    code, _, err = env.rkt("image", "rm")
    assert code == 254 and err == "rm: must provide at least one image ID\n"


# --- gc -------------------------------------------------------------------------------------
def test_gc_trees_then_images_by_grace_period(env: Env) -> None:
    a = env.fetch(env.aci("example.com/a"))
    b = env.fetch(env.aci("example.com/b"))
    s = env.store()
    ta, tb = s.render(a), s.render(b)
    make_pod(env.paths, "prepared", stage1_tree=ta)
    make_pod(env.paths, "garbage", stage1_tree=tb)  # garbage pods do not count (IncludeMostDirs)
    code, out, err = env.rkt("image", "gc")
    assert code == 0 and out == ""
    assert err == f'gc: removed treestore "{tb}"\n'
    assert env.paths.tree(ta).is_dir() and not env.paths.tree(tb).exists()
    assert env.store().get_image(b).tree_size == 0  # no double counting (rkt #2968)
    # both images were used just now: within the default 24h grace period
    assert {i.key for i in env.store().list_images()} == {a, b}
    s.touch_last_used(b, now=1.0)
    code, out, err = env.rkt("image", "gc", "--grace-period=1h")
    assert code == 0
    assert out == f'successfully removed aci for image: "{b}"\n'
    assert err == "gc: 1 image(s) successfully removed\n"
    code, out, err = env.rkt("image", "gc", "--grace-period=0s")
    assert out == f'successfully removed aci for image: "{a}"\n'
    assert env.paths.tree(ta).is_dir()  # the prepared pod still needs it
    assert env.store().list_images() == []


def test_gc_keeps_images_of_running_pods(env: Env) -> None:
    a = env.fetch(env.aci("example.com/a"))
    s1 = env.fetch(env.aci("example.com/stage1"))
    ts1 = env.store().render(s1)
    pod = make_pod(env.paths, "run", stage1_tree=ts1, images=[a])
    with running(pod):
        code, out, err = env.rkt("image", "gc", "--grace-period=0s")
    assert code == 0 and out == "" and err == ""
    assert {i.key for i in env.store().list_images()} == {a, s1}
    code, out, err = env.rkt("image", "gc", "--grace-period=0s")
    assert code == 0 and out.count("successfully removed") == 2
    assert env.paths.tree(ts1).is_dir()  # an exited pod in run/ still references it


def test_gc_removes_orphans_of_an_interrupted_rm(env: Env) -> None:
    a = env.fetch(env.aci("example.com/a"))
    b = env.fetch(env.aci("example.com/b"))
    s = env.store()
    s.index.remove(a)  # crash after the row went: a blob without a row
    env.paths.blob(b).unlink()  # a row without a blob
    code, _, err = env.rkt("image", "gc")
    assert code == 0, err
    assert f'removed orphaned blob of image "{a}"' in err
    assert f'removed orphaned index entry of image "{b}"' in err
    assert not env.paths.blob(a).exists() and not env.paths.image_manifest(a).exists()
    assert env.store().list_images() == []


def test_gc_of_an_empty_store_and_bad_flags(env: Env) -> None:
    assert env.rkt("image", "gc") == (0, "", "")
    code, _, err = env.rkt("image", "gc", "--grace-period=soon")
    assert code == 254 and 'invalid duration "soon"' in err
    code, _, err = env.rkt("image", "gc", "--overwrite")
    assert code == 254 and "unknown flag: --overwrite" in err


def test_decisions_are_pure() -> None:
    from rktd_less.store.index import AciRow

    rows = [AciRow(k, k, 0.0, lu, False, 1, 0) for k, lu in
            (("new", 95.0), ("old", 10.0), ("mid", 50.0), ("run", 1.0))]
    assert store_gc.images_to_collect(rows, now=100.0, grace_period=40.0,
                                      protected={"run"}) == ["old", "mid"]
    assert store_gc.images_to_collect(rows, now=100.0, grace_period=0.0,
                                      protected=set()) == ["run", "old", "mid", "new"]
    assert store_gc.trees_to_collect(["t3", "t1", "t2", "t1"], {"t2"}) == ["t1", "t3"]
