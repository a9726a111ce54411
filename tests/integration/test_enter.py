"""rkt enter: a command in a running pod's app, with the app's user, rootfs, env and cgroup."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, wait_file

pytestmark = pytest.mark.integration
INSECURE = "--insecure-options=image"
SLEEP = ("--exec", "/bin/sh", "--", "-c", "exec sleep 600")


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0",
                     files={"only-in-busybox": b"marker\n"}, app_extra={"user": "1000",
                                                                        "group": "100"})


@pytest.fixture(scope="module")
def aci2(env: Rkt) -> Path:
    return build_aci(env.work / "other.aci", name="example.com/other", version="2.0")


def _start(env: Rkt, *run_args: str) -> tuple[subprocess.Popen[str], str]:
    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", *run_args)
    uuid = wait_file(uf)
    st = env("status", "--wait-ready=30s", uuid).stdout
    assert "state=running" in st, st
    return p, uuid


def _stop(env: Rkt, p: subprocess.Popen[str], uuid: str) -> None:
    if p.poll() is None:
        env("stop", "--force", uuid, check=False)
        p.wait(timeout=30)


@pytest.fixture(scope="module")
def pod(env: Rkt, aci: Path) -> Iterator[str]:
    p, uuid = _start(env, str(aci), *SLEEP)
    yield uuid
    _stop(env, p, uuid)


def test_enter_runs_command_and_prints(env: Rkt, pod: str) -> None:
    cp = env("enter", pod, "/bin/echo", "hi")
    assert cp.stdout == "hi\n", cp


def test_exit_code_propagates(env: Rkt, pod: str) -> None:
    cp = env("enter", pod, "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert cp.returncode == 5, cp
    assert cp.stdout == "out\n" and cp.stderr == "err\n", cp


def test_stdin_passes_through(env: Rkt, pod: str) -> None:
    assert env("enter", pod, "cat", input="to the app\n").stdout == "to the app\n"


def test_entered_process_has_the_apps_confinement(env: Rkt, pod: str) -> None:
    assert env("enter", pod, "id", "-u").stdout.strip() == "1000"
    assert env("enter", pod, "id", "-g").stdout.strip() == "100"
    assert env("enter", pod, "cat", "/only-in-busybox").stdout == "marker\n"
    assert env("enter", pod, "sh", "-c", "echo $AC_APP_NAME").stdout.strip() == "busybox"
    # the app unit sets NoNewPrivileges=yes for a non-root user
    status = env("enter", pod, "cat", "/proc/self/status").stdout
    assert any(line.split() == ["NoNewPrivs:", "1"] for line in status.splitlines()), status
    # a cgroup of the pod's own systemd (inside the pod's cgroup namespace), not the host's
    # (paths are relative to the pod's cgroup namespace: the host's tree is not visible)
    cgs = env("enter", pod, "cat", "/proc/self/cgroup").stdout.splitlines()
    cg = next(line[3:] for line in cgs if line.startswith("0::"))
    assert cg.startswith("/system.slice/rkt-enter-") and cg.endswith(".service"), cgs
    # the pod's systemd accounts it like the app itself: same slice as busybox.service
    app_cg = next(line[3:] for line in Path(f"/proc/{_app_pid(env, pod)}/cgroup").read_text()
                  .splitlines() if line.startswith("0::"))
    assert app_cg.endswith("/system.slice/busybox.service"), app_cg
    assert cg.rsplit("/", 1)[0] == "/system.slice"


def _app_pid(env: Rkt, pod: str) -> int:
    """The app's main process as the host sees it: the `sleep` below the pod's init."""
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes() == b"sleep\x00600\x00" and \
                        f"rkt-{pod}" in (d / "cgroup").read_text():
                    return int(d.name)
            except OSError:
                continue
    raise AssertionError("app process not found")


def test_missing_command_is_254(env: Rkt, pod: str) -> None:
    cp = env("enter", pod, "/no/such/cmd", check=False)
    assert cp.returncode == 254 and len(cp.stderr.strip().splitlines()) == 1, cp


def test_multi_app_pod_needs_app(env: Rkt, aci: Path, aci2: Path) -> None:
    p, uuid = _start(env, str(aci), *SLEEP, "---", str(aci2), *SLEEP)
    try:
        cp = env("enter", uuid, "/bin/true", check=False)
        assert cp.returncode == 254, cp
        assert 'specify app using "rkt enter --app= ..."' in cp.stderr, cp.stderr
        assert len(cp.stderr.strip().splitlines()) == 1, cp.stderr
        cp = env("enter", "--app=other", uuid, "sh", "-c", "id -u; echo $AC_APP_NAME")
        assert cp.stdout.split() == ["0", "other"], cp
        bad = env("enter", "--app=nope", uuid, "/bin/true", check=False)
        assert bad.returncode == 254 and "not found" in bad.stderr, bad
    finally:
        _stop(env, p, uuid)


def test_not_running_pod_is_254(env: Rkt, aci2: Path) -> None:
    uf = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci2), "--exec", "/bin/true")
    uuid = wait_file(uf)
    cp = env("enter", uuid, "/bin/true", check=False)
    assert cp.returncode == 254 and "isn't currently running" in cp.stderr, cp


def test_terminal_gets_a_pty_of_the_pod(env: Rkt, pod: str) -> None:
    import os
    import pty

    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(env.argv("enter", pod, "sh", "-c", "tty; id -u; exit 3"),
                             stdin=slave, stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every slave fd closed
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(timeout=30) == 3, p.communicate()[1]
    finally:
        os.close(master)
    lines = out.decode().split()
    assert lines[0].startswith("/dev/pts/") and lines[1] == "1000", out
