"""rkt prepare: fetch and render images into a pod that `rkt run-prepared` starts later."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..pod.run import prepare_only
from .context import Context
from .flags import Flag, Kind
from .run import FLAGS as RUN_FLAGS
from .run import pod_request

RAW_ARGS = True
SHORT = "Prepare to run image(s) in a pod in rkt"
USAGE = """Usage:
  rkt prepare [--quiet] [pod flags] IMAGE [per-app flags] [-- image-args... [---]] ...

Prints the new pod's UUID; start it with `rkt run-prepared UUID`. Flags as `rkt run`."""
FLAGS: dict[str, Flag] = {
    **{k: v for k, v in RUN_FLAGS.items()
       if k not in ("interactive", "net", "hostname", "detach", "ipc", "mds-register", "dns",
                    "dns-search", "dns-opt", "dns-domain", "hosts-entry")},
    "quiet": Flag(Kind.BOOL, False, "suppress superfluous output on stdout, print only the UUID"),
    # accepted as rkt does, but they belong to run-prepared: checked there
    "net": Flag(Kind.OPTMULTI, [], "the pod's networks", no_opt="default"),
    "interactive": Flag(Kind.BOOL, False, "run pod interactively"),
    "hostname": Flag(Kind.STR, "", "pod hostname"),
}


def main_raw(args: list[str], spec: dict[str, Flag],
             make_ctx: Callable[[dict[str, Any]], Context]) -> int:
    ctx, req, _opts = pod_request(args, spec, make_ctx)
    ctx.out(prepare_only(ctx, req))
    return 0
