"""rkt list: pods, one row per app, in rkt's columns."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..ids import short_id
from ..pod import poddir
from ..pod.info import PodInfo, pod_info
from ..pod.state import PodState
from .context import Context
from .flags import Flag, Kind
from .output import dump_json, full_time, human_time, ns, table

SHORT = "List pods"
USAGE = "Usage:\n  rkt list [--full] [--no-legend] [--format=json|json-pretty]"
FLAGS: dict[str, Flag] = {
    "full": Flag(Kind.BOOL, False, "use long output format"),
    "no-legend": Flag(Kind.BOOL, False, "suppress a legend with the list"),
    "format": Flag(Kind.STR, "", "choose the output format: json, json-pretty"),
}


def _app_state(info: PodInfo, exit_code: int | None) -> str:
    if info.state == PodState.RUNNING:
        return "running"
    if exit_code is not None:
        return "exited"
    if info.state in (PodState.PREPARED, PodState.PREPARING, PodState.EMBRYO):
        return "created"
    return "unknown"


def to_json(info: PodInfo) -> dict[str, Any]:
    apps = []
    for a in info.apps:
        app: dict[str, Any] = {"name": a.name, "state": _app_state(info, a.exit_code),
                               "image_id": a.image_id, "mounts": [],
                               "user_annotations": {}, "user_labels": {}}
        if info.created:
            app["created_at"] = ns(info.created)
        if info.started:
            app["started_at"] = ns(info.started)
        if a.exit_code is not None:
            app["exit_code"] = a.exit_code
        apps.append(app)
    pod: dict[str, Any] = {"name": info.uuid, "state": str(info.state),
                           "networks": [dict(n) for n in info.networks],
                           "app_names": [a.name for a in info.apps], "apps": apps,
                           "user_annotations": {}, "user_labels": {}}
    if info.created:
        pod["created_at"] = ns(info.created)
    if info.started:
        pod["started_at"] = ns(info.started)
    if info.pod_name:
        pod["pod_name"] = info.pod_name
    return pod


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    fmt = values["format"]
    if fmt not in ("", "json", "json-pretty"):
        raise UsageError(f'invalid format "{fmt}"', hint="use json or json-pretty")
    if args:
        raise UsageError("rkt list takes no arguments")
    infos = [pod_info(ref) for ref in poddir.all_pods(ctx.paths)]
    infos.sort(key=lambda i: i.created or 0)
    if fmt:
        ctx.out(dump_json([to_json(i) for i in infos], fmt))
        return 0
    full = values["full"]
    when = full_time if full else human_time
    header = ["UUID", "APP", "IMAGE NAME"] + (["IMAGE ID"] if full else []) + [
        "STATE", "CREATED", "STARTED", "NETWORKS", "POD NAME"]
    rows = [] if values["no-legend"] else [header]
    for i in infos:
        uuid = i.uuid if full else i.uuid[:8]
        created = when(i.created) if i.created else ""
        started = when(i.started) if i.started else ""
        apps = i.apps or ()
        if not apps:
            rows.append([uuid, "-", "-"] + (["-"] if full else []) +
                        [str(i.state), created, started, i.networks_column(), i.pod_name or ""])
        for n, a in enumerate(apps):
            img_id = [short_id(a.image_id)] if full else []
            if n == 0:
                rows.append([uuid, a.name, a.image_name, *img_id, str(i.state), created, started,
                             i.networks_column(), i.pod_name or ""])
            else:
                rows.append(["", a.name, a.image_name, *img_id, "", "", "", "", ""])
    if rows:
        ctx.out(table(rows))
    return 0
