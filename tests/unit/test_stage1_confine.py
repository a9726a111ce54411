"""stage1 confinement: isolators and insecure options → app unit settings and pod capabilities."""

from __future__ import annotations

from rktd_less.appc import isolators as iso
from rktd_less.common.seccomp_sets import DEFAULT_ALLOW, DEFAULT_BLOCK, KNOWN
from rktd_less.stage1 import units
from rktd_less.stage1.confine import (
    NSPAWN_DEFAULT_CAPS,
    DeviceMount,
    Relax,
    pod_capability_args,
    seccomp_lines,
    service_lines,
)

ROOT = "/opt/stage2/app/rootfs"


def _keyed(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        k, _, v = line.partition("=")
        out[k] = v
    return out


def test_defaults() -> None:
    s = _keyed(service_lines("app", [], 0, Relax()))
    assert s["CapabilityBoundingSet"].split() == list(iso.DEFAULT_CAPS)
    assert set(s["SystemCallFilter"].split()) == DEFAULT_ALLOW
    assert s["SystemCallErrorNumber"] == "EPERM"
    assert s["RestrictNamespaces"] == "yes"
    assert s["NoNewPrivileges"] == "no"  # root app, no isolator: as rkt
    assert f"-{ROOT}/proc/sys/" in s["ReadOnlyPaths"].split()
    assert f"-{ROOT}/proc/sys/kernel/core_pattern" in s["ReadOnlyPaths"].split()
    assert f"-{ROOT}/proc/kallsyms" in s["InaccessiblePaths"].split()
    assert s["DevicePolicy"] == "closed"
    assert "MemoryMax" not in s and "ReadWritePaths" not in s


def test_default_allow_list_blocks_what_rkt_and_docker_block() -> None:
    for name in ("mount", "fsopen", "fsmount", "move_mount", "open_tree", "unshare", "setns",
                 "ptrace", "keyctl", "add_key", "request_key", "bpf", "io_uring_setup",
                 "kexec_load", "init_module", "reboot", "pivot_root", "umount2", "swapon",
                 "open_by_handle_at", "name_to_handle_at", "perf_event_open", "userfaultfd",
                 "process_vm_readv", "syslog", "acct", "settimeofday"):
        assert name not in DEFAULT_ALLOW, name
    assert not DEFAULT_ALLOW & DEFAULT_BLOCK
    # what glibc 2.36 and coreutils call first, missing from rkt's 2016 list
    for name in ("clone3", "statx", "faccessat2", "close_range", "openat2", "rseq",
                 "pidfd_open", "epoll_pwait2", "preadv2", "membarrier", "newfstatat"):
        assert name in DEFAULT_ALLOW, name
    assert DEFAULT_ALLOW <= KNOWN


def test_non_root_app_under_a_filter_gets_no_new_privileges() -> None:
    assert "NoNewPrivileges=yes" in service_lines("app", [], 1000, Relax())
    # without a filter rkt leaves it to the isolator
    assert "NoNewPrivileges=no" in service_lines("app", [], 1000, Relax(seccomp=True))
    nnp = [{"name": iso.NO_NEW_PRIVS, "value": True}]
    assert "NoNewPrivileges=yes" in service_lines("app", nnp, 0, Relax(seccomp=True))


def test_capability_isolators() -> None:
    retain = [{"name": iso.CAPS_RETAIN, "value": {"set": ["CAP_NET_ADMIN", "CAP_CHOWN"]}}]
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_CHOWN" in service_lines(
        "app", retain, 0, Relax())
    remove = [{"name": iso.CAPS_REMOVE, "value": {"set": ["CAP_CHOWN", "CAP_SYS_ADMIN"]}}]
    caps = _keyed(service_lines("app", remove, 0, Relax()))["CapabilityBoundingSet"].split()
    assert caps == [c for c in iso.DEFAULT_CAPS if c != "CAP_CHOWN"]


def test_seccomp_isolators() -> None:
    remove = [{"name": iso.SECCOMP_REMOVE,
               "value": {"set": ["mkdir", "@systemd/mount"], "errno": "ENOTSUP"}}]
    assert seccomp_lines(remove) == ["SystemCallFilter=~mkdir @mount",
                                     "SystemCallErrorNumber=ENOTSUP"]
    retain = [{"name": iso.SECCOMP_RETAIN, "value": {"set": ["@rkt/default-whitelist", "ptrace"]}}]
    lines = seccomp_lines(retain)
    assert len(lines) == 1 and set(lines[0].split("=", 1)[1].split()) == DEFAULT_ALLOW | {
        "ptrace"}
    block = [{"name": iso.SECCOMP_REMOVE, "value": {"set": ["@docker/default-blacklist"]}}]
    assert set(seccomp_lines(block)[0].split("=~", 1)[1].split()) == DEFAULT_BLOCK
    # appc: all in a retain set = no filter; empty in a remove set = the default
    assert seccomp_lines([{"name": iso.SECCOMP_RETAIN, "value": {"set": ["@appc.io/all"]}}]) == []
    assert seccomp_lines([{"name": iso.SECCOMP_REMOVE, "value": {"set": ["@appc.io/empty"]}}]
                         ) == seccomp_lines([])


def test_insecure_options_switch_off_exactly_their_group() -> None:
    def keys(relax: Relax) -> set[str]:
        return set(_keyed(service_lines("app", [], 0, relax)))

    full = keys(Relax())
    assert full - keys(Relax(capabilities=True)) == {"CapabilityBoundingSet"}
    assert full - keys(Relax(seccomp=True)) == {
        "SystemCallFilter", "SystemCallErrorNumber", "RestrictNamespaces", "LockPersonality",
        "RestrictAddressFamilies"}
    assert full - keys(Relax(paths=True)) == {"ReadOnlyPaths", "InaccessiblePaths",
                                              "DevicePolicy"}


def test_resources_and_devices() -> None:
    isolators = [{"name": iso.MEMORY, "value": {"request": "1G", "limit": "1G"}},
                 {"name": iso.MEMORY, "value": {"request": "50M", "limit": "50M"}},
                 {"name": iso.CPU, "value": {"request": "500m", "limit": "500m"}},
                 {"name": iso.CPU_SHARES, "value": 2048},
                 {"name": iso.OOM_SCORE_ADJ, "value": 300}]
    s = _keyed(service_lines("app", isolators, 0, Relax(),
                             devices=[DeviceMount("/dev/tun", False), DeviceMount("/d", True)],
                             private_network=True))
    assert s["MemoryMax"] == "50000000"
    assert s["CPUQuota"] == "50%"
    assert s["CPUShares"] == "2048"
    assert s["OOMScoreAdjust"] == "300"
    assert s["ReadWritePaths"] == f"-{ROOT}/proc/sys/net/"
    lines = service_lines("app", [], 0, Relax(), devices=[DeviceMount("/dev/tun", False),
                                                          DeviceMount("/d", True)])
    assert f"DeviceAllow={ROOT}/dev/tun rw" in lines and f"DeviceAllow={ROOT}/d r" in lines


def test_pod_capabilities() -> None:
    args = pod_capability_args([iso.DEFAULT_CAPS], Relax())
    assert len(args) == 1 and args[0].startswith("--drop-capability=")
    dropped = set(args[0].split("=", 1)[1].split(","))
    assert {"CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_SYS_MODULE"} & NSPAWN_DEFAULT_CAPS <= (
        dropped)
    assert "CAP_SYS_ADMIN" not in dropped  # the pod's systemd sets its apps up with it
    # an app that keeps CAP_SYS_PTRACE and wants CAP_NET_ADMIN gets both at pod level
    args = pod_capability_args([iso.DEFAULT_CAPS, ("CAP_SYS_PTRACE", "CAP_NET_ADMIN")], Relax())
    assert "--capability=CAP_NET_ADMIN" in args
    assert "CAP_SYS_PTRACE" not in args[-1]
    assert pod_capability_args([], Relax(capabilities=True)) == ["--capability=all"]


def test_app_unit_carries_the_confinement() -> None:
    app = units.AppUnit(name="app", image_name="example.com/app", argv=("/bin/true",), uid=0,
                        gid=0, confinement=tuple(service_lines("app", [], 0, Relax())))
    text = units.app_service(app)
    assert "\nCapabilityBoundingSet=CAP_AUDIT_WRITE " in text
    assert "\nDevicePolicy=closed\n" in text


def test_stage0_passes_insecure_run_options_and_ipc_to_stage1() -> None:
    from rktd_less.pod.launch import stage1_run_args

    args = stage1_run_args("u", debug=False, net="host", interactive=False, hostname=None,
                           insecure=frozenset({"image", "paths", "seccomp"}), ipc="parent")
    assert args == ("--net=host", "--disable-paths", "--disable-seccomp", "--ipc=parent", "u")
    assert stage1_run_args("u", debug=False, net="host", interactive=False, hostname=None,
                           insecure=frozenset({"capabilities"})) == (
        "--net=host", "--disable-capabilities-restriction", "u")


def test_nspawn_gets_bpf_and_ipc_sharing() -> None:
    from rktd_less.stage1.nspawn import NspawnPlan, nspawn_argv, nspawn_env

    argv = nspawn_argv(NspawnPlan(uuid="u", root="/r", hostname="h",
                                  capability_args=("--drop-capability=CAP_SYS_PTRACE",)))
    assert "--system-call-filter=bpf" in argv and "--drop-capability=CAP_SYS_PTRACE" in argv
    assert argv.index("--drop-capability=CAP_SYS_PTRACE") < argv.index("--")
    assert nspawn_env(ipc="parent")["SYSTEMD_NSPAWN_SHARE_NS_IPC"] == "1"
    assert "SYSTEMD_NSPAWN_SHARE_NS_IPC" not in nspawn_env()
    assert nspawn_env(writable_api_vfs=True)["SYSTEMD_NSPAWN_API_VFS_WRITABLE"] == "yes"
