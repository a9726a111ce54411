"""stage0 → stage1: start the pod's run entrypoint as a transient systemd unit, or exec it.

Three ways, picked by :func:`choose_mode`:
- ``unit``: systemd is reachable and we are not a service's main process → start
  ``rkt-<uuid>.service`` in ``machine.slice`` over D-Bus, hand it our stdio, wait, and return
  the pod's exit status (foreground ``rkt run``).
- ``keep-unit``: we are the main process of a service (``systemd-run rkt run``, a unit file's
  ``ExecStart=rkt run``) → exec stage1 in place; nspawn ``--keep-unit`` makes that unit the pod.
- ``no-systemd``: no systemd manager → exec stage1 in place, as rkt did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import termios
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..common.contract import Stage1Unit
from ..errors import PodError, SystemdError
from ..ids import unit_name

if TYPE_CHECKING:
    from ..config import ConfigDirs
    from ..systemd.bus import Systemd, UnitStatus

T = TypeVar("T")

log = logging.getLogger("rktd_less.launch")


class Mode(StrEnum):
    UNIT = "unit"
    KEEP_UNIT = "keep-unit"
    NO_SYSTEMD = "no-systemd"


@dataclass(frozen=True)
class Launch:
    uuid: str
    poddir: Path
    entrypoint: Path  # stage1 run entrypoint (absolute)
    args: tuple[str, ...]  # stage1 run arguments, UUID last
    interactive: bool = False
    env: tuple[tuple[str, str], ...] = ()  # for stage1, e.g. rkt's RKT_SELINUX_CONTEXT
    # what the stage1 image asks of its pod unit (common/contract.py stage1_unit)
    stage1_unit: Stage1Unit = field(default_factory=Stage1Unit)
    # the stage1's stop-post entrypoint (absolute): the unit's ExecStopPost=, with the UUID
    stop_post: Path | None = None


def stage1_run_args(uuid: str, *, debug: bool, net: str, interactive: bool,
                    hostname: str | None, insecure: frozenset[str] = frozenset(),
                    ipc: str = "auto", private_users: str | None = None,
                    config: ConfigDirs | None = None,
                    dns_conf_mode: str = "resolv=default,hosts=default") -> tuple[str, ...]:
    """rkt's stage0 → stage1 run arguments (reference §2.1), in rkt's order. ``insecure``:
    the --insecure-options in effect; capabilities/paths/seccomp become stage1's --disable-*.
    ``config``: its local (rkt's --local-config) and system directories, for ``net.d``."""
    args = []
    if debug:
        args.append("--debug")
    args.append(f"--net={net}")
    if interactive:
        args.append("--interactive")
    if private_users:
        args.append(f"--private-users={private_users}")
    if config is not None:
        args.append(f"--local-config={config.local}")
        args.append(f"--system-config={config.system}")
    if hostname:
        args.append(f"--hostname={hostname}")
    if dns_conf_mode != "resolv=default,hosts=default":  # stage1's default
        args.append(f"--dns-conf-mode={dns_conf_mode}")
    for opt, flag in (("capabilities", "--disable-capabilities-restriction"),
                      ("paths", "--disable-paths"), ("seccomp", "--disable-seccomp")):
        if opt in insecure:
            args.append(flag)
    if ipc != "auto":
        args.append(f"--ipc={ipc}")
    args.append(uuid)
    return tuple(args)


def unit_properties(launch: Launch, *, description: str, add_ref: bool,
                    pass_stdio: bool, notify: bool) -> list[tuple[str, str, object]]:
    """The transient unit of a pod (pure). (name, D-Bus signature, value): stage0's own, then
    what the stage1 image asks for (its cgroup delegation, device policy, environment...).

    ``notify``: the unit becomes active when the pod's apps are up, for a stage1 that says
    it reports that (READY=1). A foreground run waits for the end instead and uses
    ``Type=exec``: a pod that finishes before READY=1 would otherwise be a failed start."""
    from ..systemd.bus import STDIO_FROM_CALLER, exec_command

    argv = [str(launch.entrypoint), *launch.args]
    s1 = launch.stage1_unit
    s1_env = next((list(v) for n, _s, v in s1.properties if n == "Environment"
                   and isinstance(v, list)), [])
    props: list[tuple[str, str, object]] = [
        ("Description", "s", description),
        ("Slice", "s", "machine.slice"),
        ("Type", "s", "notify" if notify and s1.notify_ready else "exec"),
        ("CollectMode", "s", "inactive-or-failed"),
        ("WorkingDirectory", "s", str(launch.poddir)),
        ("Environment", "as", [*s1_env, *(f"{k}={v}" for k, v in launch.env)]),
        *(p for p in s1.properties if p[0] != "Environment"),
        ("ExecStart", "a(sasb)", exec_command(argv)),
    ]
    if launch.stop_post is not None:  # runs however the pod ended; its failure is logged only
        props.append(("ExecStopPost", "a(sasb)",
                      exec_command(stop_post_argv(launch), ignore_failure=True)))
    if add_ref:
        props.append(("AddRef", "b", True))
    if pass_stdio:
        props += STDIO_FROM_CALLER
    return props


def stop_post_argv(launch: Launch) -> list[str]:
    """The stop-post entrypoint with the pods directory, where it finds the pod should `rkt
    gc` have moved it from the unit's working directory (run/ → exited-garbage/) first."""
    assert launch.stop_post is not None
    post = str(launch.stop_post)
    return [post, f"--pods-dir={launch.poddir.parent.parent}", launch.uuid]


def stop_post_unit(uuid: str) -> str:
    return f"rkt-{uuid}-stop-post.service"


def stop_post_properties(launch: Launch, owner: str) -> list[tuple[str, str, object]]:
    """keep-unit: the pod is ``owner``, a unit not ours, whose ExecStopPost= cannot be set.
    A companion unit bound to it runs the stage1's stop-post entrypoint as its ExecStop=
    once ``owner`` has stopped (BindsTo= stops it then; Before= orders that stop after
    ``owner``'s)."""
    from ..systemd.bus import exec_command

    assert launch.stop_post is not None
    s1_env = next((list(v) for n, _s, v in launch.stage1_unit.properties
                   if n == "Environment" and isinstance(v, list)), [])
    return [
        ("Description", "s", f"rkt pod {launch.uuid}: release what {owner} leaves"),
        ("Type", "s", "oneshot"),
        ("RemainAfterExit", "b", True),
        ("CollectMode", "s", "inactive-or-failed"),
        ("WorkingDirectory", "s", f"-{launch.poddir}"),  # gone with the pod: still runs
        ("Environment", "as", [*s1_env, *(f"{k}={v}" for k, v in launch.env)]),
        ("BindsTo", "as", [owner]),
        ("Before", "as", [owner]),
        ("ExecStop", "a(sasb)", exec_command(stop_post_argv(launch), ignore_failure=True)),
    ]


def bind_stop_post(launch: Launch) -> None:
    """Start the companion of :func:`stop_post_properties` for our own service."""
    from ..host.cgroup import own_service
    from ..systemd.bus import Prop, Systemd

    owner = own_service()
    if owner is None or launch.stop_post is None:
        return

    async def go() -> None:
        sd = await Systemd.connect()
        try:
            props = [Prop(n, s, v) for n, s, v in stop_post_properties(launch, owner)]
            await sd.wait_job(await sd.start_transient(stop_post_unit(launch.uuid), props))
        finally:
            sd.close()

    asyncio.run(go())


def choose_mode() -> Mode:
    from ..host.cgroup import own_service
    from ..systemd import bus

    if not bus.available():
        return Mode.NO_SYSTEMD
    if own_service() is not None and os.getppid() == 1:
        # Our parent is systemd and we sit in a service's cgroup: we are its main process.
        return Mode.KEEP_UNIT
    return Mode.UNIT


def exec_stage1(launch: Launch, lock_fd: int, debug: bool) -> None:
    """Replace this process with stage1, handing it the pod lock (rkt's RKT_LOCK_FD)."""
    from ..host import proc

    os.set_inheritable(lock_fd, True)
    os.chdir(launch.poddir)
    extra = {"RKT_LOCK_FD": str(lock_fd), **dict(launch.env)}
    # a Type=notify unit running rkt: nspawn tells it READY; a socket-activated one: the
    # sockets systemd gave us (same PID across the execs) reach the pod (stage1/sockets.py)
    for var in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        if var in os.environ:
            extra[var] = os.environ[var]
    env = proc.clean_env(extra)
    proc.exec_([str(launch.entrypoint), *launch.args], env)


TERMINATED = 128 + signal.SIGTERM  # as an app ended by a stop from outside


NUDGES = 60  # seconds of asking again while a stopped pod has not ended


def pod_init(poddir: Path, unit: str) -> int | None:
    """The PID of the pod's init, if it is still the one in ``unit``'s cgroup (never signal a
    PID that was reused meanwhile)."""
    from .info import pod_pid

    pid = pod_pid(poddir)
    if pid is None:
        return None
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    return pid if f"/{unit}/" in cgroup else None


class _Stopper:
    """SIGINT/SIGTERM/SIGHUP end a waiting ``rkt run``, stopping its pod: the first stops the
    pod's unit (the pod shuts down cleanly), the second kills it (SIGKILL), the third stops
    waiting for it. A signal that comes before the unit exists takes effect once it does."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, sd: Systemd, unit: str, poddir: Path) -> None:
        self.sd, self.unit, self.poddir = sd, unit, poddir
        self.count = 0
        self.started = False
        loop = asyncio.get_running_loop()
        self.given_up: asyncio.Future[None] = loop.create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        for s in self.SIGNALS:
            loop.add_signal_handler(s, self._on_signal)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for s in self.SIGNALS:
            loop.remove_signal_handler(s)

    def unit_started(self) -> None:
        self.started = True
        if self.count:
            self._act(1)

    def _on_signal(self) -> None:
        self.count += 1
        if self.count >= 3:
            if not self.given_up.done():
                self.given_up.set_result(None)
        elif self.started:
            self._act(self.count)

    def _act(self, n: int) -> None:
        aw = (self._stop() if n == 1 else self.sd.kill_unit(self.unit, "all", signal.SIGKILL))
        task = asyncio.get_running_loop().create_task(_quiet(aw))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop(self) -> None:
        """Stop the unit; while it has not ended, ask the pod's init to halt again each second.
        nspawn passes the stop on as SIGRTMIN+3 to the pod's init, and one that comes while
        the pod boots, before init handles that signal, is dropped by the kernel: the unit
        then sat in stop-sigterm until systemd's 90 s stop timeout. (A second SIGTERM to nspawn
        would kill the pod outright: its apps would not be stopped and recorded.)"""
        await self.sd.stop_unit(self.unit)
        for _ in range(NUDGES):
            await asyncio.sleep(1.0)
            if self.count > 1:
                return  # killed meanwhile
            st = await self.sd.status(self.unit)
            if st is None or st.ended:
                return
            pid = pod_init(self.poddir, self.unit)
            if pid is not None:
                log.debug("%s still %s: halt request to its init again", self.unit,
                          st.sub_state)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGRTMIN + 3)

    async def until_given_up(self, aw: Awaitable[T]) -> T:
        """``aw``'s result, unless a third signal came first (then PodError)."""
        task = asyncio.ensure_future(aw)
        waits: set[asyncio.Future[Any]] = {task, self.given_up}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        raise PodError(f"stopped waiting for {self.unit}, which is still stopping",
                       hint=f"see `systemctl status {self.unit}`")


async def _start_pod_unit(sd: Systemd, launch: Launch, fds: Sequence[int], *,
                          foreground: bool) -> str:
    """Start ``rkt-<uuid>.service``; returns the start job. Foreground: our stdio, kept loaded
    (AddRef) so its exit status can be read, Type=exec. Detached: its own stdio (the
    journal), Type=notify."""
    from ..systemd.bus import Prop

    props = [Prop(n, s, v) for n, s, v in
             unit_properties(launch, description=f"rkt pod {launch.uuid}", add_ref=foreground,
                             pass_stdio=foreground, notify=not foreground)]
    return await sd.start_transient(unit_name(launch.uuid), props, fds)


def pod_status(poddir: Path, unit_status: UnitStatus | None, unit: str) -> int:
    """The exit status of a foreground pod. Its unit's main process (nspawn) ends with the
    status the pod's reapers chose; a pod that was shut down from outside (``rkt stop``,
    ``machinectl poweroff``, a signal to ``rkt run``) ends 0 even though its apps were killed,
    so then the apps' recorded statuses decide (rkt: the first failing app's). A unit that is
    gone (its reference lost) leaves only those records."""
    from ..common.podstatus import app_statuses

    apps = app_statuses(poddir)
    first_failure = next((c for c in apps.values() if c), 0) if apps else 0
    unfinished = not apps or None in apps.values()
    if unit_status is None:
        if unfinished:
            raise SystemdError(f"unit {unit} disappeared before the pod's apps ended",
                               hint=f"see `journalctl -u {unit}`")
        return first_failure or 0
    code = unit_status.exit_status
    if code:
        return code
    # a pod that ended cleanly before an app had finished was stopped (terminated) early
    return first_failure or (TERMINATED if unfinished else 0)


async def _run_unit(launch: Launch, lock_fd: int, fds: Sequence[int]) -> int:
    from ..systemd.bus import Systemd

    unit = unit_name(launch.uuid)
    sd = await Systemd.connect()
    stopper = _Stopper(sd, unit, launch.poddir)
    try:
        job = await _start_pod_unit(sd, launch, fds, foreground=True)
        stopper.unit_started()
        loop = asyncio.get_running_loop()
        if launch.interactive and os.isatty(0):
            # nspawn has no controlling terminal in the unit: pass window size changes on
            loop.add_signal_handler(signal.SIGWINCH, lambda: loop.create_task(
                _quiet(sd.kill_unit(unit, "main", signal.SIGWINCH))))
        result = await stopper.until_given_up(sd.wait_job(job))
        # "unknown": the job vanished unseen (systemd re-executed); the unit's state tells.
        # "canceled" after a signal: our own stop replaced the start.
        if result not in ("done", "failed", "unknown") and not stopper.count:
            raise SystemdError(f"starting {unit} ended with result '{result}'",
                               hint=f"see `journalctl -u {unit}`")
        st = await stopper.until_given_up(sd.wait_inactive(unit))
        os.close(lock_fd)  # held until the end: stage1 takes its own shared lock meanwhile
        log.debug("unit %s ended: %s", unit, st)
        return pod_status(launch.poddir, st, unit)
    finally:
        stopper.remove()
        sd.close()


async def _start_detached(launch: Launch, lock_fd: int) -> str:
    from ..systemd.bus import Systemd

    unit = unit_name(launch.uuid)
    sd = await Systemd.connect()
    stopper = _Stopper(sd, unit, launch.poddir)
    try:
        job = await _start_pod_unit(sd, launch, (), foreground=False)
        # interrupted while waiting: do not leave a half-started pod behind
        stopper.unit_started()
        result = await stopper.until_given_up(sd.wait_job(job))
        if stopper.count:
            await stopper.until_given_up(sd.wait_inactive(unit))
            return "canceled"
        if result == "unknown":  # the job vanished unseen (systemd re-executed)
            st = await sd.status(unit)
            result = "done" if st is not None and st.active_state == "active" else "failed"
        return result
    finally:
        os.close(lock_fd)  # stage1 holds its own shared lock from its first moment
        stopper.remove()
        sd.close()


def run_detached(launch: Launch, lock_fd: int) -> str:
    """Start the pod as ``rkt-<uuid>.service`` (``Type=notify``: the start job is done once
    the pod's apps are up) and return the job result; the pod outlives this process and its
    console goes to the unit's journal."""
    return asyncio.run(_start_detached(launch, lock_fd))


async def _quiet(aw: Awaitable[object]) -> None:
    try:
        await aw
    except Exception as e:  # a failed stop/kill is retried by the next signal
        log.debug("%s", e)


def run_in_unit(launch: Launch, lock_fd: int) -> int:
    """Foreground run. With --interactive on a terminal, nspawn switches the caller's terminal
    to raw mode; its settings are put back afterwards even if nspawn was killed."""
    saved = None
    if launch.interactive and os.isatty(0):
        with contextlib.suppress(termios.error):
            saved = termios.tcgetattr(0)
    try:
        return asyncio.run(_run_unit(launch, lock_fd, (0, 1, 2)))
    finally:
        if saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
