"""Entrypoints of the kvm stage1: each pod a QEMU virtual machine with its own kernel (reference
stage1-kvm.md, rkt's stage1 kvm flavour).

run (``/init``): the pod's stage1 root is built as for nspawn (entry.build_pod_root: the same
apps, volumes and units), then QEMU boots the guest kernel and initramfs (kvmguest.py) with
that root shared over 9p (tag ``pod``) and the machine's ``/usr`` read-only (tag ``usr``); the
guest's ``/init`` hands over to systemd, which runs the apps' units; their reapers record the
exit statuses in the shared root and power the VM off. KVM where the CPU has vmx/svm and
``/dev/kvm`` opens, QEMU's TCG emulation otherwise (said once). The VM is registered with
machined as class ``vm``; its memory is rkt's: each app's memory limit (128M by default) plus
128M. This process stays as the VM's parent and ends with the first failing app's status.

Not yet (issue 13 goes on): pod networks (tap), ``rkt enter``, a clean ``rkt stop`` (it kills
the VM now), ``--interactive``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from ..appc import isolators as iso
from ..common.manifests import read_pod_manifest
from ..common.podpaths import PodPaths
from ..common.podstatus import app_statuses
from ..errors import RktError
from ..fsio import replace_file
from ..ids import machine_name
from ..net import netlist
from .confine import Relax
from .verbs import dispatch, parse_opts

if TYPE_CHECKING:
    from ..common.manifests import PodManifestDoc

QEMU = "qemu-system-x86_64"
KERNEL_DIR = Path("/usr/lib/rkt/stage1-kvm")  # vmlinux, initramfs.cpio (kvmguest.fetch)
APP_MEMORY = 128 << 20  # rkt: an app without a memory limit counts 128M
VM_OVERHEAD = 128 << 20
HERE = Path(".")


def vm_memory(pod: PodManifestDoc) -> int:
    """rkt's GetAppsResources: Σ each app's memory limit (default 128M) + 128M, in MiB."""
    total = VM_OVERHEAD
    for ra in pod.get("apps", []):
        limit: Fraction | None = None
        for i in (ra.get("app") or {}).get("isolators") or []:
            if i.get("name") == iso.MEMORY:
                value = i.get("value") or {}
                text = value.get("limit") or value.get("request")
                if isinstance(text, str):
                    limit = iso.parse_quantity(text)
        total += int(limit) if limit is not None else APP_MEMORY
    return -(-total // (1 << 20))


def accelerator() -> str:
    """kvm where the CPU has hardware virtualization and /dev/kvm opens, else tcg."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if (" vmx" in flags or " svm" in flags) and os.path.exists("/dev/kvm"):
        try:
            os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
            return "kvm"
        except OSError:
            pass
    return "tcg"


def _tsc_khz() -> int:
    """The host's TSC rate: microvm guests hang at random calibrating it themselves."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return 0


def kernel_files(system_config: str) -> tuple[Path, Path]:
    """vmlinux and initramfs.cpio: the system configuration's ``stage1-kvm``, else the
    package's."""
    dirs = [Path(system_config) / "stage1-kvm"] if system_config else []
    dirs += [] if KERNEL_DIR in dirs else [KERNEL_DIR]
    for d in dirs:
        if (d / "vmlinux").is_file() and (d / "initramfs.cpio").is_file():
            return d / "vmlinux", d / "initramfs.cpio"
    raise RktError("no guest kernel for the kvm stage1 (in " + ", ".join(map(str, dirs)) + ")",
                   hint="python3 -m rktd_less.stage1.kvmguest /usr/lib/rkt/stage1-kvm "
                        "stage1-kvm/guest/init")


def qemu_argv(qemu: str, accel: str, memory_mib: int, vmlinux: Path, initrd: Path,
              root: Path, debug: bool = False) -> list[str]:
    khz = _tsc_khz()
    cmdline = ["console=ttyS0", "panic=-1", "reboot=t",
               *([] if debug else ["quiet", "loglevel=0"]),
               *([f"tsc_early_khz={khz}", "tsc=reliable"] if khz else []), "no_timer_check"]
    return [
        qemu, "-M", "microvm", "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
        "-smp", "1", "-m", str(memory_mib), "-nodefaults", "-no-user-config",
        "-display", "none", "-no-reboot", "-serial", "stdio",
        "-kernel", str(vmlinux), "-initrd", str(initrd), "-append", " ".join(cmdline),
        "-fsdev", f"local,id=pod,path={root},security_model=passthrough,multidevs=remap",
        "-device", "virtio-9p-device,fsdev=pod,mount_tag=pod",
        "-fsdev", "local,id=usr,path=/usr,security_model=passthrough,readonly=on,"
                  "multidevs=remap",
        "-device", "virtio-9p-device,fsdev=usr,mount_tag=usr",
    ]


def _register(uuid: str, leader: int) -> None:
    if not os.path.isdir("/run/systemd/system"):
        return
    uid = bytes.fromhex(uuid.replace("-", ""))
    subprocess.run(["busctl", "call", "--quiet", "org.freedesktop.machine1",
                    "/org/freedesktop/machine1", "org.freedesktop.machine1.Manager",
                    "RegisterMachine", "sayssus", machine_name(uuid), str(len(uid)),
                    *(str(b) for b in uid), "rkt", "vm", str(leader), ""],
                   capture_output=True, check=False)


def run(args: list[str]) -> int:
    from ..host import mount
    from .entry import build_pod_root, lock_pod

    opts, uuid = parse_opts(args)
    nets = netlist.parse([opts["net"]] if "net" in opts else [])
    if nets.host:
        raise RktError("flavor kvm requires private network configuration (try --net)")
    if nets.contained:
        raise RktError("the kvm stage1 has no pod networks yet: run it with --net=none")
    pp = PodPaths(Path.cwd())
    pod = read_pod_manifest(pp.manifest)
    vmlinux, initrd = kernel_files(opts.get("system-config", ""))
    qemu = next((str(Path(d) / QEMU) for d in ("/usr/bin", "/usr/local/bin")
                 if (Path(d) / QEMU).is_file()), None)
    if qemu is None:
        raise RktError(f"{QEMU} is not installed: the kvm stage1 needs it",
                       hint="apt-get install qemu-system-x86")
    accel = accelerator()
    if accel == "tcg":
        print("stage1: no hardware virtualization here (no vmx/svm in /proc/cpuinfo): the VM "
              "runs under QEMU's TCG emulation, slowly", file=sys.stderr)
    lock_pod(pp.root)
    mount.unshare_mounts()
    relax = Relax(capabilities=opts.get("disable-capabilities-restriction") == "true",
                  paths=opts.get("disable-paths") == "true",
                  seccomp=opts.get("disable-seccomp") == "true")
    build_pod_root(opts, uuid, pp, pod, attached=[], private_network=True, relax=relax,
                   interactive=False, stdin_stream=False, host_ports={}, given={}, mount=mount)
    replace_file(pp.stage1_rootfs / "rkt" / "vm", "")  # the reapers power the VM off
    argv = qemu_argv(qemu, accel, vm_memory(pod), vmlinux, initrd, pp.stage1_rootfs,
                     debug=opts.get("debug") == "true")
    replace_file(pp.ppid, f"{os.getpid()}\n")  # the VM (its init) is our only child
    vm = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    _register(uuid, vm.pid)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # to the VM, which ends us
        signal.signal(sig, lambda s, _f: vm.send_signal(s))
    code = vm.wait()
    statuses = app_statuses(pp.root)
    if code != 0 and not statuses:
        print(f"stage1: {QEMU} ended with status {code}", file=sys.stderr)
        return 254
    failures = [s for s in statuses.values() if s]
    if failures:
        return failures[0]
    return 0 if all(s is not None for s in statuses.values()) else 128 + signal.SIGTERM


def stop(args: list[str]) -> int:
    opts, _uuid = parse_opts(args)
    try:
        pid = int(PodPaths(HERE).ppid.read_text().strip())
    except (OSError, ValueError) as e:
        raise RktError("pod has no pid file: it never started") from e
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL if opts.get("force") == "true" else signal.SIGTERM)
    return 0


def gc(args: list[str]) -> int:
    parse_opts(args)  # the VM's mounts went with its stage1's mount namespace
    return 0


def stop_post(args: list[str]) -> int:
    parse_opts(args)
    return 0


def enter(args: list[str]) -> int:
    raise RktError("rkt enter is not available for kvm pods yet")


def main(verb: str, args: list[str]) -> int:
    return dispatch({"init": run, "stop": stop, "gc": gc, "enter": enter,
                     "stop-post": stop_post}, verb, args)
