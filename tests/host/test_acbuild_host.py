"""`acbuild run` where no systemd manager is reachable, on this very machine: the step is
acbuild's child (no unit), its status and output come back, its changes reach the build only
after success, and nothing is left on the host: no mount (the overlay lives in the step's own
mount namespace), no file under /run (nspawn's go to a tmpfs there), no cgroup, no process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.host.leftovers import Snapshot, differences
from tests.integration.rktenv import Rkt

ACBUILD = str(Path(sys.executable).parent / "acbuild")


def acbuild(env: Rkt, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ACBUILD, f"--dir={env.data}", *args], cwd=work,
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_acbuild_run_without_systemd_leaves_nothing(env: Rkt) -> None:
    rootfs = env.work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    subprocess.run(["cp", "/bin/busybox", str(rootfs / "bin")], check=True)
    (rootfs / "bin" / "sh").symlink_to("busybox")
    work = env.work / "build"
    work.mkdir()
    assert acbuild(env, work, "begin", str(rootfs)).returncode == 0
    before = Snapshot.take()
    cp = acbuild(env, work, "run", "--", "/bin/sh", "-c", "echo made > /made; echo out")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "out\n", "")
    cp = acbuild(env, work, "run", "--", "/bin/sh", "-c", "echo no > /no; exit 5")
    assert (cp.returncode, cp.stderr) == (5, "")
    problems = differences(before, Snapshot.take(), "acbuild-run-")
    assert not problems, "left on the host:\n" + "\n".join(problems)
    own = work / ".acbuild" / "currentaci" / "rootfs"
    assert sorted(p.name for p in own.iterdir()) == ["bin", "made"]
    assert (own / "made").read_text() == "made\n"
    assert not (env.data / "locks").exists()  # no dependencies: rkt's store untouched
    assert acbuild(env, work, "end").returncode == 0
