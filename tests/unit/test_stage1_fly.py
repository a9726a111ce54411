"""stage1-fly's pure parts and what its image tells stage0 (the bed tests run it for real in
tests/integration/test_fly.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rktd_less.common.contract import stage1_unit
from rktd_less.errors import RktError
from rktd_less.stage1 import verbs

REPO = Path(__file__).resolve().parents[2]
STOP_POST = REPO / "stage1-fly" / "entrypoints" / "stop-post"
STATUS = Path("overlay") / "deps-sha512-x" / "upper" / "rkt" / "status" / "web"


def stop_post(cwd: Path, args: list[str], code: str, status: str) -> None:
    """The fly image's /stop-post as the unit runs it: systemd's variables, the pod's dir."""
    cp = subprocess.run([str(STOP_POST), *args], cwd=cwd, capture_output=True, text=True,
                        env={"PATH": "/usr/bin:/bin", "EXIT_CODE": code, "EXIT_STATUS": status},
                        check=False)
    assert (cp.returncode, cp.stderr) == (0, "")


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
    ("dumped", "SEGV", "139\n"), ("killed", "KILL", "137\n"), ("killed", "NOSUCH", None),
    ("", "", None), ("exited", "7; x", None)])
def test_stop_post_records_the_apps_exit(tmp_path: Path, code: str, status: str,
                                         recorded: str | None) -> None:
    pod = _pod(tmp_path)
    (pod / "fly-status").write_text(f"{STATUS}\n")  # as the stage1's run names it
    (pod / STATUS).parent.mkdir(parents=True)
    stop_post(pod, ["0f0f0f0f-0000-4000-8000-000000000000"], code, status)
    f = pod / STATUS
    assert (f.read_text() if f.exists() else None) == recorded
    assert [x.name for x in f.parent.iterdir()] == ([] if recorded is None else ["web"])


def test_stop_post_of_an_app_that_never_ran(tmp_path: Path) -> None:
    """No fly-status (the stage1 failed before the exec): no status, however the unit ended."""
    pod = _pod(tmp_path)
    stop_post(pod, ["0f0f0f0f-0000-4000-8000-000000000000"], "exited", "254")
    assert not (pod / STATUS).exists()
    (pod / "fly-status").write_text("../../etc/x\n")  # only below the pod
    stop_post(pod, ["0f0f0f0f-0000-4000-8000-000000000000"], "exited", "3")
    assert sorted(x.name for x in pod.iterdir()) == ["fly-status", "overlay-prepared", "pod",
                                                      "stage1", "stage1TreeStoreID"]


def test_stage1_image_carries_the_shell_stop_post(tmp_path: Path) -> None:
    import tarfile

    from rktd_less.stage1 import image

    image.build_aci(REPO / "stage1-fly", tmp_path / "fly.aci")
    with tarfile.open(tmp_path / "fly.aci") as tar:
        member = tar.getmember("rootfs/stop-post")
        assert member.mode == 0o755
        f = tar.extractfile(member)
        assert f is not None and f.read() == STOP_POST.read_bytes()
        init = tar.extractfile("rootfs/init")
        assert init is not None and b"rktd_less.stage1.fly" in init.read()


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


def test_stop_post_finds_a_pod_gc_moved(tmp_path: Path) -> None:
    """`rkt gc` may move an exited pod (run/ → exited-garbage/) before the unit's stop-post
    runs in its old working directory: --pods-dir finds it by UUID."""
    uuid = "0f0f0f0f-0000-4000-8000-000000000000"
    moved = tmp_path / "pods" / "exited-garbage" / uuid
    moved.parent.mkdir(parents=True)
    pod = _pod(tmp_path)
    (pod / "fly-status").write_text(f"{STATUS}\n")
    (pod / STATUS).parent.mkdir(parents=True)
    pod.rename(moved)
    gone = tmp_path / "gone"
    gone.mkdir()
    stop_post(gone, [f"--pods-dir={tmp_path / 'pods'}", uuid], "exited", "3")
    assert (moved / STATUS).read_text() == "3\n"
    (moved / STATUS).unlink()
    stop_post(gone, [uuid], "exited", "3")  # without it: nothing to find, nothing done
    assert not (moved / STATUS).exists()
