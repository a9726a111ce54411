"""The systemd client's waits are race-free (issue 9), against a scripted stand-in for the bus:
signals delivered in the same read as a reply, jobs that vanish unseen, systemd away while it
re-executes, and only definite answers taken as "gone". (Real systemd: tests/integration.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from rktd_less.errors import SystemdError
from rktd_less.systemd import bus as sdbus

MT = sdbus.MessageType
JOB = "/org/freedesktop/systemd1/job/42"
UNIT_PATH = "/org/freedesktop/systemd1/unit/rkt_2dx_2eservice"


def reply(*body: Any) -> SimpleNamespace:
    return SimpleNamespace(message_type=MT.METHOD_RETURN, body=list(body), error_name=None)


def error(name: str, text: str = "failed") -> SimpleNamespace:
    return SimpleNamespace(message_type=MT.ERROR, body=[text], error_name=name)


def signal(member: str, body: list[Any], iface: str = sdbus.SD_MGR,
           path: str = sdbus.SD_PATH) -> SimpleNamespace:
    return SimpleNamespace(message_type=MT.SIGNAL, member=member, interface=iface, path=path,
                           body=body)


class FakeBus:
    """Answers each call with ``answer(bus, msg)``, which may first deliver signals — as
    dbus-next does when a signal and the reply arrive in one read: the message handlers run
    for the signal before the caller's await of the reply resumes."""

    def __init__(self, answer: Callable[[FakeBus, Any], Any]) -> None:
        self.answer = answer
        self.handlers: list[Callable[[Any], bool]] = []
        self.calls: list[str] = []
        self.connected = True

    def add_message_handler(self, h: Callable[[Any], bool]) -> None:
        self.handlers.append(h)

    def deliver(self, msg: Any) -> None:
        for h in self.handlers:
            h(msg)

    def disconnect(self) -> None:
        self.connected = False

    async def call(self, msg: Any) -> Any:
        self.calls.append(msg.member if msg.member != "Get" else f"Get:{msg.body[1]}")
        return self.answer(self, msg)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def client(answer: Callable[[FakeBus, Any], Any], retry_for: float = 5.0
           ) -> tuple[sdbus.Systemd, FakeBus]:
    fb = FakeBus(answer)
    return sdbus.Systemd(fb, retry_for=retry_for), fb  # type: ignore[arg-type]


def test_job_removed_in_the_same_read_as_the_start_reply_is_not_lost() -> None:
    def answer(fb: FakeBus, msg: Any) -> Any:
        if msg.member == "StartTransientUnit":
            fb.deliver(signal("JobRemoved", [42, JOB, "rkt-x.service", "done"]))
            return reply(JOB)
        raise AssertionError(f"unexpected call {msg.member}")

    async def go() -> str:
        sd, _ = client(answer)
        job = await sd.start_transient("rkt-x.service", [])
        return await asyncio.wait_for(sd.wait_job(job), 2)

    assert run(go()) == "done"  # before the fix: waited forever


def test_a_job_that_vanished_unseen_reads_as_unknown() -> None:
    def answer(fb: FakeBus, msg: Any) -> Any:
        if msg.member == "Get":  # the job object is gone, its signal was never seen
            return error("org.freedesktop.DBus.Error.UnknownObject")
        return reply(JOB)

    async def go() -> str:
        sd, _ = client(answer)
        return await asyncio.wait_for(sd.wait_job(JOB), 5)

    assert run(go()) == "unknown"


def _status_answer(states: dict[str, Any]) -> Callable[[FakeBus, Any], Any]:
    def answer(fb: FakeBus, msg: Any) -> Any:
        if msg.member == "GetUnit":
            return reply(UNIT_PATH)
        if msg.member == "Get":
            return reply(SimpleNamespace(value=states[msg.body[1]]))
        return reply()
    return answer


ENDED = {"LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead",
         "Result": "success", "ExecMainCode": 1, "ExecMainStatus": 7, "MainPID": 0}


def test_systemd_away_while_re_executing_is_waited_out_and_resubscribed() -> None:
    away = {"n": 3}
    ok = _status_answer(ENDED)

    def answer(fb: FakeBus, msg: Any) -> Any:
        if msg.member == "GetUnit" and away["n"]:
            away["n"] -= 1
            return error("org.freedesktop.DBus.Error.ServiceUnknown",
                         "The name org.freedesktop.systemd1 was not provided")
        return ok(fb, msg)

    async def go() -> sdbus.UnitStatus | None:
        sd, fb = client(answer)
        st = await sd.status("rkt-x.service")
        assert fb.calls.count("Subscribe") >= 1  # subscribed again after systemd came back
        return st

    st = run(go())
    assert st is not None and st.exec_main_status == 7 and st.ended


def test_only_a_definite_answer_means_gone() -> None:
    async def status(answer: Callable[[FakeBus, Any], Any]) -> sdbus.UnitStatus | None:
        sd, _ = client(answer, retry_for=0.3)
        return await sd.status("rkt-x.service")

    assert run(status(lambda fb, m: error("org.freedesktop.systemd1.NoSuchUnit"))) is None
    not_found = dict(ENDED, LoadState="not-found")
    assert run(status(_status_answer(not_found))) is None  # unloaded between GetUnit and Get
    with pytest.raises(SystemdError):  # no answer at all: an error, never "gone"
        run(status(lambda fb, m: error("org.freedesktop.DBus.Error.NoReply")))
    with pytest.raises(SystemdError):  # a broken connection that does not come back
        run(status(lambda fb, m: (_ for _ in ()).throw(EOFError("connection lost"))))


def test_wait_inactive_polls_when_no_signal_comes() -> None:
    states = dict(ENDED, ActiveState="active", ExecMainCode=0, MainPID=10)
    answer = _status_answer(states)
    polls = {"n": 0}

    def counting(fb: FakeBus, msg: Any) -> Any:
        if msg.member == "Get" and msg.body[1] == "ActiveState":
            polls["n"] += 1
            if polls["n"] == 3:  # the unit ends, and no PropertiesChanged arrives
                states.update(ENDED)
        return answer(fb, msg)

    async def go() -> sdbus.UnitStatus | None:
        sd, _ = client(counting)
        return await asyncio.wait_for(sd.wait_inactive("rkt-x.service"), 5)

    st = run(go())
    assert st is not None and st.exec_main_status == 7 and polls["n"] == 3


def test_a_lost_connection_is_reopened_and_matches_and_subscription_renewed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ok = _status_answer(ENDED)
    fresh = FakeBus(ok)

    async def reopen() -> FakeBus:
        return fresh

    monkeypatch.setattr(sdbus, "_open_bus", reopen)

    def broken(fb: FakeBus, msg: Any) -> Any:
        fb.connected = False  # the bus daemon went away mid-call
        raise EOFError("connection closed")

    async def go() -> sdbus.UnitStatus | None:
        sd, _ = client(broken)
        st = await sd.status("rkt-x.service")
        assert sd.bus is fresh  # type: ignore[comparison-overlap]
        assert fresh.handlers, "signals of the new connection are handled"
        assert "AddMatch" in fresh.calls and "Subscribe" in fresh.calls
        assert fresh.calls.index("AddMatch") < fresh.calls.index("Subscribe")
        return st

    st = run(go())
    assert st is not None and st.exec_main_status == 7


def test_exec_command_passes_arguments_as_given() -> None:
    """systemd expands $VAR in ExecStart= arguments however set (D-Bus too): "$" is doubled;
    the path is not an argument; % is not expanded over D-Bus and stays."""
    assert sdbus.exec_command(["/bin/sh", "-c", "echo $HOME ${X} $$ 5%"]) == [
        ["/bin/sh", ["/bin/sh", "-c", "echo $$HOME $${X} $$$$ 5%"], False]]
    assert sdbus.exec_command(["/p"], ignore_failure=True) == [["/p", ["/p"], True]]
