"""rkt gc: mark exited pods as garbage, then delete garbage past the grace period."""

from __future__ import annotations

from typing import Any

from ..pod import gc, poddir, stage1call
from .context import Context
from .flags import Flag, Kind
from .status import parse_duration

SHORT = "Garbage collect rkt pods no longer in use"
USAGE = ("Usage:\n  rkt gc [--grace-period=duration] [--expire-prepared=duration] "
         "[--mark-only]")
FLAGS: dict[str, Flag] = {
    "grace-period": Flag(Kind.STR, "30m0s", "duration to wait before discarding inactive pods "
                         "from garbage"),
    "expire-prepared": Flag(Kind.STR, "24h0m0s", "duration to wait before expiring prepared "
                            "pods"),
    "mark-only": Flag(Kind.BOOL, False, "only move exited/aborted pods to the garbage"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    ctx.require_root()
    policy = gc.GcPolicy(grace_period=parse_duration(values["grace-period"]),
                         expire_prepared=parse_duration(values["expire-prepared"]),
                         mark_only=values["mark-only"])
    poddir.ensure_layout(ctx.paths)
    gc.gc(ctx.paths, policy, ctx.out, ctx.err,
          lambda ref: stage1call.call(ctx.paths, ref, "gc", ["--local-config=" +
                                                             str(ctx.config.local)]))
    if not policy.mark_only:
        from .image import collect_temp

        collect_temp(ctx)
    return 0
