"""Escape attempts made as root inside a pod, with harmless markers only (tests/helpers/probe.c:
files that would change the machine are opened for writing, never written; a host disk is
mounted read-only and detached; nothing is created outside the pod).

Shared by the systemd tier (tests/integration/test_escapes.py) and the no-systemd tier
(tests/host/test_escapes.py).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from tests.integration.rktenv import Rkt

# op → what the default confinement must answer (never "ok")
ATTEMPTS = {
    # CVE-2022-0492's first step: the machine's v1 freezer hierarchy mounted in the pod
    "mount-cgroup": "/probe mount-cgroup /tmp/cg freezer",
    "mknod": "",  # reported by the mknod-block line below
    "open-device": "",
    "fsopen": "/probe mknod-block /tmp/hostdisk {major} {minor} {fstype}",
    # /dev/net/tun: a device DevicePolicy=closed refuses (opening it creates nothing)
    "open-chardev": "/probe mknod-char /tmp/tun 10 200",
    "open-write-core_pattern":
        "PROBE_LABEL=open-write-core_pattern /probe open-write /proc/sys/kernel/core_pattern",
    "open-write-panic_on_oom":
        "PROBE_LABEL=open-write-panic_on_oom /probe open-write /proc/sys/vm/panic_on_oom",
    "read-kallsyms": "PROBE_LABEL=read-kallsyms /probe read /proc/kallsyms",
    "unshare-user": "/probe unshare-user",
    "unshare-mount": "/probe unshare-mount",
    "ptrace": "/probe ptrace",
    "keyring": "/probe keyring",
    "mount-tmpfs": "/probe mount-tmpfs /tmp/m",
}


def host_disk(path: Path) -> tuple[int, int, str]:
    """Major, minor and filesystem type of the block device holding ``path``."""
    dev = os.stat(path).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[2] == want:
            fstype = fields[fields.index("-") + 1]
            return os.major(dev), os.minor(dev), fstype
    raise AssertionError(f"no mount of device {want}")


def script(disk: tuple[int, int, str]) -> str:
    major, minor, fstype = disk
    lines = ["mkdir -p /tmp/cg /tmp/m"]
    for cmd in ATTEMPTS.values():
        if cmd:
            lines.append(cmd.format(major=major, minor=minor, fstype=fstype))
    return "\n".join(lines)


def attempt_all(env: Rkt, aci: Path, *run_flags: str) -> dict[str, str]:
    """Run every attempt in one pod; op → the probe's answer ("ok" or an errno name)."""
    disk = host_disk(env.data)
    cp = env("run", "--insecure-options=image", *run_flags, str(aci), "--exec", "/bin/sh",
             "--", "-c", script(disk))
    results: dict[str, str] = {}
    for line in cp.stdout.splitlines():
        op, sep, answer = line.partition(": ")
        if sep:
            results[op.strip()] = answer.strip()
    return results


def describe(results: dict[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(results.items()))


def assert_all_denied(results: dict[str, str]) -> None:
    """Every attempt the default confinement must stop has been stopped."""
    # CAP_MKNOD is appc's, but DevicePolicy=closed refuses making the nodes (and opening them)
    for op in ("mknod", "mknod-char", "mount-cgroup", "open-device", "open-chardev", "fsopen",
               "open-write-core_pattern", "open-write-panic_on_oom", "read-kallsyms",
               "unshare-user", "unshare-mount", "ptrace", "keyring", "mount-tmpfs"):
        assert op in results, f"{op} did not report: {describe(results)}"
        assert results[op] != "ok", f"{op} succeeded: {describe(results)}"
