"""`rkt enter` in the nspawn stage1: run a command with the APP's confinement.

rkt's enter setns()-ed into the pod and chroot-ed into the app rootfs, so the entered process
had all capabilities, no seccomp filter and no cgroup limits (CVE-2019-10144/10145/10147). Here
the pod's own systemd starts the command as a transient service that copies the app unit's
execution settings (RootDirectory, User/Group, EnvironmentFile, NoNewPrivileges, capability and
syscall filters, ...): it descends from the pod's init, so it also keeps nspawn's bounding set and
seccomp filter, and it lives in a cgroup of the pod.

Why not `systemd-run --pipe --wait`: the pod runs no D-Bus daemon, and systemd-run needs a bus
(not PID 1's private socket) for --wait/--pipe/--pty ("Transport endpoint is not connected").
Without them it works over /run/systemd/private as root. So stdio goes through FIFOs in the pod's
/run (PID 1 opens them before it applies RootDirectory, as for the app's own iomux FIFO), the unit
keeps RemainAfterExit=yes so its exit status can be read with `systemctl show`, and is then
stopped (or reset) so that it is garbage-collected.

Pure argv/property builders first, the executor (`execute`) last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PodError, RktError, UsageError

NSENTER = "/usr/bin/nsenter"
SYSTEMD_RUN = "/usr/bin/systemd-run"
SYSTEMCTL = "/usr/bin/systemctl"
FIFO_DIR = "/run/rkt-enter"  # inside the pod (stage1 rootfs)

# [Service] keys of the app unit that describe how to run its main command, not how to execute
# the command: everything else (confinement settings, present or future) is copied.
_NOT_COPIED = frozenset({
    "Type", "Restart", "RestartSec", "TimeoutStartSec", "TimeoutStopSec", "RemainAfterExit",
    "NotifyAccess", "SyslogIdentifier", "StandardInput", "StandardOutput", "StandardError",
    "TTYPath", "TTYReset", "TTYVHangup", "TTYVTDisallocate", "PIDFile", "KillMode",
})


@dataclass(frozen=True)
class EnterArgs:
    pid: int
    app: str
    cmd: tuple[str, ...]


def parse_args(args: Sequence[str]) -> EnterArgs:
    """The stage1 contract: ``--pid=PID --appname=NAME -- CMD ARGS``."""
    opts: dict[str, str] = {}
    rest = list(args)
    while rest and rest[0] != "--":
        a = rest.pop(0)
        if not a.startswith("--"):
            raise UsageError(f"unexpected argument {a!r}", hint="command goes after --")
        k, _, v = a[2:].partition("=")
        opts[k] = v
    if rest:
        rest.pop(0)
    pid, app = opts.get("pid", ""), opts.get("appname", "")
    if not pid.isdigit() or int(pid) <= 0:
        raise UsageError("missing or invalid --pid")
    if not app:
        raise UsageError("missing --appname")
    if not rest:
        raise UsageError("missing command")
    return EnterArgs(pid=int(pid), app=app, cmd=tuple(rest))


def service_properties(unit_text: str) -> list[str]:
    """``KEY=VALUE`` settings of an app unit's [Service] section worth copying to the entered
    command (multi-valued keys keep all their lines, in order)."""
    props: list[str] = []
    section = ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key = line.split("=", 1)[0].strip()
        if key in _NOT_COPIED or key.startswith("Exec"):
            continue
        props.append(line)
    return props


def nsenter_prefix(pid: int) -> list[str]:
    return [NSENTER, f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid", "--"]


def unit_name(token: str) -> str:
    return f"rkt-enter-{token}.service"


def fifo_paths(token: str) -> tuple[str, str, str]:
    d = f"{FIFO_DIR}/{token}"
    return f"{d}/stdin", f"{d}/stdout", f"{d}/stderr"


def pipe_properties(fifos: tuple[str, str, str]) -> list[str]:
    fin, fout, ferr = fifos
    return [f"StandardInput=file:{fin}", f"StandardOutput=file:{fout}",
            f"StandardError=file:{ferr}"]


def tty_properties(tty: str) -> list[str]:
    # the pod's systemd makes the pty our controlling terminal and sets TERM for it
    return ["StandardInput=tty", "StandardOutput=tty", "StandardError=tty", f"TTYPath={tty}"]


def run_argv(pid: int, unit: str, props: Sequence[str], io: Sequence[str],
             cmd: Sequence[str]) -> list[str]:
    """Start ``cmd`` as transient unit ``unit`` of the pod's systemd, with the app's settings
    ``props`` and stdio settings ``io`` (:func:`pipe_properties` or :func:`tty_properties`)."""
    argv = [*nsenter_prefix(pid), SYSTEMD_RUN, f"--unit={unit}", "--quiet",
            "--service-type=exec", "-p", "RemainAfterExit=yes"]
    for p in [*io, *props]:
        argv += ["-p", p]
    return [*argv, "--", *cmd]


def show_argv(pid: int, unit: str) -> list[str]:
    return [*nsenter_prefix(pid), SYSTEMCTL, "show", unit,
            "-p", "ActiveState,SubState,Result,ExecMainCode,ExecMainStatus"]


def cleanup_argv(pid: int, unit: str, failed: bool) -> list[str]:
    # a failed unit is unloaded by reset-failed, a finished one (RemainAfterExit) by stop
    return [*nsenter_prefix(pid), SYSTEMCTL, "reset-failed" if failed else "stop", unit]


@dataclass(frozen=True)
class UnitState:
    active: str
    sub: str
    result: str
    code: int  # ExecMainCode: 1 exited, 2 killed, 3 dumped
    status: int

    @property
    def done(self) -> bool:
        return self.active in ("failed", "inactive") or (
            self.active == "active" and self.sub == "exited")

    def exit_code(self) -> int:
        if self.code in (2, 3):
            return 128 + self.status  # killed by a signal, as a shell reports it
        return self.status


def parse_show(text: str) -> UnitState:
    kv = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def num(k: str) -> int:
        v = kv.get(k, "0")
        return int(v) if v.lstrip("-").isdigit() else 0

    return UnitState(active=kv.get("ActiveState", ""), sub=kv.get("SubState", ""),
                     result=kv.get("Result", ""), code=num("ExecMainCode"),
                     status=num("ExecMainStatus"))


def resolve_cmd(cmd: Sequence[str], approot: Path, env_file_text: str) -> list[str]:
    """A command without a slash is looked up in the app's PATH inside the app rootfs (as
    rkt's enterexec does); PID 1 would otherwise search its own PATH."""
    from . import apps as appmod

    path = appmod.DEFAULT_PATH
    for line in env_file_text.splitlines():
        if line.startswith("PATH="):
            path = line[5:].strip().strip('"')
    try:
        return appmod.resolve_exec(cmd, approot, path)
    except PodError as e:
        raise PodError(f'"{cmd[0]}" not found in the app\'s PATH') from e


# ---- executor ----------------------------------------------------------------------------

def _pump(src: int, dst: int) -> None:
    with contextlib.suppress(OSError):
        while data := os.read(src, 65536):
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view):]


def _reader(path: Path, dst: int) -> None:
    fd = os.open(path, os.O_RDONLY)  # blocks until the service opens its end
    try:
        _pump(fd, dst)
    finally:
        os.close(fd)


def _writer(path: Path, src: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return
    try:
        _pump(src, fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _unblock(path: Path, flags: int) -> None:
    """Open the other end of a FIFO once, so a thread still waiting in open() returns."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, flags | os.O_NONBLOCK))


# asm-generic ioctls (x86, arm, ...), which Python's termios module does not export
_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


def _open_pty(root: Path) -> tuple[int, str, int]:
    """A pty of the pod's own devpts: (master fd, slave path inside the pod, slave fd). We
    hold the slave open until the command is done so the master never reads EIO early."""
    import fcntl
    import struct

    master = os.open(root / "dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))[0]
    slave = os.open(root / f"dev/pts/{n}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, f"/dev/pts/{n}", slave


def _start_and_wait(a: EnterArgs, unit: str, props: list[str], io: list[str],
                    cmd: list[str], threads: Sequence[threading.Thread],
                    unblock: Callable[[], None]) -> UnitState:
    from ..host import proc

    started = False
    try:
        proc.run(run_argv(a.pid, unit, props, io, cmd), what="start the command in the pod")
        started = True
        return _wait(a.pid, unit, threads)
    finally:
        unblock()
        for t in threads:
            t.join(timeout=5)
        if started:
            shown = proc.run(show_argv(a.pid, unit), check=False).stdout.decode()
            proc.run(cleanup_argv(a.pid, unit, "ActiveState=failed" in shown), check=False)


def _run_pipes(a: EnterArgs, root: Path, unit: str, token: str, props: list[str],
               cmd: list[str]) -> UnitState:
    fifos = fifo_paths(token)
    host_fifos = [root / f.lstrip("/") for f in fifos]
    fdir = host_fifos[0].parent
    fdir.mkdir(parents=True, mode=0o700)
    try:
        for f in host_fifos:
            os.mkfifo(f, 0o600)
        threads = [threading.Thread(target=_reader, args=(host_fifos[1], sys.stdout.fileno())),
                   threading.Thread(target=_reader, args=(host_fifos[2], sys.stderr.fileno()))]
        stdin_thread = threading.Thread(target=_writer, args=(host_fifos[0], sys.stdin.fileno()),
                                        daemon=True)  # may stay blocked reading our stdin
        for t in (*threads, stdin_thread):
            t.start()

        def unblock() -> None:
            # threads still waiting for a service that never opened its FIFOs
            _unblock(host_fifos[1], os.O_WRONLY)
            _unblock(host_fifos[2], os.O_WRONLY)
            _unblock(host_fifos[0], os.O_RDONLY)

        return _start_and_wait(a, unit, props, pipe_properties(fifos), cmd, threads, unblock)
    finally:
        shutil.rmtree(fdir, ignore_errors=True)


def _run_tty(a: EnterArgs, root: Path, unit: str, props: list[str],
             cmd: list[str]) -> UnitState:
    import fcntl
    import termios
    import tty

    master, slave_path, slave = _open_pty(root)
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin)
    with contextlib.suppress(OSError):
        fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(stdin, termios.TIOCGWINSZ, b"\0" * 8))
    out = threading.Thread(target=_pump, args=(master, sys.stdout.fileno()))
    inp = threading.Thread(target=_pump, args=(stdin, master), daemon=True)

    def on_winch(_signo: int, _frame: object) -> None:
        # the caller's window changed: size the pod's pty alike; the kernel then signals the
        # entered command's process group
        with contextlib.suppress(OSError):
            fcntl.ioctl(master, termios.TIOCSWINSZ,
                        fcntl.ioctl(stdin, termios.TIOCGWINSZ, b"\0" * 8))

    old_winch = signal.signal(signal.SIGWINCH, on_winch)
    try:
        tty.setraw(stdin)
        out.start()
        inp.start()

        def unblock() -> None:
            os.close(slave)  # the command is done: the master reads EIO once drained

        return _start_and_wait(a, unit, props, tty_properties(slave_path), cmd, [out], unblock)
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        with contextlib.suppress(OSError):
            os.close(slave)


def execute(a: EnterArgs) -> int:
    root = Path(f"/proc/{a.pid}/root")
    if not root.exists():
        raise PodError(f"pod process {a.pid} is gone", hint="is the pod still running?")
    unit_file = root / "etc/systemd/system" / f"{a.app}.service"
    try:
        unit_text = unit_file.read_text()
    except OSError as e:
        raise PodError(f'app "{a.app}" has no unit in the pod') from e
    approot = root / "opt/stage2" / a.app / "rootfs"
    try:
        env_text = (root / "rkt/env" / a.app).read_text()
    except OSError:
        env_text = ""
    cmd = resolve_cmd(a.cmd, approot, env_text)
    token = uuidlib.uuid4().hex[:12]
    unit = unit_name(token)
    props = service_properties(unit_text)
    if os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno()):
        state = _run_tty(a, root, unit, props, cmd)
    else:
        state = _run_pipes(a, root, unit, token, props, cmd)
    if state.result == "exit-code" and state.code == 1 and state.status in (200, 203, 217):
        # systemd's EXIT_CHDIR / EXIT_EXEC / EXIT_USER: the command never ran
        raise RktError(f"cannot execute {cmd[0]!r} in app {a.app!r} "
                       f"(systemd exit status {state.status})")
    return state.exit_code()


def _wait(pid: int, unit: str, threads: Sequence[threading.Thread]) -> UnitState:
    from ..host import proc

    delay = 0.02
    while True:
        if not any(t.is_alive() for t in threads):
            # output closed: the command (normally) exited; its status follows soon
            delay = 0.02
        st = parse_show(proc.run(show_argv(pid, unit), check=False).stdout.decode())
        if st.done:
            return st
        if st.active == "":
            raise RktError(f"lost the entered command's unit {unit}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
