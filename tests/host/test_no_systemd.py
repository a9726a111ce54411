"""`rkt run` where no systemd manager is reachable, on this very machine (PID 1 is not
systemd, /run is a plain directory on disk, cgroups are a v1/v2 hybrid): the pod runs as the
caller's child as rkt's did, its exit status and output come back as usual, it says once that
machinectl/journalctl integration is unavailable, `rkt stop` (also --force), `list`, `status`
and `gc` work, and nothing is left on the host: no file under /run, no mount, no cgroup
directory in any hierarchy, no process."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.host.leftovers import Snapshot, differences, reap_pod
from tests.integration.rktenv import Rkt, wait_file, wait_for

INSECURE = "--insecure-options=image"
NOTICE = "machinectl/journalctl"
APP = "busybox"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0")


@pytest.fixture
def before() -> Snapshot:
    return Snapshot.take()


def assert_nothing_left(before: Snapshot, uuid: str) -> None:
    problems = differences(before, Snapshot.take(), uuid)
    assert not problems, "left on the host:\n" + "\n".join(problems)


def notices(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if NOTICE in line]


def status(env: Rkt, uuid: str) -> dict[str, str]:
    out = env("status", uuid).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def start_sleeper(env: Rkt, aci: Path) -> tuple[subprocess.Popen[str], str]:
    uf = env.uuid_file()
    p = env.popen(INSECURE, "run", f"--uuid-file-save={uf}", str(aci),
                  "--exec", "/bin/sleep", "--", "1000")
    uuid = wait_file(uf)
    assert wait_for(lambda: status(env, uuid).get("pid", "") != "", timeout=30), \
        status(env, uuid)
    return p, uuid


def finish(p: subprocess.Popen[str], uuid: str, timeout: float = 30) -> tuple[str, str]:
    """Wait for `rkt run` to end; if it does not, kill what is left of the pod and fail."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        reap_pod(uuid)
        out, err = p.communicate(timeout=30)
        raise AssertionError(f"rkt run did not end (status {p.returncode})\n"
                             f"stdout: {out}\nstderr: {err}") from None


def test_run_exit_status_output_notice(env: Rkt, aci: Path, before: Snapshot) -> None:
    uf = env.uuid_file()
    cp = env(INSECURE, "run", f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh", "--",
             "-c", "echo out; echo err >&2; exit 7", check=False, timeout=60)
    uuid = uf.read_text()
    # The pod console merges the app's stdout and stderr, as rkt's did (and as this
    # project's systemd path does, tests/integration/test_pods.py): both arrive on stdout.
    assert cp.stdout == "out\nerr\n", (cp.stdout, cp.stderr)
    assert len(notices(cp.stderr)) == 1, cp.stderr
    assert cp.stderr.splitlines() == notices(cp.stderr), cp.stderr  # nothing else: no nspawn noise
    assert cp.returncode == 7, cp.stderr
    st = status(env, uuid)
    assert st["state"] == "exited" and st["exited"] == "true", st
    assert st[f"app-{APP}"] == "7", st
    assert "pid" not in st
    listed = [line for line in env("list", "--full").stdout.splitlines() if uuid in line]
    assert len(listed) == 1 and "exited" in listed[0].split(), listed
    assert_nothing_left(before, uuid)


def test_stop(env: Rkt, aci: Path, before: Snapshot) -> None:
    p, uuid = start_sleeper(env, aci)
    listed = [line for line in env("list", "--full").stdout.splitlines() if uuid in line]
    assert len(listed) == 1 and "running" in listed[0].split(), listed
    assert env("stop", uuid).stdout == f'"{uuid}"\n'
    _out, err = finish(p, uuid)
    assert p.returncode == 0, err  # an orderly halt, as nspawn reports it
    assert len(notices(err)) == 1, err
    assert status(env, uuid)["state"] == "exited"
    assert_nothing_left(before, uuid)


def test_stop_force(env: Rkt, aci: Path, before: Snapshot) -> None:
    p, uuid = start_sleeper(env, aci)
    assert env("stop", "--force", uuid).stdout == f'"{uuid}"\n'
    _out, err = finish(p, uuid)
    # rkt's `rkt run` was nspawn itself: SIGKILL to it ends `rkt run` by SIGKILL
    assert p.returncode == -signal.SIGKILL, err
    assert "Traceback" not in err, err
    st = status(env, uuid)
    assert st["state"] == "exited", st
    assert_nothing_left(before, uuid)
    again = env("stop", uuid, check=False)
    assert again.returncode == 254 and "already stopped" in again.stderr


def test_sigterm_to_rkt_run_stops_the_pod(env: Rkt, aci: Path, before: Snapshot) -> None:
    p, uuid = start_sleeper(env, aci)
    p.send_signal(signal.SIGTERM)  # passed on to nspawn: an orderly halt
    _out, err = finish(p, uuid)
    assert p.returncode == 0, err
    assert status(env, uuid)["state"] == "exited"
    assert_nothing_left(before, uuid)


def test_gc_removes_everything(env: Rkt, aci: Path, before: Snapshot) -> None:
    uf = env.uuid_file()
    env(INSECURE, "run", f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/true")
    uuid = uf.read_text()
    cp = env("gc", "--grace-period=0s")
    assert f'Garbage collecting pod "{uuid}"' in cp.stdout, cp.stdout
    assert env("list", "--no-legend").stdout.strip() == ""
    pods = env.data / "pods"
    assert not [p for p in pods.glob("*/*")], list(pods.glob("*/*"))
    assert_nothing_left(before, uuid)


def test_ctrl_c_on_a_terminal_halts_the_pod_once(env: Rkt, aci: Path, before: Snapshot) -> None:
    """^C reaches the whole foreground process group, nspawn included: stage1 must not pass
    it on a second time (nspawn takes a second request as "terminate at once")."""
    import os
    import pty
    import time

    from rktd_less.common.podstatus import is_ready

    uf = env.uuid_file()
    pid, master = pty.fork()
    if pid == 0:  # child: session leader with the pty as controlling terminal
        argv = env.argv(INSECURE, "run", f"--uuid-file-save={uf}", str(aci),
                        "--exec", "/bin/sleep", "--", "1000")
        os.execv(argv[0], argv)
    output = b""
    try:
        uuid = wait_file(uf)
        assert wait_for(lambda: is_ready(env.data / "pods" / "run" / uuid), timeout=30)
        os.write(master, b"\x03")
        end = time.monotonic() + 30
        status = None
        while time.monotonic() < end:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            time.sleep(0.05)
        try:
            while chunk := os.read(master, 65536):
                output += chunk
        except OSError:
            pass
        if status is None:
            reap_pod(uuid)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"rkt run did not end after ^C: {output!r}")
    finally:
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert len(notices(output.decode(errors="replace"))) == 1, output
    assert status_of(env, uuid) == "exited"
    assert_nothing_left(before, uuid)


def status_of(env: Rkt, uuid: str) -> str:
    return status(env, uuid)["state"]


def test_gc_after_the_supervisor_was_killed(env: Rkt, aci: Path, before: Snapshot) -> None:
    """SIGKILL to `rkt run` (the supervising stage1): the pod runs on under nspawn, `rkt stop`
    still ends it, and `rkt gc` removes the cgroups the dead supervisor could not."""
    p, uuid = start_sleeper(env, aci)
    p.kill()
    p.wait(timeout=30)  # (nspawn still holds the pipes of its output: no communicate())
    try:
        assert status(env, uuid)["state"] == "running"
        assert env("stop", uuid).stdout == f'"{uuid}"\n'
        assert wait_for(lambda: status(env, uuid)["state"] == "exited", timeout=30)
        left = differences(before, Snapshot.take(), uuid)
        assert any(f"rkt-{uuid}" in line for line in left), left  # the supervisor's cgroups
        cp = env("gc", "--grace-period=0s")
        assert f'Garbage collecting pod "{uuid}"' in cp.stdout, cp.stdout
        assert_nothing_left(before, uuid)
    finally:
        reap_pod(uuid)
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()


def test_default_network_without_systemd(env: Rkt, aci: Path, before: Snapshot) -> None:
    """The default network works where no systemd runs (host-tier.sh gives the tier a network
    namespace of its own): the pod gets its address, and when it ends its supervising stage1
    releases it (no netns, no lease, no rule), as the pod unit's ExecStopPost does elsewhere."""
    uf = env.uuid_file()
    cp = env(INSECURE, "run", f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh", "--",
             "-c", "ip -4 -o addr show eth0", check=False, timeout=60)
    uuid = uf.read_text()
    assert cp.returncode == 0 and "inet 172.16.28." in cp.stdout, (cp.stdout, cp.stderr)
    assert "networks=default:ip4=172.16.28." in env("status", uuid).stdout
    assert list(Path("/run/netns").iterdir()) == []
    leases = [p for p in Path("/var/lib/cni/networks").glob("*/*")
              if p.name != "lock" and not p.name.startswith("last_reserved_ip")]
    assert leases == []
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True,
                         check=True).stdout
    assert "CNI-" not in nat, nat
    env("gc", "--grace-period=0s")
    assert_nothing_left(before, uuid)


def test_fly_without_systemd(env: Rkt, aci: Path, before: Snapshot) -> None:
    """stage1-fly where no systemd runs: the app is rkt's process, its status is rkt's, and
    its mounts die with it; stop ends it."""
    uf = env.uuid_file()
    cp = env(INSECURE, "run", "--stage1-from-dir=stage1-fly.aci", f"--uuid-file-save={uf}",
             str(aci), "--exec", "/bin/sh", "--", "-c", "echo fly-out; exit 7", check=False,
             timeout=60)
    uuid = uf.read_text()
    assert cp.returncode == 7, cp
    assert cp.stdout == "fly-out\n"
    assert status(env, uuid).get("state") == "exited"
    env("rm", uuid)
    assert_nothing_left(before, uuid)
    uf.unlink()
    p = env.popen(INSECURE, "run", "--stage1-from-dir=stage1-fly.aci", f"--uuid-file-save={uf}",
                  str(aci), "--exec", "/bin/sleep", "--", "1000")
    uuid = wait_file(uf)
    assert wait_for(lambda: status(env, uuid).get("state") == "running", timeout=30)
    env("stop", uuid)
    finish(p, uuid)
    assert p.returncode == -signal.SIGTERM  # rkt's process was the app's (a shell says 143)
    env("rm", uuid)
    assert_nothing_left(before, uuid)
