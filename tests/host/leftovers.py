"""Snapshots of what a pod could leave on the host: files under /run, mounts of the host's
mount namespace, cgroup directories of every mounted hierarchy, processes naming the pod."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def run_files() -> frozenset[str]:
    found = set()
    for dirpath, dirs, files in os.walk("/run"):
        found.update(os.path.join(dirpath, n) for n in dirs + files)
    return frozenset(found)


def mounts() -> frozenset[str]:
    """Mount points with source and type, of this (the host's) mount namespace."""
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        out.add(f"{_unescape(fields[4])} {fields[3]} {right}")
    return frozenset(out)


def cgroup_mounts() -> list[Path]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] in (["cgroup"], ["cgroup2"]):
            points.append(Path(_unescape(left.split()[4])))
    return points


def cgroup_dirs() -> frozenset[str]:
    found = set()
    for top in cgroup_mounts():
        for dirpath, _dirs, _files in os.walk(top):
            found.add(dirpath)
    return frozenset(found)


def cmdline(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def processes_naming(text: str) -> list[str]:
    me = str(os.getpid())
    return [f"{pid}: {cmdline(pid)}" for pid in os.listdir("/proc")
            if pid.isdigit() and pid != me and text in cmdline(pid)]


def test_beds() -> set[str]:
    """Test beds of this repo (possibly started by someone else meanwhile): their cgroups are
    not ours to judge."""
    base = REPO / ".testbed"
    return {p.name for p in base.iterdir()} if base.is_dir() else set()


def _foreign_live(cgroup: str, uuid: str) -> bool:
    """A cgroup holding live processes none of which is the pod's: someone else's workload
    that started meanwhile (a test bed, another session), not a leftover."""
    pids: list[str] = []
    for dirpath, _dirs, _files in os.walk(cgroup):
        with contextlib.suppress(OSError):
            pids += Path(dirpath, "cgroup.procs").read_text().split()
    return bool(pids) and not any(uuid in cmdline(p) for p in pids)


@dataclass(frozen=True)
class Snapshot:
    run: frozenset[str]
    mounts: frozenset[str]
    cgroups: frozenset[str]
    beds: frozenset[str]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(run_files(), mounts(), cgroup_dirs(), frozenset(test_beds()))


def differences(before: Snapshot, after: Snapshot, uuid: str) -> list[str]:
    """Everything that changed on the host, as readable lines (empty: nothing left behind)."""
    problems = [f"/run: new {p}" for p in sorted(after.run - before.run)]
    problems += [f"/run: gone {p}" for p in sorted(before.run - after.run)]
    problems += [f"mount: new {m}" for m in sorted(after.mounts - before.mounts)]
    problems += [f"mount: gone {m}" for m in sorted(before.mounts - after.mounts)]
    beds = before.beds | after.beds

    def bed(path: str) -> bool:
        return any(part in beds for part in Path(path).parts)

    problems += [f"cgroup: new {c}" for c in sorted(after.cgroups - before.cgroups)
                 if not bed(c) and not _foreign_live(c, uuid)]
    problems += [f"cgroup: gone {c}" for c in sorted(before.cgroups - after.cgroups)
                 if not bed(c)]
    problems += [f"process: {p}" for p in processes_naming(uuid)]
    return problems


def reap_pod(uuid: str) -> None:
    """After a failed test: kill what is left of the pod and remove its cgroups, so one
    failure leaves nothing behind either."""
    import signal
    import time

    tops = [Path(c) for c in cgroup_dirs() if Path(c).name == f"rkt-{uuid}"]
    for top in tops:
        kill = top / "cgroup.kill"
        if kill.exists():
            kill.write_text("1\n")
    for line in processes_naming(uuid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
    for top in tops:
        for d in sorted((Path(p) for p, _d, _f in os.walk(top)), key=lambda p: -len(p.parts)):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
