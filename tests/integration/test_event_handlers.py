"""appc event handlers (app.eventHandlers): pre-start and post-stop around the app, as in rkt.

The handlers run in the app's rootfs, as root even for a non-root app (rkt functional test
"pre-start runs as root for non-root app"), and their output goes where the app's goes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt

pytestmark = pytest.mark.integration
INSECURE = "--insecure-options=image"


def _data_dir(env: Rkt, name: str) -> Path:
    d = env.work / name
    d.mkdir()
    d.chmod(0o777)  # the app runs as uid 1000
    (d / "log").touch(0o666)  # (not created by a root handler with mode 0644)
    (d / "log").chmod(0o666)
    return d


def _volume(d: Path) -> list[str]:
    return [f"--volume=data,kind=host,source={d}"]


def test_pre_start_as_root_then_app_as_user_then_post_stop(env: Rkt) -> None:
    aci = build_aci(env.work / "handlers.aci", name="example.com/handlers", app_extra={
        "eventHandlers": [
            {"name": "pre-start", "exec": ["/bin/sh", "-c",
                                           "id -u >> /data/log; echo pre >> /data/log; "
                                           "echo pre-out"]},
            # exec[0] without a slash: looked up in the app's PATH, like the app's exec
            {"name": "post-stop", "exec": ["sh", "-c",
                                           "id -u >> /data/log; echo post >> /data/log; "
                                           "echo post-out"]},
        ]})
    d = _data_dir(env, "ok")
    cp = env("run", INSECURE, *_volume(d), str(aci), "--user=1000",
             "--mount=volume=data,target=/data", "--exec", "/bin/sh", "--", "-c",
             "id -u >> /data/log; echo app >> /data/log; echo app-out")
    assert (d / "log").read_text() == "0\npre\n1000\napp\n0\npost\n"
    # the handlers' output reaches the caller like the app's, in order
    assert cp.stdout == "pre-out\napp-out\npost-out\n", (cp.stdout, cp.stderr)
    assert cp.returncode == 0


def test_post_stop_runs_after_a_failing_app_and_keeps_its_exit_code(env: Rkt) -> None:
    aci = build_aci(env.work / "post.aci", name="example.com/post", app_extra={
        "eventHandlers": [{"name": "post-stop",
                           "exec": ["/bin/sh", "-c", "echo post >> /data/log"]}]})
    d = _data_dir(env, "appfails")
    cp = env("run", INSECURE, *_volume(d), str(aci), "--mount=volume=data,target=/data",
             "--exec", "/bin/sh", "--", "-c", "echo app >> /data/log; exit 5", check=False)
    assert cp.returncode == 5, cp.stderr
    assert (d / "log").read_text() == "app\npost\n"


def test_failing_pre_start_fails_the_pod_and_the_app_never_runs(env: Rkt) -> None:
    aci = build_aci(env.work / "badpre.aci", name="example.com/badpre", app_extra={
        "eventHandlers": [{"name": "pre-start", "exec": ["/bin/false"]},
                          {"name": "post-stop",
                           "exec": ["/bin/sh", "-c", "echo post >> /data/log"]}]})
    d = _data_dir(env, "badpre")
    uf = env.uuid_file()
    cp = env("run", INSECURE, f"--uuid-file-save={uf}", *_volume(d), str(aci), "--user=1000",
             "--mount=volume=data,target=/data", "--exec", "/bin/sh", "--", "-c",
             "echo app >> /data/log; echo app-out", check=False)
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    assert "app-out" not in cp.stdout
    # the app never ran; systemd still runs ExecStopPost= after a failed start
    assert (d / "log").read_text() == "post\n"
    assert "state=exited" in env("status", uf.read_text()).stdout
