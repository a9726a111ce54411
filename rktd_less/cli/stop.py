"""rkt stop: stop running pods (stage1 stop entrypoint: SIGTERM, or SIGKILL with --force)."""

from __future__ import annotations

from typing import Any

from ..errors import RktError
from ..pod import poddir, stage1call
from ..pod.state import PodState
from .context import Context
from .flags import Flag, Kind
from .status import uuid_args

SHORT = "Stop a pod"
USAGE = "Usage:\n  rkt stop [--force] [--uuid-file=FILE] UUID ..."
FLAGS: dict[str, Flag] = {
    "force": Flag(Kind.BOOL, False, "forced stopping"),
    "uuid-file": Flag(Kind.STR, "", "read pod UUID from file instead of argument"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    ctx.require_root()
    uuids = uuid_args(values, args)
    failed = False
    for text in uuids:
        try:
            ref = poddir.resolve(ctx.paths, text)
            st = ref.state()
            if st in (PodState.EXITED, PodState.EXITED_GARBAGE, PodState.EXITED_DELETING,
                      PodState.GARBAGE):
                ctx.err(f'pod "{ref.uuid}" is already stopped')
                failed = True
                continue
            if st != PodState.RUNNING:
                ctx.err(f'pod "{ref.uuid}" is not running')
                failed = True
                continue
            stage1call.call(ctx.paths, ref, "stop", ["--force"] if values["force"] else [])
            ctx.out(f'"{ref.uuid}"')
        except RktError as e:
            ctx.err(f"error stopping {text!r}: {e.message}")
            failed = True
    if failed:
        if len(uuids) > 1:
            ctx.err("failed to stop one or more pods")
        return 254
    return 0
