"""A pod's own cgroups where no systemd manager owns the cgroup tree (sysv init, runit,
OpenRC, a plain container): stage1 makes them, nspawn runs in them, stage1 removes them.

Paths come from the pure planner in ``stage1/standalone.py``; this module only touches the
cgroup file systems (mkdir, ``cgroup.procs``, ``cgroup.kill``, rmdir).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import RktError

KILL_TIMEOUT = 10.0
RMDIR_TIMEOUT = 5.0


def make(dirs: Sequence[Path]) -> None:
    """Create the pod's cgroup in each hierarchy (left over from a crashed run: reused)."""
    for d in dirs:
        try:
            d.mkdir(exist_ok=True)
        except OSError as e:
            raise RktError(f"cannot create cgroup {d}: {e.strerror}",
                           hint="rkt run without systemd needs root and a writable cgroup "
                                "tree (cgroup2, and name=systemd on a hybrid host)") from e


def join(dirs: Sequence[Path]) -> None:
    """Move the calling process into each cgroup (async-signal-safe enough for a forked
    child: plain open/write/close)."""
    for d in dirs:
        fd = os.open(d / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, b"0\n")
        finally:
            os.close(fd)


def procs(top: Path) -> list[int]:
    """Every process in a cgroup tree."""
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(top):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(dirpath, "cgroup.procs").read_text().split()]
    return pids


def kill(top: Path, timeout: float = KILL_TIMEOUT) -> None:
    """SIGKILL everything left in a cgroup tree and wait until it is empty."""
    if not top.is_dir() or not procs(top):
        return
    kill_file = top / "cgroup.kill"
    if kill_file.exists():
        kill_file.write_text("1\n")
    else:  # cgroup v1, or a kernel without cgroup.kill: ours by membership
        for pid in procs(top):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while procs(top):
        if time.monotonic() > deadline:
            raise RktError(f"processes left in cgroup {top} after SIGKILL: {procs(top)}")
        time.sleep(0.02)


def remove(top: Path, timeout: float = RMDIR_TIMEOUT) -> None:
    """rmdir a cgroup tree bottom-up; an emptied cgroup can be busy for a moment."""
    if not top.is_dir():
        return
    dirs = [Path(dp) for dp, _d, _f in os.walk(top)]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        deadline = time.monotonic() + timeout
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise RktError(f"cannot remove cgroup {d}: {e.strerror}") from e
                time.sleep(0.02)


def destroy(dirs: Sequence[Path]) -> None:
    """Kill what is left in the pod's cgroups, then remove them (every hierarchy tried)."""
    errors: list[RktError] = []
    for d in dirs:
        try:
            kill(d)
        except RktError as e:
            errors.append(e)
    for d in reversed(dirs):
        try:
            remove(d)
        except RktError as e:
            errors.append(e)
    if errors:
        raise errors[0]
