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
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SystemdError
from ..ids import unit_name

if TYPE_CHECKING:
    from ..systemd.bus import Systemd

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


def stage1_run_args(uuid: str, *, debug: bool, net: str, interactive: bool,
                    hostname: str | None) -> tuple[str, ...]:
    """rkt's stage0 → stage1 run arguments (reference §2.1), in rkt's order."""
    args = []
    if debug:
        args.append("--debug")
    args.append(f"--net={net}")
    if interactive:
        args.append("--interactive")
    if hostname:
        args.append(f"--hostname={hostname}")
    args.append(uuid)
    return tuple(args)


def unit_properties(launch: Launch, *, description: str, add_ref: bool,
                    pass_stdio: bool, notify: bool) -> list[tuple[str, str, object]]:
    """The transient unit of a pod (pure). (name, D-Bus signature, value).

    ``notify``: the unit becomes active when the pod's apps are up (nspawn forwards the
    nested systemd's READY=1). A foreground run waits for the end instead and uses
    ``Type=exec``: a pod that finishes before READY=1 would otherwise be a failed start."""
    argv = [str(launch.entrypoint), *launch.args]
    props: list[tuple[str, str, object]] = [
        ("Description", "s", description),
        ("Slice", "s", "machine.slice"),
        ("Delegate", "b", True),
        ("Type", "s", "notify" if notify else "exec"),
        ("NotifyAccess", "s", "all"),
        ("KillMode", "s", "mixed"),
        ("CollectMode", "s", "inactive-or-failed"),
        ("WorkingDirectory", "s", str(launch.poddir)),
        ("Environment", "as", ["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"]),
        ("ExecStart", "a(sasb)", [[argv[0], argv, False]]),
    ]
    if add_ref:
        props.append(("AddRef", "b", True))
    if pass_stdio:
        # Values are indexes into the message's unix_fds list, not fd numbers.
        props += [("StandardInputFileDescriptor", "h", 0),
                  ("StandardOutputFileDescriptor", "h", 1),
                  ("StandardErrorFileDescriptor", "h", 2)]
    return props


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
    extra = {"RKT_LOCK_FD": str(lock_fd)}
    if "NOTIFY_SOCKET" in os.environ:  # a Type=notify unit running rkt: nspawn tells it READY
        extra["NOTIFY_SOCKET"] = os.environ["NOTIFY_SOCKET"]
    env = proc.clean_env(extra)
    proc.exec_([str(launch.entrypoint), *launch.args], env)


def _exit_status(code: int, status: int) -> int:
    # CLD_EXITED = 1; killed or dumped → 128 + signal, as a shell reports it
    return status if code == 1 else 128 + status


def _stop_on_signals(sd: Systemd, unit: str) -> list[asyncio.Task[str]]:
    """SIGINT/SIGTERM/SIGHUP stop the pod's unit (once); the returned list holds that stop."""
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[str]] = []

    def on_signal() -> None:
        if not stopping:
            stopping.append(loop.create_task(sd.stop_unit(unit)))

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(s, on_signal)
    return stopping


async def _start_pod_unit(sd: Systemd, launch: Launch, fds: Sequence[int], *,
                          foreground: bool) -> asyncio.Future[str]:
    """Start ``rkt-<uuid>.service``. Foreground: our stdio, kept loaded (AddRef) so its exit
    status can be read, Type=exec. Detached: its own stdio (the journal), Type=notify."""
    from ..systemd.bus import Prop

    props = [Prop(n, s, v) for n, s, v in
             unit_properties(launch, description=f"rkt pod {launch.uuid}", add_ref=foreground,
                             pass_stdio=foreground, notify=not foreground)]
    return await sd.start_transient(unit_name(launch.uuid), props, fds)


async def _run_unit(launch: Launch, lock_fd: int, fds: Sequence[int]) -> int:
    from ..systemd.bus import Systemd

    unit = unit_name(launch.uuid)
    sd = await Systemd.connect()
    try:
        job = await _start_pod_unit(sd, launch, fds, foreground=True)
        loop = asyncio.get_running_loop()
        _stop_on_signals(sd, unit)
        if launch.interactive and os.isatty(0):
            # nspawn has no controlling terminal in the unit: pass window size changes on
            loop.add_signal_handler(signal.SIGWINCH, lambda: loop.create_task(
                _quiet(sd.kill_unit(unit, "main", signal.SIGWINCH))))
        result = await job
        if result not in ("done", "failed"):
            raise SystemdError(f"starting {unit} ended with result '{result}'",
                               hint=f"see `journalctl -u {unit}`")
        st = await sd.wait_inactive(unit)
        os.close(lock_fd)  # held until the end: stage1 takes its own shared lock meanwhile
        if st is None:
            raise SystemdError(f"unit {unit} disappeared",
                               hint=f"see `journalctl -u {unit}`")
        log.debug("unit %s ended: %s", unit, st)
        return _exit_status(st.exec_main_code, st.exec_main_status)
    finally:
        sd.close()


async def _start_detached(launch: Launch, lock_fd: int) -> str:
    from ..systemd.bus import Systemd

    unit = unit_name(launch.uuid)
    sd = await Systemd.connect()
    try:
        job = await _start_pod_unit(sd, launch, (), foreground=False)
        # interrupted while waiting: do not leave a half-started pod behind
        stopping = _stop_on_signals(sd, unit)
        result = await job
        if stopping:
            await stopping[0]
            return "canceled"
        return result
    finally:
        os.close(lock_fd)  # stage1 holds its own shared lock from its first moment
        sd.close()


def run_detached(launch: Launch, lock_fd: int) -> str:
    """Start the pod as ``rkt-<uuid>.service`` (``Type=notify``: the start job is done once
    the pod's apps are up) and return the job result; the pod outlives this process and its
    console goes to the unit's journal."""
    return asyncio.run(_start_detached(launch, lock_fd))


async def _quiet(aw: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await aw


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
