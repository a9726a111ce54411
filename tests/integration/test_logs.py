"""rkt logs: an app's output read back from the pod's journal, for exited and running pods."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, wait_file, wait_for

INSECURE = "--insecure-options=image"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0")


def test_logs_of_an_exited_pod(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--name=one", "--exec", "/bin/sh",
        "--", "-c", "echo first; echo second; echo third >&2", "---",
        str(aci), "--name=two", "--exec", "/bin/echo", "--", "from-two")
    uuid = uf.read_text().strip()
    # journald may still be flushing the last lines when run returns
    assert wait_for(lambda: "from-two" in env("logs", uuid).stdout, timeout=10)
    out = env("logs", uuid).stdout.splitlines()
    assert [x for x in out if x in ("first", "second", "third", "from-two")] == out, out
    assert set(out) == {"first", "second", "third", "from-two"}
    assert env("logs", "--app=one", uuid).stdout.splitlines() == ["first", "second", "third"]
    assert env("logs", "--app=one", "--lines=1", uuid).stdout.splitlines() == ["third"]
    cp = env("logs", "--app=nope", uuid, check=False)
    assert cp.returncode == 254 and 'app "nope" not found' in cp.stderr, cp
    cp = env("logs", "--lines=x", uuid, check=False)
    assert cp.returncode == 254 and 'invalid --lines "x"' in cp.stderr, cp
    env("gc", "--grace-period=0s")
    cp = env("logs", uuid, check=False)
    assert cp.returncode == 254, cp


def test_follow_a_running_pod(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh",
                  "--", "-c", "i=0; while [ $i -lt 400 ]; do echo tick $i; i=$((i+1)); "
                  "sleep 0.05; done")
    uuid = wait_file(uf)
    f = env.popen("logs", "--follow", uuid)
    try:
        assert f.stdout is not None
        first = [f.stdout.readline().strip() for _ in range(3)]
        assert first == ["tick 0", "tick 1", "tick 2"], first
        env("stop", uuid)
        p.communicate(timeout=30)
        assert f.wait(timeout=30) == 0  # follow ends once the pod has ended
        # the same buffered reader as the first lines (communicate() would skip its buffer)
        rest = f.stdout.read()
        assert rest.splitlines()[0] == "tick 3"
    finally:
        for proc in (f, p):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
