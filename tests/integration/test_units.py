"""scripts/install-units.sh in a booted systemd: groups, rkt-gc.timer/.service, tmpfiles.

The test bed's /etc and /var are a throwaway overlay, so installing into /etc/systemd/system is
fine; still, everything enabled or created here is undone at the end for the tests that share
the bed.
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rktenv import group_exists, sh

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-units.sh"
RKT = str(Path(sys.executable).parent / "rkt")
UNIT_DIR = Path("/etc/systemd/system")
TMPFILES = Path("/etc/tmpfiles.d/rkt.conf")
UNITS = ("rkt-gc.service", "rkt-gc.timer")
DATA = Path("/var/lib/rkt")
ETC = Path("/etc/rkt")
GROUPS = ("rkt", "rkt-admin")




@pytest.fixture(scope="module")
def installed() -> Iterator[list[subprocess.CompletedProcess[str]]]:
    had_groups = {g for g in GROUPS if group_exists(g)}
    had_dirs = {d for d in (DATA, ETC) if d.exists()}
    try:
        runs = [sh("bash", str(SCRIPT)), sh("bash", str(SCRIPT))]
        yield runs
    finally:
        sh("systemctl", "disable", "--now", "rkt-gc.timer", check=False)
        sh("systemctl", "stop", "rkt-gc.service", check=False)
        for u in UNITS:
            (UNIT_DIR / u).unlink(missing_ok=True)
        TMPFILES.unlink(missing_ok=True)
        sh("systemctl", "daemon-reload", check=False)
        sh("systemctl", "reset-failed", *UNITS, check=False)
        for d in (DATA, ETC):
            if d not in had_dirs:
                shutil.rmtree(d, ignore_errors=True)
        for g in GROUPS:
            if g not in had_groups:
                sh("groupdel", g, check=False)


def test_groups_exist(installed: list[subprocess.CompletedProcess[str]]) -> None:
    for g in GROUPS:
        assert group_exists(g), g


def test_second_run_is_harmless(installed: list[subprocess.CompletedProcess[str]]) -> None:
    second = installed[1]
    assert "created system group" not in second.stdout
    assert "installed " not in second.stdout, second.stdout
    assert "rkt-gc.timer enabled" in second.stdout


def test_units_installed_with_this_rkt(installed: list[subprocess.CompletedProcess[str]]) -> None:
    for u in UNITS:
        f = UNIT_DIR / u
        assert stat.S_IMODE(f.stat().st_mode) == 0o644
        assert "@RKT@" not in f.read_text()
    shown = sh("systemctl", "cat", *UNITS).stdout
    assert f"ExecStart={RKT} gc --grace-period=${{GRACE_PERIOD}}" in shown
    assert "Environment=GRACE_PERIOD=24h" in shown
    assert "OnActiveSec=0s" in shown and "OnUnitActiveSec=12h" in shown
    v = sh("systemd-analyze", "verify", *(str(UNIT_DIR / u) for u in UNITS), check=False)
    assert v.returncode == 0, v.stderr
    assert "rkt-gc" not in v.stderr, v.stderr


def test_timer_enabled_and_active(installed: list[subprocess.CompletedProcess[str]]) -> None:
    assert sh("systemctl", "is-enabled", "rkt-gc.timer").stdout.strip() == "enabled"
    assert sh("systemctl", "is-active", "rkt-gc.timer").stdout.strip() == "active"


def test_tmpfiles(installed: list[subprocess.CompletedProcess[str]]) -> None:
    rkt_gid = grp.getgrnam("rkt").gr_gid
    want = {DATA: 0o2750, DATA / "cas": 0o3775, DATA / "cas" / "db": 0o2775,
            DATA / "cas" / "tmp": 0o3775, DATA / "locks": 0o3775,
            DATA / "cas" / "tree": 0o2700, DATA / "pods" / "exited-garbage": 0o2750}
    for path, mode in want.items():
        st = path.stat()
        assert (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid) == \
            (oct(mode), 0, rkt_gid), path
    assert not (DATA / "cas" / "db" / "images.sqlite").exists()  # the store makes it
    st = ETC.stat()
    assert (oct(stat.S_IMODE(st.st_mode)), st.st_gid) == \
        (oct(0o2775), grp.getgrnam("rkt-admin").gr_gid)


def test_gc_service_runs(installed: list[subprocess.CompletedProcess[str]]) -> None:
    # An exited pod within the grace period: gc reports it, which shows the service ran rkt gc
    # against /var/lib/rkt with GRACE_PERIOD=24h. The timer (OnActiveSec=0s) started a gc when
    # it was installed; a start while that run is still going joins it, and that run listed the
    # pods before this one existed. So first wait that run out (start returns when it is done).
    sh("systemctl", "start", "rkt-gc.service")
    pod = DATA / "pods" / "exited-garbage" / str(uuid.uuid4())
    pod.mkdir()
    try:
        cursor = sh("journalctl", "--show-cursor", "-n", "0", "-q").stdout.strip()
        sh("systemctl", "start", "rkt-gc.service")
        show = sh("systemctl", "show", "-p", "Result", "-p", "ExecMainStatus",
                  "rkt-gc.service").stdout
        assert "Result=success" in show and "ExecMainStatus=0" in show, show
        # The line names this pod's fresh UUID, so it is matched without -u: journald may
        # index a short-lived service's output a moment after the unit finished.
        args = ["journalctl", "--no-pager", "-o", "cat"]
        if cursor.startswith("-- cursor: "):
            args.append("--after-cursor=" + cursor.removeprefix("-- cursor: "))
        want = f'pod "{pod.name}" not removed: still within grace period (24h0m0s)'
        deadline = time.monotonic() + 10
        while True:
            sh("journalctl", "--sync", check=False)
            log = sh(*args).stdout
            if want in log or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert want in log, log
        unit_log = sh(*args, "-u", "rkt-gc.service").stdout
        assert "Failed" not in unit_log and "failed" not in unit_log, unit_log
        assert pod.is_dir()
    finally:
        os.rmdir(pod)
