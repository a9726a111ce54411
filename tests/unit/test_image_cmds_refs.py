"""What pods hold in the store (rktd_less.pod.refs): trees by phase, images of running pods."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from rktd_less.errors import PodError
from rktd_less.paths import Paths
from rktd_less.pod import poddir, refs
from tests.unit.test_image_cmds import make_pod, running

T = ["deps-sha512-" + c * 64 for c in "0123456789abcdef"]


def test_trees_in_use_by_phase(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    assert refs.tree_ids_in_use(paths) == set()  # no pods dir at all
    make_pod(paths, "embryo")  # nothing written yet
    make_pod(paths, "prepare", stage1_tree=T[0], app_trees=[T[1]])
    make_pod(paths, "prepared", stage1_tree=T[2], app_trees=[T[3], T[4]])
    make_pod(paths, "run", stage1_tree=T[5], app_trees=[T[6]], images=["sha512-run"])
    make_pod(paths, "exited-garbage", stage1_tree=T[7])
    make_pod(paths, "garbage", stage1_tree=T[8], app_trees=[T[9]])
    assert refs.tree_ids_in_use(paths) == set(T[:8])
    # exited (nobody holds the lock): not running, so no images protected
    assert refs.images_of_running_pods(paths) == set()


def test_images_of_running_pods(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    pod = make_pod(paths, "run", stage1_tree=T[0], images=["sha512-a", "sha512-b"])
    make_pod(paths, "prepared", stage1_tree=T[1], images=["sha512-c"])
    with running(pod):
        assert refs.images_of_running_pods(paths) == {"sha512-a", "sha512-b"}
        pods = refs.scan(paths)
        assert refs.running_pod_using(pods, "sha512-a", []) == pod.name
        assert refs.running_pod_using(pods, "sha512-x", [T[0]]) == pod.name
        assert refs.running_pod_using(pods, "sha512-c", [T[1]]) is None


def test_unreadable_manifest_of_a_running_pod_is_an_error(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    pod = make_pod(paths, "run", stage1_tree=T[0])
    (pod / "pod").write_text("{not json")
    with running(pod), pytest.raises(PodError, match="cannot read the manifest of pod"):
        refs.images_of_running_pods(paths)


def test_a_pod_moved_during_the_scan_is_followed(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    paths = Paths(tmp_path)
    pod = make_pod(paths, "run", stage1_tree=T[0], app_trees=[T[1]])
    paths.phase_dir("exited-garbage").mkdir(parents=True)
    real = refs._trees
    moved = threading.Event()

    def move_first(ref: poddir.PodRef) -> set[str]:
        if not moved.is_set():  # gc moves the pod right as we read it
            moved.set()
            os.rename(pod, paths.pod("exited-garbage", pod.name))
        return real(ref)

    monkeypatch.setattr(refs, "_trees", move_first)
    assert refs.tree_ids_in_use(paths) == {T[0], T[1]}



def test_prepare_lock_excludes(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "data")
    with refs.prepare_lock(paths, exclusive=False), refs.prepare_lock(paths, exclusive=False):
        pass  # shared holders coexist
    assert paths.prepare_lock.is_file()
    got = threading.Event()
    with refs.prepare_lock(paths, exclusive=True):
        t = threading.Thread(target=lambda: _take(paths, got))
        t.start()
        assert not got.wait(0.2)
    t.join(5)
    assert got.is_set()


def _take(paths: Paths, got: threading.Event) -> None:
    with refs.prepare_lock(paths, exclusive=False):
        got.set()
