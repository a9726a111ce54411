"""The pure planning of a pod without a systemd manager (stage1/standalone.py)."""

from __future__ import annotations

import signal
from pathlib import Path

from rktd_less.stage1.nspawn import NspawnPlan, nspawn_argv
from rktd_less.stage1.standalone import (
    SI_KERNEL,
    Hierarchy,
    hierarchies,
    own_cgroups,
    pod_cgroups,
    run_tmpfs_wanted,
    should_forward,
)

UUID = "b8473215-c776-467b-afe8-58fda2a77f09"

# This project's machines: v1 controllers, name=systemd, cgroup2 at /sys/fs/cgroup/unified.
HYBRID_MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:26 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 30 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
32 31 0:28 / /sys/fs/cgroup/unified rw,nosuid,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:29 / /sys/fs/cgroup/systemd rw,nosuid,relatime shared:10 - cgroup cgroup rw,name=systemd
34 31 0:30 / /sys/fs/cgroup/memory rw,nosuid,relatime shared:11 - cgroup cgroup rw,memory
"""
HYBRID_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/5b59fa142da54b402c06f23bc8ed0e98
1:cpu:/
0::/
"""


def test_hierarchies_of_a_hybrid_host() -> None:
    assert hierarchies(HYBRID_MOUNTINFO) == [
        Hierarchy(Path("/sys/fs/cgroup/unified"), "/", ""),
        Hierarchy(Path("/sys/fs/cgroup/systemd"), "/", "name=systemd"),
    ]


def test_hierarchies_of_a_pure_cgroup2_host_and_odd_lines() -> None:
    text = ("25 22 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
            "26 22 0:23 / /mnt/again rw - cgroup2 cgroup2 rw\n"  # mounted twice: first wins
            "garbage\n"
            "27 22 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n")
    assert hierarchies(text) == [Hierarchy(Path("/sys/fs/cgroup"), "/", "")]


def test_hierarchies_unescape_mount_points() -> None:
    text = "25 22 0:23 / /sys/fs/my\\040cgroups rw - cgroup2 cgroup2 rw\n"
    assert hierarchies(text)[0].mountpoint == Path("/sys/fs/my cgroups")


def test_own_cgroups_keeps_cgroup2_and_name_systemd_only() -> None:
    assert own_cgroups(HYBRID_CGROUP) == {"name=systemd": "/", "": "/"}


def test_pod_cgroups_below_our_own_cgroup() -> None:
    assert pod_cgroups(HYBRID_MOUNTINFO, HYBRID_CGROUP, UUID) == [
        Path(f"/sys/fs/cgroup/unified/rkt-{UUID}"),
        Path(f"/sys/fs/cgroup/systemd/rkt-{UUID}"),
    ]
    nested = "0::/services/web\n1:name=systemd:/services/web\n"
    assert pod_cgroups(HYBRID_MOUNTINFO, nested, UUID) == [
        Path(f"/sys/fs/cgroup/unified/services/web/rkt-{UUID}"),
        Path(f"/sys/fs/cgroup/systemd/services/web/rkt-{UUID}"),
    ]


def test_pod_cgroups_respect_the_mount_root() -> None:
    # a container that sees only part of the hierarchy, mounted at its root
    text = "40 22 0:23 /lxc/c1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert pod_cgroups(text, "0::/lxc/c1/init\n", UUID) == [
        Path(f"/sys/fs/cgroup/init/rkt-{UUID}")]
    # a path outside the mount's root (another cgroup namespace): below the mount itself
    assert pod_cgroups(text, "0::/\n", UUID) == [Path(f"/sys/fs/cgroup/rkt-{UUID}")]


def test_no_cgroup_hierarchy_means_no_cgroups() -> None:
    assert pod_cgroups("22 1 254:0 / / rw - ext4 /dev/vda rw\n", "0::/\n", UUID) == []


def test_run_tmpfs_not_over_a_pod_dir_below_run() -> None:
    assert run_tmpfs_wanted(Path("/var/lib/rkt/pods/run") / UUID)
    assert not run_tmpfs_wanted(Path("/run/rkt/pods/run") / UUID)
    assert run_tmpfs_wanted(Path("/running/pods"))


def test_signals_from_processes_are_passed_on_terminal_ones_not() -> None:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        assert should_forward(s, 0)  # SI_USER: kill(2)
        assert should_forward(s, -6)  # SI_TKILL
        assert not should_forward(s, SI_KERNEL)  # ^C, hangup: nspawn got it already
    assert not should_forward(signal.SIGUSR1, 0)


def test_nspawn_without_systemd_keeps_its_cgroup_and_registers_nothing() -> None:
    argv = nspawn_argv(NspawnPlan(uuid=UUID, root="/r", hostname="h", register=False,
                                  keep_unit=False))
    assert "--register=no" in argv and "--keep-unit" in argv
    assert "--link-journal=no" in argv


def test_recorded_cgroups_only_the_pods_own() -> None:
    from pathlib import Path

    from rktd_less.stage1.standalone import recorded_cgroups

    u = "11111111-2222-3333-4444-555555555555"
    text = (f"/sys/fs/cgroup/unified/rkt-{u}\n/sys/fs/cgroup/systemd/x/rkt-{u}\n"
            f"/sys/fs/cgroup/unified/other\n/etc/rkt-{u}\n/sys/fs/cgroup/../../rkt-{u}\n"
            f"relative/rkt-{u}\n")
    assert recorded_cgroups(text, u) == [Path(f"/sys/fs/cgroup/unified/rkt-{u}"),
                                         Path(f"/sys/fs/cgroup/systemd/x/rkt-{u}")]
