"""stage1-fly in the test bed: one app chrooted with the machine's namespaces, as a unit that
systemd and machined know; its mounts never reach the machine's mount table."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, sh, wait_for

pytestmark = pytest.mark.integration
INSECURE = "--insecure-options=image"
FLY = "--stage1-from-dir=stage1-fly.aci"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0",
                     exec_=("/bin/sh", "-c", "echo image default"))


def _fly(env: Rkt, aci: Path, script: str, *flags: str, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    return env("run", INSECURE, FLY, *flags, str(aci), "--exec", "/bin/sh", "--", "-c",
               script, check=check)


def test_the_app_shares_the_machines_namespaces_and_returns_its_status(
        env: Rkt, aci: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in").write_text("from-the-host\n")
    cp = _fly(env, aci, "for ns in pid net uts ipc; do readlink /proc/self/ns/$ns; done; "
              "hostname; cat /data/in; echo written > /data/out; id -u; "
              "grep -c ' /tmp ' /proc/self/mounts; ls /dev/null; exit 7",
              f"--volume=data,kind=host,source={vol}", "--mount=volume=data,target=/data",
              check=False)
    assert cp.returncode == 7, cp
    lines = cp.stdout.splitlines()
    host = [os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "net", "uts", "ipc")]
    assert lines[:4] == host, (lines, host)
    assert lines[4] == os.uname().nodename
    assert lines[5:9] == ["from-the-host", "0", "1", "/dev/null"], lines
    assert (vol / "out").read_text() == "written\n"
    assert env.pod_mounts() == []
    uuid = next(ln.split("\t")[0] for ln in env("list", "--no-legend").stdout.splitlines()
                if "\texited\t" in ln)
    assert uuid  # list shows the exited fly pod


def test_detached_fly_pod_is_a_machine_with_a_journal_and_stops(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    env("run", INSECURE, FLY, "--detach", f"--uuid-file-save={uf}", str(aci), "--exec",
        "/bin/sh", "--", "-c", "echo hello-fly; exec sleep 600")
    uuid = uf.read_text().strip()
    unit = f"rkt-{uuid}.service"
    try:
        assert wait_for(lambda: f"rkt-{uuid}" in sh("machinectl", "list", "--no-legend").stdout,
                        10), sh("machinectl", "list").stdout
        assert wait_for(lambda: "hello-fly" in sh("journalctl", "-u", unit, "-o", "cat",
                                                  "--no-pager", check=False).stdout, 10)
        status = env("status", uuid).stdout
        assert "state=running" in status, status
        pid = int(re.search(r"^pid=(\d+)$", status, re.M).group(1))  # type: ignore[union-attr]
        assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")
        # enter: the app's root and mount namespace, the machine's pid namespace
        out = env("enter", uuid, "/bin/sh", "-c", "cat /proc/1/comm; ls /proc/self/root/bin/sh"
                  ).stdout.split()
        assert out == [Path("/proc/1/comm").read_text().strip(), "/proc/self/root/bin/sh"]
        assert env.pod_mounts() == []  # not even while it runs
        env("stop", uuid)
        assert wait_for(lambda: "state=exited" in env("status", uuid).stdout, 20)
        # ended by SIGTERM: recorded by the unit's ExecStopPost, just after the app ended
        assert wait_for(lambda: "app-busybox=143" in env("status", uuid).stdout, 10), \
            env("status", uuid).stdout
        assert wait_for(lambda: f"rkt-{uuid}" not in sh("machinectl", "list",
                                                         "--no-legend").stdout, 10)
    finally:
        sh("systemctl", "stop", unit, check=False)
    assert env.pod_mounts() == []
    exported = env.work / "fly-export.aci"
    env("export", uuid, str(exported))
    assert exported.stat().st_size > 0
    env("rm", uuid)
    assert not any((env.data / "pods").glob(f"*/{uuid}"))


def test_fly_under_systemd_run_keeps_the_unit(env: Rkt, aci: Path) -> None:
    """`systemd-run rkt run`: the pod is that unit; its status is the app's."""
    unit = f"rkt-fly-keep-unit-test-{os.getpid()}.service"
    cp = sh("systemd-run", f"--unit={unit}", "--wait", "--pipe", "--quiet", "--collect",
            *env.argv("run", INSECURE, FLY, str(aci), "--exec", "/bin/sh", "--", "-c",
                      "echo in-the-unit; exit 3"), check=False)
    assert cp.returncode == 3, cp
    assert "in-the-unit" in cp.stdout
    assert env.pod_mounts() == []


def test_fly_refuses_several_apps_and_ports(env: Rkt, aci: Path) -> None:
    two = build_aci(env.work / "two.aci", name="example.com/two", version="1.0",
                    exec_=("/bin/true",),
                    app_extra={"ports": [{"name": "http", "protocol": "tcp", "port": 80}]})
    before = sorted(p.name for p in (env.data / "pods").glob("*/*"))
    cp = env("run", INSECURE, FLY, str(aci), str(two), check=False)
    assert cp.returncode == 254, cp
    assert cp.stderr.strip().splitlines() == [
        "stage1: fly only supports 1 application per pod, this one has 2"], cp.stderr
    cp = env("run", INSECURE, FLY, "--port=http:8080", str(two), check=False)
    assert cp.returncode == 254 and "--port does not apply" in cp.stderr, cp
    assert len(cp.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (env.data / "pods").glob("*/*")) == before
    assert env.pod_mounts() == []
