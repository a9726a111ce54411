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

Networks: the pod's CNI networks as for nspawn, each interface mirrored to a tap of QEMU's in
the pod's namespace (kvmnet.py). ``rkt stop`` (and
``systemctl stop``: KillMode=mixed) asks the guest to power off through a virtio port
(``rkt.control``), ``--force`` ends QEMU. ``rkt enter`` runs a command in the VM through a
second port (``rkt.enter``): the app's rootfs, credentials and environment; its output and exit
status come back (one command at a time, no stdin). ``--interactive``: on a terminal, the
terminal is the guest's serial console and the app's stdio (Ctrl-C reaches the app, ^] x ends
the VM); piped input goes to the app through a third port (``rkt.stdin``), then EOF.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from ..appc import isolators as iso
from ..common.manifests import read_pod_manifest
from ..common.podpaths import PodPaths
from ..common.podstatus import app_statuses
from ..errors import RktError
from ..fsio import replace_file
from ..host.machined import register
from ..net import netlist
from .confine import Relax
from .verbs import HERE, dispatch, parse_opts

if TYPE_CHECKING:
    from ..common.manifests import PodManifestDoc
    from ..net.setup import Attached
    from .kvmnet import Nic

QEMU = "qemu-system-x86_64"
# QEMU's end of the guest's rkt.control port (short: a unix socket path has 107 bytes)
CONTROL_DIR = Path("/run/rkt")
# The guest's end: a unit of the pod's systemd reading commands from the virtio port named
# rkt.control and powering the VM off on "poweroff" (rkt stop, systemctl stop).
CONTROL_SCRIPT = """#!/bin/sh
exec < /dev/virtio-ports/rkt.control
while read -r cmd; do
    case "$cmd" in
        poweroff) /usr/bin/systemctl --no-block poweroff ;;
    esac
done
"""
# `rkt enter`: the guest's end of the rkt.enter port, one command at a time: the host sends
# "<length>\\n", then the app's name, a token and the argv, NUL-separated (env, nsenter into
# the app's mount namespace and root with its credentials, the command: made on the host, the
# app's PID filled in here); its output comes back on the port, its exit status as the name of
# an empty file /rkt/enter-status-<token>-<status> (a name reaches the host at once over 9p,
# where a file's data may stay in the guest's cache).
ENTER_SCRIPT = """#!/bin/sh
port=/dev/virtio-ports/rkt.enter
while :; do  # a port with no host end reads as empty: look again a little later
    exec 3<>"$port"
    read -r n <&3 && [ -n "$n" ] && break
    exec 3<&-
    /usr/bin/sleep 0.5
done
/usr/bin/head -c "$n" <&3 > /run/rkt-enter.req
field() { /usr/bin/sed -z -n "$1p" /run/rkt-enter.req | /usr/bin/tr -d '\\0'; }
app=$(field 1) token=$(field 2)
case "$token" in *[!0-9a-f]*|'') exit 0 ;; esac
status="/rkt/enter-status-$token"
pid=$(/usr/bin/systemctl show --property=MainPID --value "$app.service")
if [ -z "$pid" ] || [ "$pid" = 0 ]; then
    echo "enter: app $app is not running" >&3
    : > "$status-254"
    exit 0
fi
/usr/bin/tail -z -n +3 /run/rkt-enter.req | /usr/bin/sed -z "s/^--target=@PID@$/--target=$pid/" \\
    > /run/rkt-enter.argv
/usr/bin/xargs -0 -a /run/rkt-enter.argv /bin/sh -c '"$@"; : > "$0-$?"' "$status" \\
    </dev/null >&3 2>&3
"""
ENTER_UNIT = """[Unit]
Description=rkt: rkt enter's channel into the VM
DefaultDependencies=no
StartLimitIntervalSec=0
Conflicts=shutdown.target
Before=shutdown.target

[Service]
ExecStart=/bin/sh /rkt/enter.sh
Restart=always
RestartSec=0
"""
CONTROL_UNIT = """[Unit]
Description=rkt: the VM's control channel (rkt stop)
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target

[Service]
ExecStart=/bin/sh /rkt/control.sh
"""


def control_socket(uuid: str, port: str = "control") -> Path:
    """QEMU's end of the pod's guest port rkt.<port>."""
    return CONTROL_DIR / f"kvm-{uuid}{'' if port == 'control' else '-' + port}.sock"


PORTS = ("control", "enter", "stdin")  # the guest ports QEMU may serve (control_socket)
STDIN_PORT = "/dev/virtio-ports/rkt.stdin"  # linked by the guest's /init
KERNEL_DIR = Path("/usr/lib/rkt/stage1-kvm")  # vmlinux, modules/ (kvmguest.fetch)
BUSYBOX = Path("/bin/busybox")  # busybox-static: the initramfs's tools
APP_MEMORY = 128 << 20  # rkt: an app without a memory limit counts 128M
VM_OVERHEAD = 128 << 20


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


def kernel_dir(system_config: str) -> Path:
    """The guest kernel (kvmguest.fetch's vmlinux and modules/): the system configuration's
    ``stage1-kvm``, else the package's."""
    dirs = [Path(system_config) / "stage1-kvm"] if system_config else []
    dirs += [] if KERNEL_DIR in dirs else [KERNEL_DIR]
    for d in dirs:
        if (d / "kernel-release").is_file() and (d / "vmlinux").is_file():
            return d
    raise RktError("no guest kernel for the kvm stage1 (in " + ", ".join(map(str, dirs)) + ")",
                   hint="python3 -m rktd_less.stage1.kvmguest /usr/lib/rkt/stage1-kvm")


def make_initramfs(kdir: Path, init: Path, dest: Path) -> Path:
    """The guest's initramfs: busybox-static, the kernel's modules, the stage1's /init."""
    from .kvmguest import guest_modules, initramfs

    if not BUSYBOX.is_file():
        raise RktError(f"{BUSYBOX} is missing: the kvm stage1's initramfs needs it",
                       hint="apt-get install busybox-static")
    replace_file(dest, initramfs(BUSYBOX.read_bytes(), guest_modules(kdir), init.read_bytes()))
    return dest


def qemu_argv(qemu: str, accel: str, memory_mib: int, vmlinux: Path, initrd: Path,
              root: Path, debug: bool = False, nics: Sequence[Nic] = (),
              ports_of: str = "", console: str = "") -> list[str]:
    """``ports_of``: the pod (UUID) whose guest ports rkt.control and rkt.enter QEMU serves on
    unix sockets (control_socket). ``console``: "" (the guest's console is the pod's output),
    "tty" (``--interactive`` on a terminal: the caller's terminal is the guest's console,
    Ctrl-C reaching the app, ^] x ending the VM) or "pipe" (``--interactive`` with piped
    input: a third port, rkt.stdin)."""
    khz = _tsc_khz()
    ports = [] if not ports_of else [("ctl", control_socket(ports_of), "rkt.control"),
                                     ("ent", control_socket(ports_of, "enter"), "rkt.enter")]
    if ports_of and console == "pipe":
        ports.append(("in", control_socket(ports_of, "stdin"), "rkt.stdin"))
    cmdline = ["console=ttyS0", "panic=-1", "reboot=t",
               *([] if debug else ["quiet", "loglevel=0"]),
               *([f"tsc_early_khz={khz}", "tsc=reliable"] if khz else []), "no_timer_check",
               *(arg for nic in nics for arg in nic.cmdline()),
               *([f"rkt.ports={len(ports)}"] if ports else [])]
    serial = (["-chardev", "stdio,id=con,mux=on,signal=off", "-serial", "chardev:con",
               "-echr", "0x1d"] if console == "tty" else ["-serial", "stdio"])
    return [
        qemu, "-M", "microvm", "-accel", accel, "-cpu", "max" if accel == "tcg" else "host",
        "-smp", "1", "-m", str(memory_mib), "-nodefaults", "-no-user-config",
        "-display", "none", "-no-reboot", *serial,
        "-kernel", str(vmlinux), "-initrd", str(initrd), "-append", " ".join(cmdline),
        "-fsdev", f"local,id=pod,path={root},security_model=passthrough,multidevs=remap",
        "-device", "virtio-9p-device,fsdev=pod,mount_tag=pod",
        "-fsdev", "local,id=usr,path=/usr,security_model=passthrough,readonly=on,"
                  "multidevs=remap",
        "-device", "virtio-9p-device,fsdev=usr,mount_tag=usr",
        *(arg for i, nic in enumerate(nics) for arg in nic.qemu_args(i)),
        *(["-device", "virtio-serial-device"] if ports else []),
        *(arg for cid, path, name in ports
          for arg in ("-chardev", f"socket,id={cid},path={path},server=on,wait=off",
                      "-device", f"virtserialport,chardev={cid},name={name}")),
    ]


def run(args: list[str]) -> int:
    from .entry import lock_pod, net_down

    opts, uuid = parse_opts(args)
    nets = netlist.parse([opts["net"]] if "net" in opts else [])
    if nets.host:
        raise RktError("flavor kvm requires private network configuration (try --net)")
    pp = PodPaths(Path.cwd())
    pod = read_pod_manifest(pp.manifest)
    kdir = kernel_dir(opts.get("system-config", ""))
    s1 = pp.root.parents[2] / "cas" / "tree" / pp.stage1_tree_id.read_text().strip() / "rootfs"
    vmlinux = kdir / "vmlinux"
    initrd = make_initramfs(kdir, s1 / "guest" / "init", pp.root / "initramfs.cpio")
    qemu = next((str(Path(d) / QEMU) for d in ("/usr/bin", "/usr/local/bin")
                 if (Path(d) / QEMU).is_file()), None)
    if qemu is None:
        raise RktError(f"{QEMU} is not installed: the kvm stage1 needs it",
                       hint="apt-get install qemu-system-x86")
    # --interactive: the caller's terminal is the guest's console (the app's stdio); piped
    # input reaches the app through the rkt.stdin port, then EOF
    console = "" if opts.get("interactive") != "true" else "tty" if os.isatty(0) else "pipe"
    accel = accelerator()
    if accel == "tcg":
        print("stage1: no hardware virtualization here (no vmx/svm in /proc/cpuinfo): the VM "
              "runs under QEMU's TCG emulation, slowly", file=sys.stderr)
    lock_pod(pp.root)
    netns_fd: int | None = None
    host_mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        netns_fd, attached, nics = _networks(opts, nets, uuid, pp, pod, s1)
        argv = _prepare(opts, uuid, pp, pod, attached, nics, qemu, accel, vmlinux, initrd,
                        console)
        if netns_fd is not None:  # QEMU opens its taps in the pod's network namespace
            from ..host.netns import join

            join(netns_fd)
        replace_file(pp.ppid, f"{os.getpid()}\n")  # the VM (its init) is our only child
        vm = subprocess.Popen(argv, stdin=None if console == "tty" else subprocess.DEVNULL)
    except BaseException:
        if netns_fd is not None:  # no VM: nothing may keep the networks
            net_down(pp.root, uuid, host_mnt)
        raise
    why = register(uuid, vm.pid, "vm")
    if why is not None:
        print(f"stage1: registering with systemd-machined: {why}", file=sys.stderr)
    control = _connect(control_socket(uuid), vm)
    # held to the end (a closed socket would drop unread input)
    stdin_port = _feed(_connect(control_socket(uuid, "stdin"), vm)) if console == "pipe" else None
    stopped = False

    def forward(signo: int, _frame: object) -> None:
        """A stop: the guest powers off cleanly (its apps stopped, their statuses recorded);
        asked again, or without the channel, the VM ends at once."""
        nonlocal stopped, control
        stopped = True
        if control is not None:
            with contextlib.suppress(OSError):
                control.sendall(b"poweroff\n")
                control = None
                return
        vm.send_signal(signo)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    ready = pp.stage1_rootfs / "rkt" / "supervisor-status"
    code = _wait(vm, ready)
    if stdin_port is not None:
        stdin_port.close()
    initrd.unlink(missing_ok=True)
    for port in PORTS:
        control_socket(uuid, port).unlink(missing_ok=True)
    statuses = app_statuses(pp.root)
    # the VM ended (^] x on an --interactive console, QEMU killed) before it said how its
    # apps ended: started, they were terminated; never started, the console says why
    stopped = stopped or os.path.islink(ready)
    if all(s is None for s in statuses.values()) and not stopped:
        print(f"stage1: the VM ended before its apps ran ({QEMU} status {code}; see the "
              "console above)", file=sys.stderr)
        return 254
    failures = [s for s in statuses.values() if s]
    if failures:
        return failures[0]
    return 0 if all(s is not None for s in statuses.values()) else 128 + signal.SIGTERM


def _networks(opts: dict[str, str], nets: netlist.NetList, uuid: str, pp: PodPaths,
              pod: PodManifestDoc, s1: Path) -> tuple[int | None, list[Attached], list[Nic]]:
    """The pod's CNI networks (as for nspawn), and a tap mirrored to each of their interfaces
    for the VM; undone on failure."""
    if not nets.contained:
        return None, [], []
    from ..net.setup import netns_name
    from .entry import forwards, net_down, networks
    from .kvmnet import wire

    fd, attached = networks(opts, nets, uuid, pp.root, s1, forwards(pod))
    try:
        return fd, attached, wire(netns_name(uuid), [a.net.ifname for a in attached])
    except BaseException:
        net_down(pp.root, uuid)
        raise


def _prepare(opts: dict[str, str], uuid: str, pp: PodPaths, pod: PodManifestDoc,
             attached: list[Attached], nics: list[Nic], qemu: str, accel: str, vmlinux: Path,
             initrd: Path, console: str) -> list[str]:
    """The pod's stage1 root in a mount namespace of ours (as nspawn's), and QEMU's argv."""
    from ..host import mount
    from .entry import build_pod_root

    mount.unshare_mounts()
    built = build_pod_root(opts, uuid, pp, pod, attached=attached, private_network=True,
                           relax=Relax.from_opts(opts), interactive=console == "tty",
                           stdin_stream=console == "pipe", host_ports={}, given={},
                           mount=mount)
    units = pp.stage1_rootfs / "etc" / "systemd" / "system"
    if built.stdin_fifo is not None:  # the app reads the rkt.stdin port (the guest links it)
        built.stdin_fifo.unlink()
        os.symlink(STDIN_PORT, built.stdin_fifo)
    # the app's stdio device joins what its DevicePolicy=closed lets it open: the rkt.stdin
    # port, or the guest's console (the serial line, where nspawn's is a pseudo-terminal)
    device = {"pipe": f"{STDIN_PORT} r", "tty": "/dev/console rw"}.get(console)
    for app in built.app_units if device else ():
        replace_file(units / f"{app.name}.service.d" / "rkt-console.conf",
                     f"[Service]\nDeviceAllow={device}\n")
    replace_file(pp.stage1_rootfs / "rkt" / "vm", "")  # the reapers power the VM off
    replace_file(units / "rkt-control.service", CONTROL_UNIT)
    replace_file(pp.stage1_rootfs / "rkt" / "control.sh", CONTROL_SCRIPT, mode=0o755)
    replace_file(units / "rkt-enter.service", ENTER_UNIT)
    replace_file(pp.stage1_rootfs / "rkt" / "enter.sh", ENTER_SCRIPT, mode=0o755)
    replace_file(units / "default.target.d" / "rkt-control.conf",
                 "[Unit]\nWants=rkt-control.service rkt-enter.service\n")
    CONTROL_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    for port in PORTS:
        control_socket(uuid, port).unlink(missing_ok=True)
    return qemu_argv(qemu, accel, vm_memory(pod), vmlinux, initrd, pp.stage1_rootfs,
                     debug=opts.get("debug") == "true", nics=nics, ports_of=uuid,
                     console=console)


def _feed(port: socket.socket | None) -> socket.socket | None:
    """Copy our input to the guest's rkt.stdin port (a thread), then half-close it: QEMU
    passes everything on as the app reads it, then the app reads EOF (a full close would make
    QEMU drop the port at once, unread input with it: the caller keeps the socket open)."""
    import threading

    if port is None:
        return None

    def copy() -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(0, 65536):
                port.sendall(chunk)
            port.shutdown(socket.SHUT_WR)

    threading.Thread(target=copy, name="rkt.stdin", daemon=True).start()
    return port


def _connect(path: Path, vm: subprocess.Popen[bytes]) -> socket.socket | None:
    """Our end of the guest's control port (QEMU listens on it once it runs); kept open for
    the VM's life (the guest reads it as long as we hold it)."""
    import time

    deadline = time.monotonic() + 10
    while vm.poll() is None and time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            time.sleep(0.02)
    return None


def _wait(vm: subprocess.Popen[bytes], ready: Path) -> int:
    """Wait for the VM; tell systemd READY=1 once the guest's apps are up (the guest's
    supervisor-ready marks it in the shared root), as nspawn does for its pods."""
    notify = os.environ.pop("NOTIFY_SOCKET", "")
    while notify:
        try:
            return vm.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
        if os.path.islink(ready):
            _notify(notify, "READY=1")
            notify = ""
    return vm.wait()


def _notify(address: str, message: str) -> None:
    """sd_notify(3) without libsystemd: a datagram to $NOTIFY_SOCKET."""
    target = "\0" + address[1:] if address.startswith("@") else address
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), target)


def stop(args: list[str]) -> int:
    """The stage1 asks the guest to power off; --force ends the VM (QEMU) at once."""
    opts, _uuid = parse_opts(args)
    try:
        pid = int(PodPaths(HERE).ppid.read_text().strip())
    except (OSError, ValueError) as e:
        raise RktError("pod has no pid file: it never started") from e
    if opts.get("force") == "true":
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            for child in children:  # QEMU, the stage1's only child
                os.kill(int(child), signal.SIGKILL)
            return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    return 0


def gc(args: list[str]) -> int:
    """The networks of a pod that was killed or whose machine rebooted (the VM's mounts went
    with its stage1's mount namespace)."""
    from .entry import net_down

    net_down(HERE, parse_opts(args)[1])
    return 0


def stop_post(args: list[str]) -> int:
    """ExecStopPost= of the pod unit: the pod's networks go now."""
    from .entry import net_down, pod_here

    opts, uuid = parse_opts(args)
    net_down(pod_here(opts, uuid), uuid)
    return 0


def enter_argv(uid: int, gid: int, env: Sequence[tuple[str, str]],
               cmd: Sequence[str]) -> list[str]:
    """What the guest runs for `rkt enter`: the app's environment, its mount namespace and
    root (its /proc, volumes) as its user (nsenter into its main process, whose PID the guest
    fills in; the VM is the boundary; the tools are the machine's /usr)."""
    return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env), "/usr/bin/nsenter",
            "--target=@PID@", "--mount", "--root", f"--setuid={uid}", f"--setgid={gid}", "--",
            *cmd]


def enter(args: list[str]) -> int:
    """``--pid=PID --appname=NAME -- CMD ARGS``: CMD in the VM, in the app's rootfs with its
    credentials and environment, through the rkt.enter port; its output (stdout and stderr
    together) comes back, then its exit status. One at a time; no stdin."""
    import time

    from ..common.appids import resolve_id
    from ..common.podstatus import status_dir
    from . import apps as appmod
    from .enter import parse_args
    from .fly import entered_app

    ea = parse_args(args)
    pp = PodPaths(Path.cwd())
    app = entered_app(pp, ea.app)
    tree = pp.app_tree_id(ea.app).read_text().strip()
    approot = pp.root.parents[2] / "cas" / "tree" / tree / "rootfs"  # for the IDs' names
    uid = resolve_id(str(app.get("user", "0")), approot, "passwd", "user", ea.app)
    gid = resolve_id(str(app.get("group", "0")), approot, "group", "group", ea.app)
    env = appmod.app_env(ea.app, app.get("environment", []))
    token = os.urandom(8).hex()
    argv = [ea.app, token, *enter_argv(uid, gid, env, ea.cmd)]
    d = status_dir(pp.root)
    mark = f"enter-status-{token}-"
    payload = b"\0".join(a.encode() for a in argv)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(control_socket(pp.root.name, "enter")))
        except OSError as e:
            raise RktError(f"cannot reach the VM's enter channel: {e.strerror}") from None
        s.sendall(f"{len(payload)}\n".encode() + payload)
        s.settimeout(0.1)
        done_at: float | None = None
        while True:
            try:
                chunk = s.recv(65536)
                if chunk:
                    os.write(1, chunk)
                    continue
                break
            except TimeoutError:
                pass
            if done_at is None and d is not None and any(d.parent.glob(mark + "*")):
                done_at = time.monotonic()  # the last output may still be on its way
            if done_at is not None and time.monotonic() - done_at > 0.3:
                break
    deadline = time.monotonic() + 3  # the guest marks it as its channel closes
    while d is not None and time.monotonic() < deadline:
        for f in d.parent.glob(mark + "*"):
            f.unlink(missing_ok=True)
            code = f.name.removeprefix(mark)
            return int(code) if code.isdigit() else 254
        time.sleep(0.05)
    print("stage1: the VM did not report the command's exit status", file=sys.stderr)
    return 254


def main(verb: str, args: list[str]) -> int:
    return dispatch({"init": run, "stop": stop, "gc": gc, "enter": enter,
                     "stop-post": stop_post}, verb, args)
