"""rkt status: key=value lines of one pod (rkt/status.go)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..common.podpaths import PodPaths
from ..common.podstatus import is_ready
from ..errors import PodError, UsageError
from ..pod import poddir
from ..pod.info import pod_info
from ..pod.poddir import PodRef
from ..pod.state import PodState, is_exited
from .context import Context
from .flags import Flag, Kind
from .list_ import to_json
from .output import dump_json, full_time

SHORT = "Check the status of a rkt pod"
USAGE = ("Usage:\n  rkt status [--wait[=DURATION]] [--wait-ready[=DURATION]] "
         "[--format=json|json-pretty] UUID")
FLAGS: dict[str, Flag] = {
    "wait": Flag(Kind.OPTSTR, "false", "wait for the pod to exit (true, false or a duration)"),
    "wait-ready": Flag(Kind.OPTSTR, "false", "wait until the pod is ready (true, false or a "
                       "duration)"),
    "format": Flag(Kind.STR, "", "choose the output format: json, json-pretty"),
    "uuid-file": Flag(Kind.STR, "", "read pod UUID from file instead of argument"),
}


def parse_duration(text: str) -> float:
    """Go durations: 300ms, 10s, 1.5h, 2h45m."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    t = text.strip()
    if t in ("0", ""):
        return 0.0
    total, num = 0.0, ""
    i = 0
    while i < len(t):
        c = t[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if t.startswith(u, i)),
                    None)
        if unit is None or not num:
            raise UsageError(f'invalid duration "{text}"', hint="e.g. 10s, 5m, 1h30m")
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    if num:
        raise UsageError(f'invalid duration "{text}": missing unit', hint="e.g. 10s, 5m")
    return total


def uuid_arg(values: dict[str, Any], args: list[str]) -> str:
    if values.get("uuid-file"):
        if args:
            raise UsageError("pass either a UUID or --uuid-file, not both")
        from pathlib import Path

        try:
            return Path(values["uuid-file"]).read_text().strip()
        except OSError as e:
            raise UsageError(f'unable to read UUID from file "{values["uuid-file"]}": '
                             f"{e.strerror}") from e
    if len(args) != 1:
        raise UsageError("expected exactly one pod UUID")
    return args[0]


def _exited(ref: PodRef | None) -> bool:
    return ref is None or is_exited(ref.state()) or ref.state() == PodState.GARBAGE


def _ready_or_gone(ref: PodRef | None) -> bool:
    return _exited(ref) or (ref is not None and is_ready(ref.path))


def _wait(ctx: Context, ref: PodRef, wait: str, what: str,
          done: Callable[[PodRef | None], bool]) -> PodRef:
    """rkt's --wait / --wait-ready: 'true' waits forever, 'false' not at all, else a duration."""
    if wait in ("false", ""):
        return ref
    deadline = None if wait == "true" else time.monotonic() + parse_duration(wait)
    while True:
        cur = poddir.find(ctx.paths, ref.uuid)
        if done(cur):
            return cur or ref
        if deadline is not None and time.monotonic() > deadline:
            raise PodError(f'pod "{ref.uuid}" did not {what} within {wait}')
        time.sleep(0.05)


def uuid_args(values: dict[str, Any], args: list[str]) -> list[str]:
    """Pods named on the command line and/or in ``--uuid-file`` (stop, rm)."""
    uuids = list(args)
    if values.get("uuid-file"):
        uuids.append(uuid_arg(values, []))
    if not uuids:
        raise UsageError("expected at least one pod UUID")
    return uuids


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    ref = poddir.resolve(ctx.paths, uuid_arg(values, args))
    ref = _wait(ctx, ref, values["wait"], "exit", _exited)
    ref = _wait(ctx, ref, values["wait-ready"], "become ready", _ready_or_gone)
    info = pod_info(ref)
    if values["format"]:
        ctx.out(dump_json(to_json(info), values["format"]))
        return 0
    lines = [f"state={info.state}"]
    if info.pod_name:
        lines.append(f"pod-name={info.pod_name}")
    if info.created:
        lines.append(f"created={full_time(info.created)}")
    if info.started:
        lines.append(f"started={full_time(info.started)}")
    if info.networks and (info.state == PodState.RUNNING or is_exited(info.state)):
        lines.append(f"networks={info.networks_column()}")
    if info.pid is not None:
        lines.append(f"pid={info.pid}")
    lines.append(f"exited={'true' if is_exited(info.state) else 'false'}")
    tpm_log = PodPaths(ref.path).tpm_log  # pod/measure.py: the pod was measured
    if tpm_log.exists():
        lines.append(f"tpm-log={tpm_log}")
    if info.state != PodState.RUNNING:
        for a in info.apps:
            if a.exit_code is not None:
                lines.append(f"app-{a.name}={a.exit_code}")
    ctx.out("\n".join(lines))
    return 0
