"""How an app is confined: its isolators and the pod's insecure options → the [Service] settings
of its unit, and the capability set of the whole pod (pure; reference isolation.md §1).

By default every app gets what rkt's stage1 gave it, brought up to date:
- ``CapabilityBoundingSet=`` appc's 14 capabilities (a retain set replaces them, a remove set
  takes from them);
- a seccomp allow list (``common/seccomp_sets.DEFAULT_ALLOW``) answering EPERM, with
  ``RestrictNamespaces=yes``, ``LockPersonality=yes`` and ``RestrictAddressFamilies=~AF_ALG
  AF_VSOCK`` for the calls Docker filters by argument;
- rkt's read-only and inaccessible paths, plus all of ``/proc/sys`` read-only as nspawn does
  (``MountAPIVFS=yes`` gives the app a fresh /proc without nspawn's read-only binds);
- ``DevicePolicy=closed`` with ``DeviceAllow=`` for device files mounted from the host;
- ``NoNewPrivileges=`` from the isolator, forced on for a non-root app under a seccomp filter.
``--insecure-options=capabilities|paths|seccomp`` take away exactly one of these groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import ceil
from typing import Any

from ..appc import isolators as iso
from ..common.seccomp_sets import DEFAULT_ALLOW, DEFAULT_BLOCK


@dataclass(frozen=True)
class Relax:
    """The pod's ``--insecure-options`` run-time switches (stage1 ``--disable-*`` flags)."""

    capabilities: bool = False
    paths: bool = False
    seccomp: bool = False

    @classmethod
    def from_opts(cls, opts: Mapping[str, str]) -> Relax:
        """From the run entrypoint's ``--disable-capabilities-restriction``, ``--disable-paths``
        and ``--disable-seccomp``."""
        return cls(capabilities=opts.get("disable-capabilities-restriction") == "true",
                   paths=opts.get("disable-paths") == "true",
                   seccomp=opts.get("disable-seccomp") == "true")


# rkt stage1 app.go, made relative to the app's rootfs by :func:`_under`
READ_ONLY_PATHS = (
    "/proc/bus/", "/proc/sys/", "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
    "/proc/sys/vm/panic_on_oom", "/proc/sysrq-trigger", "/sys/block/", "/sys/bus/",
    "/sys/class/", "/sys/dev/", "/sys/devices/", "/sys/kernel/")
INACCESSIBLE_PATHS = (
    "/sys/firmware/", "/sys/fs/", "/sys/hypervisor/", "/sys/module/", "/sys/power/",
    "/proc/config.gz", "/proc/kallsyms", "/proc/sched_debug", "/proc/kcore", "/proc/kmem",
    "/proc/mem")

# systemd-nspawn 252's default bounding set (systemd-nspawn(1))
NSPAWN_DEFAULT_CAPS = frozenset({
    "CAP_AUDIT_CONTROL", "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_NICE", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TTY_CONFIG"})
# What the pod's own systemd needs to set its apps up (mount namespaces, chroot, credentials,
# bounding sets, journald, halting the pod), on top of the apps' own sets.
STAGE1_CAPS = frozenset({
    "CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_SETPCAP", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN",
    "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_AUDIT_WRITE",
    "CAP_SYS_BOOT"})

_SYSTEMD_GROUPS = {
    "@systemd/clock": "@clock", "@systemd/default-whitelist": "@default",
    "@systemd/mount": "@mount", "@systemd/network-io": "@network-io",
    "@systemd/obsolete": "@obsolete", "@systemd/privileged": "@privileged",
    "@systemd/process": "@process", "@systemd/raw-io": "@raw-io"}


def _under(root: str, paths: Iterable[str]) -> str:
    # "-": a path the kernel or image lacks is skipped, not an error
    return " ".join(f"-{root}{p}" for p in paths)


def app_capabilities(isolators: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The app's bounding set (rkt pod.go getAppCapabilities)."""
    retain = iso.last(isolators, iso.CAPS_RETAIN)
    remove = iso.last(isolators, iso.CAPS_REMOVE)
    if retain is not None:
        return tuple(dict.fromkeys(retain["value"]["set"]))
    if remove is not None:
        gone = set(remove["value"]["set"])
        return tuple(c for c in iso.DEFAULT_CAPS if c not in gone)
    return iso.DEFAULT_CAPS


def pod_capability_args(apps_caps: Iterable[Iterable[str]], relax: Relax) -> list[str]:
    """nspawn arguments giving the pod's systemd the stage1's needs plus every app's set, and
    nothing of nspawn's default beyond that (rkt passed ``--capability`` per app)."""
    if relax.capabilities:
        return ["--capability=all"]
    want = set(STAGE1_CAPS)
    for caps in apps_caps:
        want.update(caps)
    args = []
    drop = sorted(NSPAWN_DEFAULT_CAPS - want, key=iso.CAPABILITIES.__getitem__)
    add = sorted(want - NSPAWN_DEFAULT_CAPS, key=iso.CAPABILITIES.__getitem__)
    if add:
        args.append("--capability=" + ",".join(add))
    if drop:
        args.append("--drop-capability=" + ",".join(drop))
    return args


def _expand(entries: Sequence[str], remove: bool) -> list[str] | None:
    """Seccomp set entries as systemd names; None = no filter at all (``@appc.io/all`` in a
    retain set)."""
    out: list[str] = []
    for e in entries:
        if e == "@appc.io/all":
            if not remove:
                return None
        elif e == "@appc.io/empty":
            continue
        elif e in ("@rkt/default-whitelist", "@docker/default-whitelist"):
            out += sorted(DEFAULT_ALLOW)
        elif e in ("@rkt/default-blacklist", "@docker/default-blacklist"):
            out += sorted(DEFAULT_BLOCK)
        else:
            out.append(_SYSTEMD_GROUPS.get(e, e))
    return list(dict.fromkeys(out))


def seccomp_lines(isolators: Sequence[Mapping[str, Any]]) -> list[str]:
    """The filter of one app; [] when it has none. (An app has at most one seccomp isolator:
    appc/isolators.check_all.)"""
    chosen = iso.last(isolators, iso.SECCOMP_RETAIN, iso.SECCOMP_REMOVE)
    remove = chosen is not None and chosen["name"] == iso.SECCOMP_REMOVE
    if chosen is None or (remove and chosen["value"]["set"] == ["@appc.io/empty"]):
        return [f"SystemCallFilter={' '.join(sorted(DEFAULT_ALLOW))}",
                "SystemCallErrorNumber=EPERM",
                "RestrictNamespaces=yes",
                "LockPersonality=yes",
                "RestrictAddressFamilies=~AF_ALG AF_VSOCK"]
    names = _expand(chosen["value"]["set"], remove=remove)
    if names is None:
        return []
    if not names:  # an empty retain set: only systemd's implicit @default
        names = ["@default"]
    lines = [f"SystemCallFilter={'~' if remove else ''}{' '.join(names)}"]
    if chosen["value"].get("errno"):
        lines.append(f"SystemCallErrorNumber={chosen['value']['errno']}")
    return lines


def _resources(isolators: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    mem = iso.last(isolators, iso.MEMORY)
    if mem is not None and mem["value"].get("limit") is not None:
        lines.append(f"MemoryMax={int(iso.parse_quantity(str(mem['value']['limit'])))}")
    cpu = iso.last(isolators, iso.CPU)
    if cpu is not None and cpu["value"].get("limit") is not None:
        milli = ceil(iso.parse_quantity(str(cpu["value"]["limit"])) * 1000)
        lines.append(f"CPUQuota={max(1, ceil(milli / 10))}%")
    shares = iso.last(isolators, iso.CPU_SHARES)
    if shares is not None:
        lines.append(f"CPUShares={shares['value']}")
    oom = iso.last(isolators, iso.OOM_SCORE_ADJ)
    if oom is not None:
        lines.append(f"OOMScoreAdjust={oom['value']}")
    return lines


@dataclass(frozen=True)
class DeviceMount:
    """A host device file mounted into the app (target inside the app's rootfs)."""

    target: str
    read_only: bool


def service_lines(app: str, isolators: Sequence[Mapping[str, Any]], uid: int, relax: Relax,
                  *, private_network: bool = False,
                  devices: Sequence[DeviceMount] = ()) -> list[str]:
    """The [Service] settings confining app ``app``."""
    root = f"/opt/stage2/{app}/rootfs"
    lines: list[str] = []
    if not relax.capabilities:
        lines.append("CapabilityBoundingSet=" + " ".join(app_capabilities(isolators)))
    seccomp = [] if relax.seccomp else seccomp_lines(isolators)
    lines += seccomp
    nnp = iso.last(isolators, iso.NO_NEW_PRIVS)
    no_new_privs = bool(nnp["value"]) if nnp is not None else False
    if uid != 0 and seccomp:
        no_new_privs = True  # rkt: a non-root app under a filter
    lines.append(f"NoNewPrivileges={'yes' if no_new_privs else 'no'}")
    if not relax.paths:
        lines.append("ReadOnlyPaths=" + _under(root, READ_ONLY_PATHS))
        if private_network:  # the pod's own network: its sysctls are the pod's, as in nspawn
            lines.append(f"ReadWritePaths=-{root}/proc/sys/net/")
        lines.append("InaccessiblePaths=" + _under(root, INACCESSIBLE_PATHS))
        lines.append("DevicePolicy=closed")
        for d in devices:
            lines.append(f"DeviceAllow={root}{d.target} {'r' if d.read_only else 'rw'}")
    lines += _resources(isolators)
    return lines
