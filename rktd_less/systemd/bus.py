"""A small systemd1/machine1 client on dbus-next's low-level API (the only dbus-next user).

House rule 5: subscribe to ``JobRemoved`` before starting or stopping a unit; a job result
other than ``done`` is an error naming the unit and the ``journalctl -u`` to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import BusType, MessageType
from dbus_next.message import Message
from dbus_next.signature import Variant

from ..errors import SystemdError

SD = "org.freedesktop.systemd1"
SD_PATH = "/org/freedesktop/systemd1"
SD_MGR = "org.freedesktop.systemd1.Manager"
PROPS = "org.freedesktop.DBus.Properties"
MACHINE = "org.freedesktop.machine1"
MACHINE_PATH = "/org/freedesktop/machine1"
MACHINE_MGR = "org.freedesktop.machine1.Manager"


def available() -> bool:
    """systemd is PID 1 and its system bus socket is there."""
    return os.path.isdir("/run/systemd/system") and os.path.exists(
        "/run/dbus/system_bus_socket")


@dataclass(frozen=True)
class Prop:
    name: str
    signature: str
    value: Any


@dataclass(frozen=True)
class UnitStatus:
    active_state: str
    sub_state: str
    result: str
    exec_main_code: int  # 1 exited, 2 killed, 3 dumped (CLD_*)
    exec_main_status: int
    main_pid: int


class Systemd:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._prop_events: dict[str, asyncio.Event] = {}
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(cls) -> Systemd:
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
        except (OSError, Exception) as e:  # dbus-next raises plain Exceptions on auth errors
            raise SystemdError(f"cannot connect to the system bus: {e}") from e
        sd = cls(bus)
        await sd._add_match("type='signal',interface='org.freedesktop.systemd1.Manager',"
                            "member='JobRemoved'")
        await sd._call(SD, SD_PATH, SD_MGR, "Subscribe", "", [])
        return sd

    def close(self) -> None:
        self.bus.disconnect()  # type: ignore[no-untyped-call]

    # --- plumbing ------------------------------------------------------------
    def _on_message(self, msg: Message) -> bool:
        if msg.message_type != MessageType.SIGNAL:
            return False
        if msg.member == "JobRemoved" and msg.interface == SD_MGR:
            _id, job, _unit, result = msg.body
            fut = self._jobs.pop(job, None)
            if fut is not None and not fut.done():
                fut.set_result(result)
        elif msg.member == "PropertiesChanged" and msg.path in self._prop_events:
            self._prop_events[msg.path].set()
        return False

    async def _add_match(self, rule: str) -> None:
        await self._call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                         "AddMatch", "s", [rule])

    async def _call(self, dest: str, path: str, iface: str, member: str, sig: str,
                    body: list[Any], unix_fds: Sequence[int] = ()) -> list[Any]:
        reply = await self.bus.call(Message(destination=dest, path=path, interface=iface,
                                            member=member, signature=sig, body=body,
                                            unix_fds=list(unix_fds)))
        if reply is None:
            raise SystemdError(f"no reply to {member}")
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else reply.error_name
            raise SystemdError(f"{member}: {detail}", hint=None)
        return list(reply.body)

    async def _get(self, path: str, iface: str, name: str) -> Any:
        (v,) = await self._call(SD, path, PROPS, "Get", "ss", [iface, name])
        return v.value

    # --- units ---------------------------------------------------------------
    async def start_transient(self, unit: str, props: Sequence[Prop],
                              fds: Sequence[int] = ()) -> asyncio.Future[str]:
        """Start a transient unit; returns a future with the start job's result."""
        body = [unit, "fail", [[p.name, Variant(p.signature, p.value)] for p in props], []]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        try:
            (job,) = await self._call(SD, SD_PATH, SD_MGR, "StartTransientUnit",
                                      "ssa(sv)a(sa(sv))", body, fds)
        except SystemdError as e:
            raise SystemdError(f"cannot start {unit}: {e.message.split(': ', 1)[-1]}") from e
        self._jobs[job] = fut
        return fut

    async def unit_path(self, unit: str) -> str | None:
        try:
            (path,) = await self._call(SD, SD_PATH, SD_MGR, "GetUnit", "s", [unit])
        except SystemdError:
            return None
        return str(path)

    async def status(self, unit: str) -> UnitStatus | None:
        path = await self.unit_path(unit)
        if path is None:
            return None
        # Unit first: once it says inactive, the Service's exit status read after it is final.
        # Single Gets: GetAll returns some 250 properties, and unmarshalling them in pure Python
        # cost more than the round trips.
        unit_iface, svc_iface = "org.freedesktop.systemd1.Unit", "org.freedesktop.systemd1.Service"
        # Each group is sent at once (replies come in order on the one connection).
        active, sub = await asyncio.gather(self._get(path, unit_iface, "ActiveState"),
                                           self._get(path, unit_iface, "SubState"))
        result, code, status, pid = await asyncio.gather(
            *(self._get(path, svc_iface, n)
              for n in ("Result", "ExecMainCode", "ExecMainStatus", "MainPID")))
        return UnitStatus(active_state=active, sub_state=sub, result=result,
                          exec_main_code=code, exec_main_status=status, main_pid=pid)

    async def wait_inactive(self, unit: str) -> UnitStatus | None:
        """Wait until the unit is inactive or failed (it must be kept loaded, e.g. AddRef)."""
        path = await self.unit_path(unit)
        if path is None:
            return None
        ev = asyncio.Event()
        self._prop_events[path] = ev
        await self._add_match(f"type='signal',interface='{PROPS}',member='PropertiesChanged',"
                              f"path='{path}'")
        try:
            while True:
                ev.clear()  # before the query: a change signalled during it is not lost
                st = await self.status(unit)
                if st is None:
                    return None
                # ExecMainCode stays 0 until systemd has reaped the main process.
                if st.active_state in ("inactive", "failed") and (
                        st.exec_main_code != 0 or st.main_pid == 0):
                    return st
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), timeout=0.2)
        finally:
            self._prop_events.pop(path, None)

    async def stop_unit(self, unit: str) -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        (job,) = await self._call(SD, SD_PATH, SD_MGR, "StopUnit", "ss", [unit, "replace"])
        self._jobs[job] = fut
        return await fut

    async def kill_unit(self, unit: str, who: str, signo: int) -> None:
        """KillUnit: ``who`` is main, control or all."""
        await self._call(SD, SD_PATH, SD_MGR, "KillUnit", "ssi", [unit, who, signo])

    async def unit_of_pid(self, pid: int) -> tuple[str, int] | None:
        """(unit name, its MainPID) for the unit a process belongs to."""
        try:
            (path,) = await self._call(SD, SD_PATH, SD_MGR, "GetUnitByPID", "u", [pid])
        except SystemdError:
            return None
        name = await self._get(path, "org.freedesktop.systemd1.Unit", "Id")
        try:
            main = await self._get(path, "org.freedesktop.systemd1.Service", "MainPID")
        except SystemdError:
            main = 0
        return str(name), int(main)
