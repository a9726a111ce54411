"""The systemd-nspawn command line of a pod (pure; reference §2.4 and systemd-test-host.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..ids import machine_name

NSPAWN = "/usr/bin/systemd-nspawn"


@dataclass(frozen=True)
class NspawnPlan:
    uuid: str
    root: str  # the stage1 rootfs, relative to the pod dir or absolute
    hostname: str
    interactive: bool = False
    register: bool = True  # machined is reachable
    keep_unit: bool = True  # we run as the main process of a systemd service
    private_network: bool = False
    debug: bool = False
    capability_args: tuple[str, ...] = ()  # stage1/confine.pod_capability_args
    private_users: str = ""  # SHIFT:COUNT (rkt's --private-users)
    selinux_context: str = ""  # -Z: the pod's processes (common/selinux.py)
    selinux_mount_context: str = ""  # -L: its files


def nspawn_argv(plan: NspawnPlan) -> list[str]:
    argv = [
        NSPAWN,
        "--boot",
        "--notify-ready=yes",
        f"--register={'yes' if plan.register else 'no'}",
        # Without a service to keep, nspawn asks systemd for a scope; on a machine without
        # systemd there is no bus to ask, so keep whatever cgroup we are in.
        "--keep-unit" if plan.keep_unit or not plan.register else "",
        # try-host: nspawn makes the host's /var/log/journal/<machine-id> (if /var/log/journal
        # exists) and binds it into the pod, whose journald writes there; the files outlive
        # the pod's private mounts, so an exited pod's logs stay readable (rkt #1528) until
        # the stage1 gc removes them.
        f"--link-journal={'try-host' if plan.register else 'no'}",
        "" if plan.debug else "--quiet",
        f"--uuid={plan.uuid}",
        f"--machine={machine_name(plan.uuid)}",
        f"--hostname={plan.hostname}",
        f"--directory={plan.root}",
        # in a user namespace /usr stays the machine's: owned by an unmapped root, it reads as
        # nobody's, world-readable as it is (an idmapped bind needs a filesystem that can
        # take one, which an overlay /usr cannot)
        "--bind-ro=/usr",
        *([f"--private-users={plan.private_users}", "--private-users-ownership=map"]
          if plan.private_users else []),
        f"--console={'interactive' if plan.interactive else 'read-only'}",
        "--private-network" if plan.private_network else "",
        f"-Z{plan.selinux_context}" if plan.selinux_context else "",
        f"-L{plan.selinux_mount_context}" if plan.selinux_mount_context else "",
        *plan.capability_args,
        # nspawn's own filter refuses bpf(), and without it the pod's systemd cannot attach
        # the device programs of DevicePolicy= (cgroup2): it would silently not apply them.
        # The apps' own filters keep refusing bpf().
        "--system-call-filter=bpf",
        "--",
        "systemd.firstboot=off",
        "--show-status=0",
        f"--log-target={'console' if plan.debug else 'null'}",
    ]
    return [a for a in argv if a]


def nspawn_env(debug: bool = False, writable_api_vfs: bool = False,
               ipc: str = "private") -> dict[str, str]:
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        # With /usr bind-mounted nspawn cannot see the stage1's systemd version and would fall
        # back to cgroup v1, where every stop job hangs for 90 s (systemd-test-host.md).
        "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
        "SYSTEMD_NSPAWN_CONTAINER_SERVICE": "rkt",
    }
    if not debug:
        env["SYSTEMD_LOG_LEVEL"] = "err"
    if ipc == "parent":  # rkt's --ipc=parent: the pod shares the host's IPC namespace
        env["SYSTEMD_NSPAWN_SHARE_NS_IPC"] = "1"
    if writable_api_vfs:  # --insecure-options=paths, as rkt: /proc/sys etc. not read-only
        env["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] = "yes"
    return env
