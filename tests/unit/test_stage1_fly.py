"""stage1-fly's pure parts and what its image tells stage0 (the bed tests run it for real in
tests/integration/test_fly.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rktd_less.common.contract import stage1_unit
from rktd_less.errors import RktError
from rktd_less.stage1 import fly, verbs

REPO = Path(__file__).resolve().parents[2]


def test_fly_manifest_tells_stage0_its_traits() -> None:
    fly_unit = stage1_unit(json.loads((REPO / "stage1-fly/manifest.json").read_text()))
    assert fly_unit.host_network and fly_unit.stop_post_always and not fly_unit.notify_ready
    nspawn = stage1_unit(json.loads((REPO / "stage1-nspawn/manifest.json").read_text()))
    assert not nspawn.host_network and not nspawn.stop_post_always and nspawn.notify_ready


def _pod(tmp_path: Path) -> Path:
    pod = tmp_path / "pod"
    (pod / "stage1").mkdir(parents=True)
    (pod / "stage1TreeStoreID").write_text("deps-sha512-x")
    (pod / "overlay-prepared").write_text("")
    (pod / "pod").write_text(json.dumps({"acKind": "PodManifest", "acVersion": "0.8.11",
                                         "apps": [{"name": "web"}], "volumes": [],
                                         "isolators": [], "annotations": [], "ports": []}))
    return pod


@pytest.mark.parametrize(("code", "status", "recorded"), [
    ("exited", "7", "7\n"), ("exited", "0", "0\n"), ("killed", "TERM", "143\n"),
    ("dumped", "SEGV", "139\n"), ("killed", "NOSUCH", None), ("", "", None)])
def test_stop_post_records_the_apps_exit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         code: str, status: str, recorded: str | None) -> None:
    pod = _pod(tmp_path)
    monkeypatch.chdir(pod)
    monkeypatch.setenv("EXIT_CODE", code)
    monkeypatch.setenv("EXIT_STATUS", status)
    assert fly.stop_post(["0f0f0f0f-0000-4000-8000-000000000000"]) == 0
    f = pod / "overlay" / "deps-sha512-x" / "upper" / "rkt" / "status" / "web"
    assert (f.read_text() if f.exists() else None) == recorded


def test_verbs() -> None:
    assert verbs.parse_opts(["--force", "--net=a,b", "u"]) == ({"force": "true", "net": "a,b"},
                                                               "u")
    with pytest.raises(RktError, match="missing pod UUID"):
        verbs.parse_opts([])
    with pytest.raises(RktError, match="unexpected argument 'x'"):
        verbs.parse_opts(["x", "u"])


def test_dispatch_turns_errors_into_254(capsys: pytest.CaptureFixture[str]) -> None:
    def bad(_args: list[str]) -> int:
        raise RktError("no")

    assert verbs.dispatch({"gc": bad}, "gc", []) == 254
    assert capsys.readouterr().err == "stage1: no\n"


def test_stop_post_finds_a_pod_gc_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rkt gc` may move an exited pod (run/ → exited-garbage/) before the unit's stop-post
    runs in its old working directory: --pods-dir finds it by UUID."""
    uuid = "0f0f0f0f-0000-4000-8000-000000000000"
    moved = tmp_path / "pods" / "exited-garbage" / uuid
    moved.parent.mkdir(parents=True)
    _pod(tmp_path).rename(moved)
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    monkeypatch.setenv("EXIT_CODE", "exited")
    monkeypatch.setenv("EXIT_STATUS", "3")
    assert fly.stop_post([f"--pods-dir={tmp_path / 'pods'}", uuid]) == 0
    status = moved / "overlay" / "deps-sha512-x" / "upper" / "rkt" / "status" / "web"
    assert status.read_text() == "3\n"
    assert fly.stop_post([uuid]) == 0  # without it: nothing to find, nothing done
