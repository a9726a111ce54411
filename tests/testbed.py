#!/usr/bin/env python3
"""Test bed: a real systemd as PID 1 of a container of this machine's own root.

This machine's PID 1 is not systemd, but the integration tests need one. This script follows the
measured recipe in shared/reference/systemd-test-host.md:

  unshare --mount --propagation private <this script> _launch   (nothing leaks to the machine)
    joins its own cgroups <unified>/<name> and <name=systemd>/<name>,
    mounts a tmpfs on /run and one for the overlay layers, writes a mask layer (hostname, hosts,
    a fresh machine-id, the image's enabled units masked), overlays lowerdir=<mask>:/,
    execs systemd-nspawn --boot (the repo and a scratch dir bound at their own paths);
  polls `systemctl is-system-running` inside until `running`;
  runs CMD as a transient unit: nsenter ... systemd-run --pipe --wait (stdio passed through);
  tears down in a `finally`: SIGTERM nspawn, SIGKILL after 10 s, cgroup.kill, rmdir the
  cgroups bottom-up, remove the state dir.

  python3 tests/testbed.py run [--name N] [--bind PATH]... [--setenv K=V]... -- CMD [ARG...]
  python3 tests/testbed.py start [--name N] [--bind PATH]...        developer use: boot, leave up
  python3 tests/testbed.py exec [--name N] [--setenv K=V]... -- CMD  run CMD in a started bed
  python3 tests/testbed.py stop [--name N]                           tear a bed down (idempotent)

Exit status: CMD's own; 125 when the test bed itself failed; 130/143 after SIGINT/SIGTERM.
Stdlib only, because pytest code imports it too. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_NAME = "rktd-less-testbed"
SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
CGROUP_ROOT = Path("/sys/fs/cgroup")
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
KILL_TIMEOUT = 10.0
ERROR_STATUS = 125
# Inside the launcher's private mount namespace only, on a tmpfs of its own.
LAYERS = Path("/run/testbed")
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Per the reference: mask what the image enables except what a booted systemd host needs.
KEEP_PREFIXES = ("systemd-", "dbus")
KEEP_UNITS = frozenset({"getty@.service", "machines.target", "remote-fs.target"})
ALWAYS_MASK = ("nftables.service", "systemd-tmpfiles-clean.timer")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")

VERBOSE = False


class TestbedError(Exception):
    """The test bed could not do what was asked; the message says why and what to do."""

    __test__ = False  # not a pytest test class


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived; BaseException so no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Mode(enum.StrEnum):
    RUN = "run"  # owned by a live `run` process, which tears it down
    START = "start"  # left up for a developer until `stop`


def log(msg: str) -> None:
    if VERBOSE:
        print(f"testbed: {msg}", file=sys.stderr, flush=True)


def say(msg: str) -> None:
    print(f"testbed: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- pure helpers (unit-tested)


def check_name(name: str) -> str:
    """A test bed name is a machine name, a hostname and a cgroup directory name."""
    if not NAME_RE.fullmatch(name):
        raise TestbedError(f"bad test bed name {name!r}: use letters, digits, '-' and '_'")
    return name


def unit_template(unit: str) -> str:
    """`getty@tty1.service` -> `getty@.service`: masking the template masks every instance."""
    head, at, rest = unit.partition("@")
    if not at:
        return unit
    return f"{head}@.{rest.rpartition('.')[2]}"


def units_to_mask(enabled: Iterable[str]) -> list[str]:
    """Units of the machine image to mask with /dev/null inside the test bed."""
    masks = set(ALWAYS_MASK)
    for unit in map(unit_template, enabled):
        if unit.startswith(KEEP_PREFIXES) or unit in KEEP_UNITS:
            continue
        masks.add(unit)
    return sorted(masks)


def mask_layer_files(name: str, machine_id: str) -> dict[str, str]:
    """Regular files of the mask layer (relative path -> content)."""
    if not re.fullmatch(r"[0-9a-f]{32}", machine_id):
        # An empty machine-id means "first boot": systemd-firstboot would block on the console.
        raise ValueError(f"bad machine id {machine_id!r}")
    hosts = f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{name}\n"
    return {"etc/hostname": f"{name}\n", "etc/hosts": hosts, "etc/machine-id": f"{machine_id}\n"}


def untraversable_ancestors(
    paths: Iterable[str], stat_of: Callable[[str], os.stat_result]
) -> dict[str, tuple[int, int, int]]:
    """Directories for the mask layer so that the tests' non-root users can reach the bound
    paths (the repo's .venv) inside the bed, e.g. for a clone under /root (0700): each
    ancestor others cannot search gets its mode plus search (x) for group and others; the
    ancestors above it are repeated as they are (a mask-layer directory hides the machine's
    mode and owner). rel path -> (mode, uid, gid), outermost first. Only the bed's view
    changes."""
    out: dict[str, tuple[int, int, int]] = {}
    for path in paths:
        parents = list(reversed(Path(path).parents[:-1]))  # outermost first, "/" excluded
        stats = [stat_of(str(p)) for p in parents]
        closed = [i for i, st in enumerate(stats) if st.st_mode & 0o011 != 0o011]
        if not closed:
            continue
        for parent, st in zip(parents[: closed[-1] + 1], stats, strict=False):
            out.setdefault(parent.relative_to("/").as_posix(),
                           ((st.st_mode | 0o011) & 0o7777, st.st_uid, st.st_gid))
    return out


def nspawn_argv(nspawn: str, name: str, root: Path, binds: Sequence[str]) -> list[str]:
    return [
        nspawn, "--quiet", "-D", str(root), f"--machine={name}", "--boot", "--register=no",
        "--keep-unit", "--private-network", "--console=read-only", "--link-journal=no",
        # As on a machine whose PID 1 is systemd: bpf() reachable, so the bed's systemd and the
        # pods' (which rkt-less also lets use it) can attach the device programs of
        # DevicePolicy=. nspawn's own filter refuses it to everything in the bed otherwise.
        "--system-call-filter=bpf",
        *(f"--bind={b}" for b in binds),
    ]  # fmt: skip


def launcher_argv(python: str, spec_file: Path) -> list[str]:
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        python, "-I", str(SCRIPT), "_launch", str(spec_file),
    ]  # fmt: skip


def nsenter_argv(leader: int, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--target={leader}", "--all", "--", *argv]


# Waits for CMD's unit even when `systemd-run --wait` loses systemd (a test that runs
# `systemctl daemon-reexec` in the bed): CMD records its status in a file, and if systemd-run
# returned before that, the unit is watched until it ends.
_EXEC_WAIT = """unit=$1 rc=$2; shift 2
"$@"; status=$?
while [ ! -e "$rc" ]; do
    case $(systemctl show --property=ActiveState --value "$unit" 2>/dev/null) in
        inactive|failed) break ;;
    esac
    sleep 0.2
done
if [ -e "$rc" ]; then status=$(cat "$rc"); rm -f "$rc"; fi
exit "$status"
"""


def exec_argv(
    leader: int, unit: str, cmd: Sequence[str], env: Mapping[str, str], cwd: str
) -> list[str]:
    """systemd-run as a transient service inside the bed, stdio passed through.

    `--working-directory` rather than `--same-dir`: nsenter's setns() into the mount namespace
    resets the cwd to the container's root, so `--same-dir` would always mean `/`.
    `$` is doubled: systemd expands `${VAR}` and `$VAR` in ExecStart, CMD must get its args as is.
    CMD runs under `sh`, which turns a death by signal into 128+N: systemd counts SIGTERM, SIGINT,
    SIGHUP and SIGPIPE as a clean exit, and systemd-run would return 0 for them. That `sh`
    also writes the status to /run/<unit>.rc for the waiter (_EXEC_WAIT).
    """
    rc = f"/run/{unit}.rc"
    run = ["systemd-run", f"--unit={unit}", "--pipe", "--wait", "--collect", "--quiet"]
    run += [f"--working-directory={cwd}", *(f"--setenv={k}={v}" for k, v in env.items())]
    wrapped = ["/bin/sh", "-c", f'"$@"; rc=$?; echo $rc > {rc}; exit $rc', "testbed", *cmd]
    return nsenter_argv(leader, ["/bin/sh", "-c", _EXEC_WAIT, "testbed-exec", unit, rc, *run,
                                 "--", *(arg.replace("$", "$$") for arg in wrapped)])


def parse_setenv(items: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """`K=V` sets, a bare `K` copies the caller's value (children get a clean environment)."""
    env: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise TestbedError(f"bad --setenv {item!r}: expected NAME=VALUE")
        if not eq:
            if key not in environ:
                raise TestbedError(f"--setenv {key}: not set in this environment")
            value = environ[key]
        env[key] = value
    return env


def parse_nspid(status: str) -> list[int]:
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    return []


def console_tail(text: str, lines: int = 40) -> str:
    kept = [line for line in ANSI_RE.sub("", text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def mountpoints_under(mountinfo: str, top: Path) -> list[str]:
    """Mount points at or below `top` in a /proc/self/mountinfo text."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == str(top) or point.startswith(f"{top}/"):
            found.append(point)
    return found


# ---------------------------------------------------------------- layout and state


def cgroup_hierarchies() -> list[Path]:
    """The cgroup trees a bed gets a directory in: cgroup2 (first), and v1 name=systemd."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # a pure cgroup2 machine
        return [CGROUP_ROOT]
    trees = [CGROUP_ROOT / "unified"]
    if (CGROUP_ROOT / "systemd" / "cgroup.procs").exists():
        trees.append(CGROUP_ROOT / "systemd")
    return trees


@dataclass(frozen=True)
class Layout:
    name: str
    repo: Path = REPO

    @property
    def base(self) -> Path:
        return self.repo / ".testbed"

    @property
    def state_dir(self) -> Path:
        return self.base / self.name

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def spec_file(self) -> Path:
        return self.state_dir / "launch.json"

    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"

    @property
    def default_scratch(self) -> Path:
        return self.state_dir / "scratch"

    @property
    def cgroups(self) -> list[Path]:
        return [tree / self.name for tree in cgroup_hierarchies()]


@dataclass(frozen=True)
class State:
    mode: str
    owner_pid: int
    owner_start: int
    scratch: str
    nspawn_pid: int = 0
    nspawn_start: int = 0
    leader_pid: int = 0


@dataclass(frozen=True)
class LaunchSpec:
    cgroups: list[str]
    files: dict[str, str]
    dirs: dict[str, tuple[int, int, int]]
    masks: list[str]
    argv: list[str]
    env: dict[str, str]


def read_state(layout: Layout) -> State | None:
    try:
        data: dict[str, Any] = json.loads(layout.state_file.read_text())
        return State(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.rename(path)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialises claiming and removing beds (of any name) between processes."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------- processes and cgroups


def proc_start(pid: int) -> int | None:
    """Start time of a live (non-zombie) process, to tell it from a later one with its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


def alive(pid: int, start: int) -> bool:
    return pid > 0 and proc_start(pid) == start


def in_cgroup(pid: int, name: str) -> bool:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if controllers in ("", "name=systemd") and (
            path == f"/{name}" or path.startswith(f"/{name}/")
        ):
            return True
    return False


def clean_env(**extra: str) -> dict[str, str]:
    return {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", **extra}


# nsenter children per bed, reaped at teardown. Never kill an nsenter before the bed: its
# child inside the bed would be reparented to the machine's init, and a zombie that init is slow
# to reap keeps the bed's systemd-shutdown waiting (seen: 20 s).
_INFLIGHT: dict[str, list[subprocess.Popen[Any]]] = {}


def spawn(argv: Sequence[str], bed: str | None, echo: bool = True, **kw: Any) -> Any:
    """The one door for processes: argv list, clean environment, logged under --verbose.

    Own process group: a Ctrl-C reaches this script only, which then tears down in order.
    """
    if echo:
        log(f"$ {' '.join(argv)}")
    proc = subprocess.Popen(list(argv), env=clean_env(), process_group=0, **kw)
    if bed is not None:
        _INFLIGHT.setdefault(bed, []).append(proc)
    return proc


def run_quiet(
    argv: Sequence[str], bed: str | None = None, timeout: float = 30.0, echo: bool = True
) -> subprocess.CompletedProcess[str]:
    """A short helper command, output captured; if interrupted it is left for reap_all()."""
    proc: subprocess.Popen[str] = spawn(
        argv, bed, echo, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    if bed is not None:
        _INFLIGHT[bed].remove(proc)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def reap_all(bed: str) -> None:
    """Wait for the bed's nsenter children (gone once the bed's processes are)."""
    for proc in _INFLIGHT.pop(bed, []):
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cgroup_procs(top: Path) -> list[int]:
    pids: list[int] = []
    for dirpath, _dirs, _files in os.walk(top):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(dirpath, "cgroup.procs").read_text().split()]
    return pids


def wait_until(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def kill_cgroup(top: Path) -> None:
    """SIGKILL everything in our cgroup tree, and wait until it is empty."""
    if not top.is_dir():
        return
    kill_file = top / "cgroup.kill"
    if cgroup_procs(top) and kill_file.exists():
        log(f"cgroup.kill {top}")
        kill_file.write_text("1")
    elif cgroup_procs(top):  # v1, or a kernel without cgroup.kill: they are ours by membership
        for pid in cgroup_procs(top):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if not wait_until(lambda: not cgroup_procs(top), KILL_TIMEOUT):
        raise TestbedError(f"processes left in {top} after SIGKILL: {cgroup_procs(top)}")


def remove_cgroup(top: Path) -> None:
    """rmdir a cgroup tree bottom-up (retrying: emptied cgroups can be busy for a moment)."""
    if not top.is_dir():
        return
    dirs = [Path(d) for d, _, _ in os.walk(top)]
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        deadline = time.monotonic() + 5.0
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise TestbedError(f"cannot remove cgroup {d}: {e}") from e
                time.sleep(0.05)


def stop_processes(
    layout: Layout, state: State | None, child: subprocess.Popen[bytes] | None
) -> None:
    """SIGTERM our nspawn (a clean halt), SIGKILL after a while, then kill whatever is left."""
    pid = 0
    if child is not None and child.poll() is None:
        pid = child.pid
    elif (
        state is not None
        and alive(state.nspawn_pid, state.nspawn_start)
        and in_cgroup(state.nspawn_pid, layout.name)  # only ever a process we started
    ):
        pid = state.nspawn_pid
    if pid:
        log(f"SIGTERM systemd-nspawn ({pid})")
        os.kill(pid, signal.SIGTERM)
        start = proc_start(pid)

        def gone() -> bool:
            if child is not None:
                return child.poll() is not None
            return proc_start(pid) != start

        if not wait_until(gone, STOP_TIMEOUT):
            say(f"systemd-nspawn did not stop in {STOP_TIMEOUT:.0f}s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(gone, KILL_TIMEOUT)
    for top in layout.cgroups:
        kill_cgroup(top)


def remove_all(layout: Layout, state: State | None) -> None:
    """Remove the cgroups and the state dir (call with the lock held, processes gone)."""
    for top in reversed(layout.cgroups):
        remove_cgroup(top)
    if layout.state_dir.exists():
        mounts = mountpoints_under(Path("/proc/self/mountinfo").read_text(), layout.state_dir)
        if mounts:  # never rm -r through a mount
            raise TestbedError(f"not removing {layout.state_dir}: mounts below it: {mounts}")
        shutil.rmtree(layout.state_dir)


def teardown(layout: Layout, child: subprocess.Popen[bytes] | None = None) -> None:
    """Idempotent: stop and remove whatever exists of the bed `layout.name`."""
    with ignored_signals():
        state = read_state(layout)
        stop_processes(layout, state, child)
        reap_all(layout.name)
        with locked(layout.base):
            remove_all(layout, state)


@contextlib.contextmanager
def ignored_signals() -> Iterator[None]:
    """A second Ctrl-C must not interrupt a teardown half-way."""
    if threading.current_thread() is not threading.main_thread():  # only main can set handlers
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def raising_signals() -> Iterator[None]:
    def handler(signum: int, _frame: types.FrameType | None) -> None:
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------- start, exec, stop


@dataclass(frozen=True)
class Testbed:
    """A booted bed: enough to run commands in it."""

    __test__ = False

    layout: Layout
    state: State
    child: subprocess.Popen[bytes] | None = None  # the nspawn, when this process started it

    @property
    def scratch(self) -> Path:
        return Path(self.state.scratch)


def preflight() -> str:
    if os.geteuid() != 0:
        raise TestbedError("the test bed needs root")
    missing = [t for t in ("unshare", "nsenter") if shutil.which(t, path=CLEAN_PATH) is None]
    if missing:
        raise TestbedError(f"missing {', '.join(missing)} (Debian package util-linux)")
    nspawn = shutil.which("systemd-nspawn", path=CLEAN_PATH)
    if nspawn is None:
        raise TestbedError("systemd-nspawn missing: apt-get install systemd-container")
    if not (cgroup_hierarchies()[0] / "cgroup.procs").exists():
        raise TestbedError(f"no cgroup2 hierarchy at {cgroup_hierarchies()[0]}")
    return nspawn


def enabled_units(etc: Path = Path("/etc/systemd/system")) -> list[str]:
    """What `systemctl list-unit-files --state=enabled` reports, without its 1.2 s here:
    the units linked into a .wants/.requires/.upholds dir of the machine's own config."""
    units: set[str] = set()
    for d in etc.glob("*.*"):
        if d.is_dir() and d.suffix in (".wants", ".requires", ".upholds"):
            units.update(p.name for p in d.iterdir())
    return sorted(units)


def claim(layout: Layout, mode: Mode, scratch: Path | None) -> State:
    """Under the lock: refuse a bed in use, clean a crashed one's leftovers, make ours."""
    with locked(layout.base):
        old = read_state(layout)
        if old is not None:
            if old.mode == Mode.RUN and alive(old.owner_pid, old.owner_start):
                raise TestbedError(f"test bed {layout.name} is in use by pid {old.owner_pid}")
            if old.mode == Mode.START and alive(old.nspawn_pid, old.nspawn_start):
                raise TestbedError(
                    f"test bed {layout.name} is already running; stop it first: "
                    f"python3 {SCRIPT} stop --name {layout.name}"
                )
        if old is not None or layout.state_dir.exists() or any(c.exists() for c in layout.cgroups):
            say(f"cleaning leftovers of an earlier {layout.name}")
            stop_processes(layout, old, None)
            remove_all(layout, old)
        me = os.getpid()
        state = State(mode, me, proc_start(me) or 0, str(scratch or layout.default_scratch))
        try:
            layout.state_dir.mkdir(parents=True)
            Path(state.scratch).mkdir(parents=True, exist_ok=True)
            for c in layout.cgroups:
                c.mkdir()
            write_json(layout.state_file, dataclasses.asdict(state))
        except BaseException:
            with ignored_signals():
                remove_all(layout, None)
            raise
    return state


def launch(
    layout: Layout, state: State, binds: Sequence[str], nspawn: str
) -> tuple[State, subprocess.Popen[bytes]]:
    binds = [str(layout.repo), state.scratch, *binds]
    spec = LaunchSpec(
        cgroups=[str(c) for c in layout.cgroups],
        files=mask_layer_files(layout.name, uuid.uuid4().hex),
        dirs=untraversable_ancestors(binds, os.stat),
        masks=units_to_mask(enabled_units()),
        argv=nspawn_argv(nspawn, layout.name, LAYERS / "root", binds),
        env=clean_env(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1"),
    )
    write_json(layout.spec_file, dataclasses.asdict(spec))
    argv = launcher_argv(sys.executable, layout.spec_file)
    log(f"$ {' '.join(argv)}\n  exec {' '.join(spec.argv)}")
    with layout.console_log.open("ab") as console:
        # Own session: a Ctrl-C for the tests must not reach nspawn; teardown stops it.
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
            env=clean_env(), start_new_session=True,
        )  # fmt: skip
    # unshare and the launcher exec, so this PID is systemd-nspawn's.
    started = proc_start(child.pid) or 0
    return dataclasses.replace(state, nspawn_pid=child.pid, nspawn_start=started), child


def find_leader(nspawn_pid: int) -> int | None:
    """The container's PID 1: nspawn's child whose last NSpid is 1."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s*(\d+)", status, re.M)
        nspid = parse_nspid(status)
        if ppid and int(ppid.group(1)) == nspawn_pid and len(nspid) > 1 and nspid[-1] == 1:
            return int(entry)
    return None


def console_excerpt(layout: Layout) -> str:
    try:
        text = layout.console_log.read_text(errors="replace")
    except OSError:
        return "(no console output)"
    return f"--- console ({layout.console_log}), last lines ---\n{console_tail(text)}"


def wait_boot(layout: Layout, state: State, allow_degraded: bool) -> State:
    t0 = time.monotonic()
    leader: int | None = None
    last = "(no answer yet)"
    while True:
        if not alive(state.nspawn_pid, state.nspawn_start):
            raise TestbedError(f"systemd-nspawn exited during boot\n{console_excerpt(layout)}")
        if leader is None:
            leader = find_leader(state.nspawn_pid)
            if leader is not None:
                log(f"container PID 1 is {leader}; polling systemctl is-system-running")
        if leader is not None:
            is_running = nsenter_argv(leader, ["systemctl", "is-system-running"])
            r = run_quiet(is_running, layout.name, echo=False)
            state_now = r.stdout.strip() or r.stderr.strip()
            if state_now != last:
                log(f"{time.monotonic() - t0:.2f}s: {state_now}")
            last = state_now
            if last == "running":
                break
            if last == "degraded":
                list_failed = nsenter_argv(leader, ["systemctl", "--failed", "--no-pager"])
                failed = run_quiet(list_failed, layout.name)
                say(f"systemd in the test bed is degraded:\n{failed.stdout.rstrip()}")
                if allow_degraded:
                    break
                raise TestbedError(
                    "failed units while booting (see above; --allow-degraded to go on)"
                )
            if last in ("maintenance", "stopping"):
                raise TestbedError(f"systemd is {last} while booting\n{console_excerpt(layout)}")
        if time.monotonic() - t0 > BOOT_TIMEOUT:
            raise TestbedError(
                f"systemd not up after {BOOT_TIMEOUT:g}s (last state: {last})\n"
                f"{console_excerpt(layout)}"
            )
        time.sleep(0.05)
    say(f"systemd up in {time.monotonic() - t0:.1f}s")
    assert leader is not None
    return dataclasses.replace(state, leader_pid=leader)


def start(
    name: str = DEFAULT_NAME,
    binds: Sequence[str] = (),
    scratch: Path | None = None,
    mode: Mode = Mode.START,
    allow_degraded: bool = False,
    repo: Path = REPO,
) -> Testbed:
    """Boot a bed; on any failure (or interruption) nothing of it is left behind."""
    layout = Layout(check_name(name), repo)
    nspawn = preflight()
    state = claim(layout, mode, scratch)
    child: subprocess.Popen[bytes] | None = None
    try:
        state, child = launch(layout, state, binds, nspawn)
        write_json(layout.state_file, dataclasses.asdict(state))
        state = wait_boot(layout, state, allow_degraded)
        write_json(layout.state_file, dataclasses.asdict(state))
    except BaseException:
        teardown(layout, child)
        raise
    # A started bed outlives this process: nspawn is then found again by its recorded PID.
    return Testbed(layout, state, child if mode == Mode.RUN else None)


def attach(name: str = DEFAULT_NAME, repo: Path = REPO) -> Testbed:
    """A bed started earlier (by `start`, or a `run` in progress)."""
    layout = Layout(check_name(name), repo)
    state = read_state(layout)
    if state is None or not alive(state.nspawn_pid, state.nspawn_start) or not state.leader_pid:
        raise TestbedError(
            f"test bed {name} is not running; start it: python3 {SCRIPT} start --name {name}"
        )
    return Testbed(layout, state)


def _stdio() -> dict[str, Any]:
    """Pass our stdio through; an fd that is closed (CI has no stdin) becomes /dev/null."""
    opened: dict[str, Any] = {}
    for fd, key in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            opened[key] = None
        except OSError:
            opened[key] = subprocess.DEVNULL
    return opened


def spawn_exec(
    bed: Testbed, unit: str, cmd: Sequence[str], setenv: Mapping[str, str], cwd: str | None
) -> subprocess.Popen[bytes]:
    if not cmd:
        raise TestbedError("no command given (put it after `--`)")
    cwd = cwd or os.getcwd()
    if not Path(f"/proc/{bed.state.leader_pid}/root{cwd}").is_dir():
        raise TestbedError(f"{cwd} does not exist inside the test bed; run from the repo")
    env = {
        "HOME": "/root",  # a service gets no HOME; git, pip and friends want one
        "RKT_TEST_SCRATCH": bed.state.scratch,
        "RKT_TESTBED": bed.layout.name,
        **setenv,
    }
    argv = exec_argv(bed.state.leader_pid, unit, cmd, env, cwd)
    proc: subprocess.Popen[bytes] = spawn(argv, bed.layout.name, **_stdio())
    return proc


def exec_in(
    bed: Testbed, cmd: Sequence[str], setenv: Mapping[str, str] = {}, cwd: str | None = None
) -> int:
    """Run CMD in the bed as a transient service; its exit status."""
    unit = f"testbed-{uuid.uuid4().hex[:12]}.service"
    proc = spawn_exec(bed, unit, cmd, setenv, cwd)
    try:
        return exit_status(proc.wait())
    except BaseException:
        # Interrupted: stop the unit; systemd-run then ends, and so does our nsenter.
        with ignored_signals():
            stop_unit = ["systemctl", "stop", "--no-block", unit]
            run_quiet(nsenter_argv(bed.state.leader_pid, stop_unit))
            reap_all(bed.layout.name)
        raise
    finally:
        _INFLIGHT.pop(bed.layout.name, None)


def stop(name: str = DEFAULT_NAME, repo: Path = REPO) -> None:
    teardown(Layout(check_name(name), repo))


def run(
    cmd: Sequence[str],
    name: str = DEFAULT_NAME,
    binds: Sequence[str] = (),
    setenv: Mapping[str, str] = {},
    scratch: Path | None = None,
    allow_degraded: bool = False,
) -> int:
    """start + exec + stop; the bed is always torn down, also on SIGINT/SIGTERM."""
    layout = Layout(check_name(name))
    bed: Testbed | None = None
    try:
        bed = start(name, binds, scratch, Mode.RUN, allow_degraded)
        unit = f"testbed-{uuid.uuid4().hex[:12]}.service"
        return exit_status(spawn_exec(bed, unit, cmd, setenv, None).wait())
    finally:
        # Also when a signal hit between start() returning and `bed` being set: ours if the
        # state on disk names this process.
        state = read_state(layout)
        if bed is not None or (state is not None and state.owner_pid == os.getpid()):
            teardown(layout, bed.child if bed is not None else None)


# ---------------------------------------------------------------- the launcher (own mount ns)


def _mount(source: str, target: Path, fstype: str, flags: int, data: str) -> None:
    import ctypes  # only the launcher needs it

    libc = ctypes.CDLL(None, use_errno=True)
    args = (source.encode(), str(target).encode(), fstype.encode(), ctypes.c_ulong(flags))
    if libc.mount(*args, data.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target} ({data}): {os.strerror(err)}")


def launcher_main(spec_file: str) -> NoReturn:
    """Runs under `unshare --mount --propagation private`: every mount here is private."""
    spec = LaunchSpec(**json.loads(Path(spec_file).read_text()))
    for cgroup in spec.cgroups:
        Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))
    ms_nosuid, ms_nodev = 2, 4
    # The machine's /run is a plain directory: nspawn would leave files there.
    _mount("tmpfs", Path("/run"), "tmpfs", ms_nosuid | ms_nodev, "mode=0755")
    LAYERS.mkdir()
    _mount("tmpfs", LAYERS, "tmpfs", ms_nosuid | ms_nodev, "mode=0755")
    mask, upper, work, root = (LAYERS / d for d in ("mask", "upper", "work", "root"))
    for d in (mask, upper, work, root):
        d.mkdir()
    for rel, (mode, uid, gid) in spec.dirs.items():  # outermost first
        (mask / rel).mkdir()
        os.chown(mask / rel, uid, gid)
        os.chmod(mask / rel, mode)
    for rel, content in spec.files.items():
        (mask / rel).parent.mkdir(parents=True, exist_ok=True)
        (mask / rel).write_text(content)
    units = mask / "etc/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in spec.masks:
        (units / unit).symlink_to("/dev/null")
    _mount("overlay", root, "overlay", 0, f"lowerdir={mask}:/,upperdir={upper},workdir={work}")
    os.execve(spec.argv[0], spec.argv, spec.env)


# ---------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    cmd: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1 :]
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=DEFAULT_NAME, help=f"default {DEFAULT_NAME}")
    common.add_argument("--verbose", "-v", action="store_true")
    boot = argparse.ArgumentParser(add_help=False)
    boot.add_argument("--bind", action="append", default=[], metavar="PATH",
                      help="also bind PATH (or SRC:DST) into the bed")  # fmt: skip
    boot.add_argument(
        "--scratch", type=Path, metavar="DIR", help="default <repo>/.testbed/<name>/scratch"
    )
    boot.add_argument("--allow-degraded", action="store_true",
                      help="go on when units failed during boot")  # fmt: skip
    env = argparse.ArgumentParser(add_help=False)
    env.add_argument("--setenv", action="append", default=[], metavar="K=V")
    p = argparse.ArgumentParser(
        prog="testbed.py", description="A real systemd (PID 1 of a container) to test in."
    )
    sub = p.add_subparsers(dest="verb", required=True, metavar="{run,start,exec,stop}")
    with_cmd = "%(prog)s [options] -- CMD [ARG...]"
    sub.add_parser("run", parents=[common, boot, env], usage=with_cmd,
                   help="start + exec -- CMD + stop; exits with CMD's status")  # fmt: skip
    sub.add_parser("start", parents=[common, boot], help="boot a bed and leave it up")
    sub.add_parser("exec", parents=[common, env], usage=with_cmd,
                   help="run -- CMD in a started bed")  # fmt: skip
    sub.add_parser("stop", parents=[common], help="tear a bed down")
    launch_p = sub.add_parser("_launch")
    launch_p.add_argument("spec")
    args = p.parse_args(argv)
    if args.verb in ("run", "exec") and not cmd:
        p.error(f"{args.verb}: give the command after `--`")
    if args.verb not in ("run", "exec") and cmd:
        p.error(f"{args.verb} takes no command")
    return args, cmd


def _abs_bind(bind: str) -> str:
    if ":" in bind:  # SRC:DST[:options], as nspawn takes it
        return bind
    path = Path(bind).resolve()
    if not path.exists():
        raise TestbedError(f"--bind {bind}: no such file or directory")
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    global VERBOSE
    args, cmd = parse_args(sys.argv[1:] if argv is None else argv)
    if args.verb == "_launch":
        launcher_main(args.spec)
    VERBOSE = args.verbose
    try:
        with raising_signals():
            if args.verb == "stop":
                stop(args.name)
                return 0
            if args.verb == "exec":
                setenv = parse_setenv(args.setenv, os.environ)
                return exec_in(attach(args.name), cmd, setenv)
            binds = [_abs_bind(b) for b in args.bind]
            scratch = args.scratch.resolve() if args.scratch else None
            if args.verb == "start":
                bed = start(args.name, binds, scratch, Mode.START, args.allow_degraded)
                say(f"{args.name} is up; scratch {bed.scratch}; "
                    f"exec: python3 {SCRIPT} exec --name {args.name} -- CMD")  # fmt: skip
                return 0
            setenv = parse_setenv(args.setenv, os.environ)
            return run(cmd, args.name, binds, setenv, scratch, args.allow_degraded)
    except TestbedError as e:
        say(f"error: {e}")
        return ERROR_STATUS
    except (Interrupted, KeyboardInterrupt) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        done = "command stopped" if args.verb == "exec" else "test bed torn down"
        say(f"interrupted ({signal.Signals(signum).name}); {done}")
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
