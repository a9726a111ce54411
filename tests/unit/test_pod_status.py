"""The exit status of a foreground pod, from its unit and the apps' recorded statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rktd_less.errors import SystemdError
from rktd_less.pod.launch import pod_status
from rktd_less.systemd.bus import UnitStatus

UNIT = "rkt-x.service"


def _pod(tmp_path: Path, statuses: dict[str, int | None]) -> Path:
    pod = tmp_path / "pod"
    (pod / "overlay" / "t" / "upper" / "rkt" / "status").mkdir(parents=True)
    (pod / "stage1TreeStoreID").write_text("t")
    (pod / "pod").write_text(json.dumps({"apps": [{"name": n} for n in statuses]}))
    for name, code in statuses.items():
        if code is not None:
            (pod / "overlay" / "t" / "upper" / "rkt" / "status" / name).write_text(str(code))
    return pod


def _unit(code: int, status: int) -> UnitStatus:
    return UnitStatus("inactive", "dead", "success", code, status, 0)


def test_the_unit_s_status_wins_then_the_apps(tmp_path: Path) -> None:
    pod = _pod(tmp_path, {"a": 0, "b": 4})
    assert pod_status(pod, _unit(1, 4), UNIT) == 4
    assert pod_status(pod, _unit(2, 9), UNIT) == 137  # nspawn killed by SIGKILL
    # stopped from outside: nspawn ends 0, the apps' records tell
    assert pod_status(pod, _unit(1, 0), UNIT) == 4


def test_a_pod_stopped_before_an_app_finished_is_terminated(tmp_path: Path) -> None:
    assert pod_status(_pod(tmp_path, {"a": 0, "b": None}), _unit(1, 0), UNIT) == 143
    assert pod_status(_pod(tmp_path / "2", {"a": 0}), _unit(1, 0), UNIT) == 0


def test_a_unit_that_is_gone_leaves_the_apps_records(tmp_path: Path) -> None:
    assert pod_status(_pod(tmp_path, {"a": 3}), None, UNIT) == 3
    with pytest.raises(SystemdError, match="disappeared"):
        pod_status(_pod(tmp_path / "2", {"a": None}), None, UNIT)
