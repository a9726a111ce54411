"""rkt rm: remove exited or prepared pods now (rkt/rm.go)."""

from __future__ import annotations

from typing import Any

from ..errors import RktError
from ..pod import gc, poddir, stage1call
from .context import Context
from .flags import Flag, Kind
from .status import uuid_args

SHORT = "Remove all files and resources associated with an exited pod"
USAGE = "Usage:\n  rkt rm --uuid-file=FILE | UUID ..."
FLAGS: dict[str, Flag] = {
    "uuid-file": Flag(Kind.STR, "", "read pod UUID from file instead of argument"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    ctx.require_root()
    uuids = uuid_args(values, args)
    failed = False
    for text in uuids:
        try:
            ref = poddir.resolve(ctx.paths, text)
        except RktError as e:
            ctx.err(f"cannot get pod: {e.message}")
            failed = True
            continue
        ok = gc.remove(ctx.paths, ref,
                       lambda r: stage1call.call(ctx.paths, r, "gc", []), ctx.err)
        if ok:
            ctx.out(f'"{ref.uuid}"')
        else:
            failed = True
    if failed:
        if len(uuids) > 1:
            ctx.err("failed to remove one or more pods")
        return 254
    return 0
