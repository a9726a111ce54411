"""A small systemd1 client on dbus-next's low-level API (the only dbus-next user).

Race-free by construction (issue 9):

* every ``JobRemoved`` is recorded from the moment we subscribe, so a job's result is known
  even when its signal arrives in the same read as the reply that named the job (house
  rule 5: subscribe first, then start or stop);
* waits never rely on a signal alone: a missed wake-up is covered by polling the state;
* only a definite answer (``NoSuchUnit``, an unknown object, ``LoadState=not-found``) means a
  unit is gone. Other failures — systemd away during ``daemon-reexec``, the bus connection
  lost, a call timing out — are retried, after reconnecting and subscribing again, until a
  deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _without_glib() -> None:
    """dbus-next imports its GLib backend with the package and gives it up if ``gi`` is
    missing. Where PyGObject is installed (Debian often has it) that import costs ~8 ms and
    loads GLib at every rkt start for a backend we never use: make ``gi`` read as missing
    unless something already imported it."""
    import sys

    if "gi" not in sys.modules:
        sys.modules["gi"] = None  # type: ignore[assignment]  # import gi -> ImportError


_without_glib()

from dbus_next.aio.message_bus import MessageBus  # noqa: E402
from dbus_next.constants import BusType, MessageType  # noqa: E402
from dbus_next.message import Message  # noqa: E402
from dbus_next.signature import Variant  # noqa: E402

from ..errors import SystemdError  # noqa: E402

log = logging.getLogger("rktd_less.systemd")

SD = "org.freedesktop.systemd1"
SD_PATH = "/org/freedesktop/systemd1"
SD_MGR = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SVC_IFACE = "org.freedesktop.systemd1.Service"
JOB_IFACE = "org.freedesktop.systemd1.Job"
PROPS = "org.freedesktop.DBus.Properties"
DBUS = "org.freedesktop.DBus"

# Answers that say for certain that a unit or job does not exist (any other failure may pass).
GONE = frozenset({"org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.systemd1.NoSuchJob",
                  "org.freedesktop.DBus.Error.UnknownObject"})
CALL_TIMEOUT = 25.0  # s, D-Bus's own default method call timeout
RETRY_FOR = 120.0  # s: how long systemd may be away (daemon-reexec takes a second or two)
POLL = 0.2  # s between state polls when no signal came
JOBS_KEPT = 4096  # recorded JobRemoved results (a short-lived client sees few)


def available() -> bool:
    """systemd is PID 1 and its system bus socket is there."""
    return os.path.isdir("/run/systemd/system") and os.path.exists(
        "/run/dbus/system_bus_socket")


class BusCallError(SystemdError):
    """A D-Bus call failed; ``name`` is the D-Bus error name ('' when there was no answer)."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name

    @property
    def definite_gone(self) -> bool:
        return self.name in GONE


@dataclass(frozen=True)
class Prop:
    name: str
    signature: str
    value: Any


def exec_command(argv: Sequence[str], *, ignore_failure: bool = False) -> list[object]:
    """A unit's ``ExecStart=``/``ExecStop*=`` value (``a(sasb)``) running ``argv`` as given:
    systemd expands ``$VAR`` in the arguments however they were set, so ``$`` is doubled."""
    return [[argv[0], [a.replace("$", "$$") for a in argv], ignore_failure]]


# A transient unit's stdio are the caller's: the values index the message's unix_fds (0, 1, 2
# passed), not fd numbers.
STDIO_FROM_CALLER: tuple[tuple[str, str, int], ...] = (
    ("StandardInputFileDescriptor", "h", 0), ("StandardOutputFileDescriptor", "h", 1),
    ("StandardErrorFileDescriptor", "h", 2))


@dataclass(frozen=True)
class UnitStatus:
    active_state: str
    sub_state: str
    result: str
    exec_main_code: int  # 1 exited, 2 killed, 3 dumped (CLD_*)
    exec_main_status: int
    main_pid: int

    @property
    def ended(self) -> bool:
        """Inactive or failed, and systemd has reaped the main process (ExecMainCode stays 0
        until then; a unit whose main process never ran has MainPID 0)."""
        return self.active_state in ("inactive", "failed") and (
            self.exec_main_code != 0 or self.main_pid == 0)

    @property
    def exit_status(self) -> int:
        """The main process's status as a shell reports it: its exit code, or 128 + the
        signal that killed it (CLD_EXITED is 1)."""
        return self.exec_main_status if self.exec_main_code == 1 else 128 + self.exec_main_status


class Systemd:
    """One client connection to systemd's manager. ``retry_for``: how long calls are retried
    while systemd or the bus is away."""

    def __init__(self, bus: MessageBus, retry_for: float = RETRY_FOR) -> None:
        self.bus = bus
        self.retry_for = retry_for
        self._finished: OrderedDict[str, str] = OrderedDict()  # job path → result
        self._job_waiters: dict[str, asyncio.Future[str]] = {}
        self._wake: dict[str, asyncio.Event] = {}  # unit path → set on PropertiesChanged
        self._matches: list[str] = []
        self._refs: set[str] = set()  # units we keep loaded (Ref) — renewed after a restart
        self._tasks: set[asyncio.Task[None]] = set()
        self._recovering = asyncio.Lock()  # one reconnect at a time, however many calls failed
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(cls, retry_for: float = RETRY_FOR) -> Systemd:
        sd = cls(await _open_bus(), retry_for)
        await sd._add_matches()
        deadline = time.monotonic() + retry_for
        while True:
            try:
                await sd._subscribe()
                return sd
            except BusCallError as e:
                if not _transient(e) or time.monotonic() > deadline:
                    sd.close()
                    raise SystemdError(f"cannot subscribe to systemd: {e.message}") from e
            await asyncio.sleep(0.2)
            await sd._recover()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bus.disconnect()  # type: ignore[no-untyped-call]

    # --- signals -------------------------------------------------------------
    def _on_message(self, msg: Message) -> bool:
        if msg.message_type != MessageType.SIGNAL:
            return False
        if msg.member == "JobRemoved" and msg.interface == SD_MGR:
            _id, job, _unit, result = msg.body
            self._record_job(str(job), str(result))
        elif msg.member == "PropertiesChanged" and msg.path in self._wake:
            self._wake[msg.path].set()
        elif msg.member == "NameOwnerChanged" and msg.interface == DBUS and msg.body[0] == SD:
            log.debug("systemd's bus name changed owner: %r -> %r", msg.body[1], msg.body[2])
            if msg.body[2]:  # systemd is back (re-executed): subscribe again, renew our refs
                task = asyncio.get_running_loop().create_task(self._recover())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            for ev in self._wake.values():
                ev.set()
        return False

    def _record_job(self, job: str, result: str) -> None:
        self._finished[job] = result
        while len(self._finished) > JOBS_KEPT:
            self._finished.popitem(last=False)
        fut = self._job_waiters.pop(job, None)
        if fut is not None and not fut.done():
            fut.set_result(result)

    async def _add_matches(self) -> None:
        """Our match rules (kept by the bus daemon for this connection), before Subscribe so
        that nothing systemd emits after it is missed."""
        for rule in (f"type='signal',interface='{SD_MGR}',member='JobRemoved'",
                     f"type='signal',sender='{DBUS}',interface='{DBUS}',"
                     f"member='NameOwnerChanged',arg0='{SD}'",
                     *self._matches):
            await self._match_call("AddMatch", rule)

    async def _subscribe(self) -> None:
        try:
            await self._raw_call(SD, SD_PATH, SD_MGR, "Subscribe", "", [])
        except BusCallError as e:
            if not e.name.endswith(".AlreadySubscribed"):
                raise

    async def _match_call(self, member: str, rule: str) -> None:
        """AddMatch/RemoveMatch at the bus daemon."""
        await self._raw_call(DBUS, "/org/freedesktop/DBus", DBUS, member, "s", [rule])

    async def _add_match(self, rule: str) -> None:
        self._matches.append(rule)
        await self._match_call("AddMatch", rule)

    async def _remove_match(self, rule: str) -> None:
        with contextlib.suppress(ValueError):
            self._matches.remove(rule)
        with contextlib.suppress(BusCallError):
            await self._match_call("RemoveMatch", rule)

    # --- calls ---------------------------------------------------------------
    async def _raw_call(self, dest: str, path: str, iface: str, member: str, sig: str,
                        body: list[Any], unix_fds: Sequence[int] = ()) -> list[Any]:
        """One call, no retries. BusCallError names the D-Bus error ('' if none came)."""
        if not self.bus.connected:
            raise BusCallError(f"{member}: not connected to the system bus")
        msg = Message(destination=dest, path=path, interface=iface, member=member,
                      signature=sig, body=body, unix_fds=list(unix_fds))
        try:
            reply = await asyncio.wait_for(self.bus.call(msg), CALL_TIMEOUT)
        except TimeoutError:
            raise BusCallError(f"{member}: no reply within {CALL_TIMEOUT:.0f} s") from None
        except Exception as e:  # dbus-next raises plain Exceptions when the connection breaks
            raise BusCallError(f"{member}: {e or type(e).__name__}") from e
        if reply is None:
            raise BusCallError(f"{member}: no reply")
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else reply.error_name
            raise BusCallError(f"{member}: {detail}", name=reply.error_name or "")
        return list(reply.body)

    async def _call(self, dest: str, path: str, iface: str, member: str, sig: str,
                    body: list[Any], unix_fds: Sequence[int] = (), *,
                    retry: bool = True) -> list[Any]:
        """A call that outlasts systemd re-executing and the bus connection breaking: other
        failures than a definite answer are retried until ``retry_for`` has passed."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            try:
                return await self._raw_call(dest, path, iface, member, sig, body, unix_fds)
            except BusCallError as e:
                if not retry or not _transient(e) or time.monotonic() + delay > deadline:
                    raise
                log.debug("%s failed (%s): retrying in %.2f s", member, e.message, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            await self._recover()

    async def _recover(self) -> None:
        """After a failed call: reconnect if the connection broke, then subscribe again and
        renew our unit references (neither is certain to survive systemd re-executing)."""
        async with self._recovering:
            try:
                if not self.bus.connected:
                    log.debug("reconnecting to the system bus")
                    old, self.bus = self.bus, await _open_bus()
                    with contextlib.suppress(Exception):
                        old.disconnect()  # type: ignore[no-untyped-call]
                    self.bus.add_message_handler(self._on_message)
                    await self._add_matches()
                await self._subscribe()
                for path in self._refs:
                    with contextlib.suppress(BusCallError):
                        await self._raw_call(SD, path, UNIT_IFACE, "Ref", "", [])
            except (BusCallError, SystemdError) as e:
                log.debug("not recovered yet: %s", e.message)

    async def _get(self, path: str, iface: str, name: str) -> Any:
        (v,) = await self._call(SD, path, PROPS, "Get", "ss", [iface, name])
        return v.value

    # --- jobs ----------------------------------------------------------------
    async def wait_job(self, job: str) -> str:
        """The result of ``job`` ("done", "failed", "canceled", …). A job that vanished
        without our seeing its JobRemoved (systemd re-executed meanwhile) gives "unknown":
        the caller then reads the unit's state."""
        while True:
            if job in self._finished:
                return self._finished[job]
            fut = self._job_waiters.get(job)
            if fut is None or fut.done():
                fut = self._job_waiters[job] = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(fut), timeout=1.0)
            try:
                await self._call(SD, job, PROPS, "Get", "ss", [JOB_IFACE, "State"])
            except BusCallError as e:
                if not e.definite_gone:
                    raise
                # Its JobRemoved, if sent, came before this reply on the same connection.
                return self._finished.get(job, "unknown")

    async def start_transient(self, unit: str, props: Sequence[Prop],
                              fds: Sequence[int] = ()) -> str:
        """Start a transient unit; returns the start job's path (see :meth:`wait_job`).
        Not retried: a second start of the same unit would fail as already existing."""
        body = [unit, "fail", [[p.name, Variant(p.signature, p.value)] for p in props], []]
        try:
            (job,) = await self._call(SD, SD_PATH, SD_MGR, "StartTransientUnit",
                                      "ssa(sv)a(sa(sv))", body, fds, retry=False)
        except SystemdError as e:
            raise SystemdError(f"cannot start {unit}: {e.message.split(': ', 1)[-1]}") from e
        if any(p.name == "AddRef" and p.value for p in props):
            # remembered so that the reference can be renewed if systemd loses it
            path = await self.unit_path(unit)
            if path is not None:
                self._refs.add(path)
        return str(job)

    async def stop_unit(self, unit: str) -> str:
        """Queue a stop of ``unit``; returns the job's path."""
        (job,) = await self._call(SD, SD_PATH, SD_MGR, "StopUnit", "ss", [unit, "replace"])
        return str(job)

    async def kill_unit(self, unit: str, who: str, signo: int) -> None:
        """KillUnit: ``who`` is main, control or all."""
        await self._call(SD, SD_PATH, SD_MGR, "KillUnit", "ssi", [unit, who, signo])

    # --- units ---------------------------------------------------------------
    async def unit_path(self, unit: str) -> str | None:
        """The unit's object path; None only if systemd says it has no such unit."""
        try:
            (path,) = await self._call(SD, SD_PATH, SD_MGR, "GetUnit", "s", [unit])
        except BusCallError as e:
            if e.definite_gone:
                return None
            raise
        return str(path)

    async def status(self, unit: str) -> UnitStatus | None:
        """The unit's state; None only when systemd says for certain it is gone."""
        path = await self.unit_path(unit)
        if path is None:
            return None
        # Unit first: once it says inactive, the Service's exit status read after it is final.
        # Single Gets: GetAll returns some 250 properties, and unmarshalling them in pure Python
        # cost more than the round trips. Each group is sent at once (replies come in order).
        try:
            load, active, sub = await asyncio.gather(
                *(self._get(path, UNIT_IFACE, n) for n in ("LoadState", "ActiveState",
                                                            "SubState")))
            if load == "not-found":  # unloaded meanwhile; the path loaded a stub
                return None
            result, code, status, pid = await asyncio.gather(
                *(self._get(path, SVC_IFACE, n)
                  for n in ("Result", "ExecMainCode", "ExecMainStatus", "MainPID")))
        except BusCallError as e:
            if e.definite_gone:
                return None
            raise
        return UnitStatus(active_state=active, sub_state=sub, result=result,
                          exec_main_code=code, exec_main_status=status, main_pid=pid)

    async def wait_inactive(self, unit: str) -> UnitStatus | None:
        """Wait until the unit is inactive or failed (it must be kept loaded, e.g. AddRef);
        None when it is definitely gone. Woken by PropertiesChanged, polled all the same."""
        path = await self.unit_path(unit)
        if path is None:
            return None
        ev = self._wake[path] = asyncio.Event()
        rule = f"type='signal',interface='{PROPS}',member='PropertiesChanged',path='{path}'"
        await self._add_match(rule)
        try:
            while True:
                ev.clear()  # before the query: a change signalled during it is not lost
                st = await self.status(unit)
                if st is None or st.ended:
                    return st
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), timeout=POLL)
        finally:
            self._wake.pop(path, None)
            await self._remove_match(rule)

    async def unit_of_pid(self, pid: int) -> tuple[str, int] | None:
        """(unit name, its MainPID) for the unit a process belongs to."""
        try:
            (path,) = await self._call(SD, SD_PATH, SD_MGR, "GetUnitByPID", "u", [pid])
        except SystemdError:
            return None
        name = await self._get(path, UNIT_IFACE, "Id")
        try:
            main = await self._get(path, SVC_IFACE, "MainPID")
        except SystemdError:
            main = 0
        return str(name), int(main)


def _transient(e: BusCallError) -> bool:
    """Failures that may pass: no answer, systemd not on the bus (re-executing), a broken
    connection. A definite error reply from systemd itself is final."""
    return e.name in ("", "org.freedesktop.DBus.Error.ServiceUnknown",
                      "org.freedesktop.DBus.Error.NameHasNoOwner",
                      "org.freedesktop.DBus.Error.NoReply",
                      "org.freedesktop.DBus.Error.Disconnected",
                      "org.freedesktop.DBus.Error.Timeout",
                      "org.freedesktop.DBus.Error.TimedOut")


async def _open_bus() -> MessageBus:
    try:
        bus = await MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
    except Exception as e:  # dbus-next raises plain Exceptions on auth errors
        raise SystemdError(f"cannot connect to the system bus: {e}") from e
    return bus
