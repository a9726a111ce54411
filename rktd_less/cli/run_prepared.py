"""rkt run-prepared: start a pod made by `rkt prepare`."""

from __future__ import annotations

import json
from typing import Any

from ..common.podpaths import PodPaths
from ..errors import PodError, UsageError
from ..pod import poddir, stage1call
from .context import Context
from .flags import Flag, Kind
from .run import check_pod_flags, launch_pod, measure_pod

SHORT = "Run a prepared application pod in rkt"
USAGE = ("Usage:\n  rkt run-prepared [--net=host|none] [--interactive] [--hostname=NAME] "
         "[--ipc=auto|private|parent] [--detach] UUID")
FLAGS: dict[str, Flag] = {
    "net": Flag(Kind.STR, "host", "pod network", no_opt="default"),
    "interactive": Flag(Kind.BOOL, False, "run pod interactively"),
    "hostname": Flag(Kind.STR, "", "pod hostname"),
    "ipc": Flag(Kind.STR, "auto", "IPC namespace: auto (= private), private, or parent"),
    "mds-register": Flag(Kind.BOOL, False, "register the pod with the metadata service "
                                           "(accepted as rkt's; there is no metadata service yet)"),
    "detach": Flag(Kind.BOOL, False, "start the pod as a service and return once it is up"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    if len(args) != 1:
        raise UsageError("expected exactly one pod UUID", hint=USAGE.splitlines()[-1].strip())
    ctx.require_root()
    ref = poddir.resolve(ctx.paths, args[0])
    entrypoint = stage1call.entrypoint(ctx.paths, ref, "run")
    if entrypoint is None:
        raise PodError(f'pod "{ref.uuid}": its stage1 image is gone or has no run entrypoint')
    try:
        apps = json.loads(PodPaths(ref.path).manifest.read_text()).get("apps", [])
    except (OSError, ValueError) as e:
        raise PodError(f'pod "{ref.uuid}" has no readable manifest') from e
    check_pod_flags(values, len(apps))
    measure_pod(ctx, ref.uuid, ref.path, values)  # a refused pod stays prepared
    fd, path = poddir.lock_prepared(ctx.paths, ref)
    poddir.share_lock_for_run(fd, path)
    return launch_pod(ctx, ref.uuid, path, fd, entrypoint, values)
