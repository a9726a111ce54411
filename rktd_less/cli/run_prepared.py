"""rkt run-prepared: start a pod made by `rkt prepare`."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..pod.run import run_prepared
from .context import Context
from .flags import Flag, Kind
from .run import FLAGS as RUN_FLAGS
from .run import start_options

SHORT = "Run a prepared application pod in rkt"
USAGE = ("Usage:\n  rkt run-prepared [--net[=NAME[:ARGS],...]] [--interactive] [--hostname=NAME] "
         "[--dns=...] [--dns-search=...] [--dns-opt=...] [--dns-domain=...] [--hosts-entry=...] "
         "[--ipc=auto|private|parent] [--detach] UUID")
FLAGS: dict[str, Flag] = {
    "net": Flag(Kind.OPTMULTI, [], "the pod's networks", no_opt="default"),
    "interactive": Flag(Kind.BOOL, False, "run pod interactively"),
    "hostname": Flag(Kind.STR, "", "pod hostname"),
    **{k: v for k, v in RUN_FLAGS.items()
       if k in ("dns", "dns-search", "dns-opt", "dns-domain", "hosts-entry")},
    "ipc": Flag(Kind.STR, "auto", "IPC namespace: auto (= private), private, or parent"),
    "mds-register": Flag(Kind.BOOL, False, "register the pod with the metadata service "
                                           "(accepted as rkt's; there is no metadata service yet)"),
    "detach": Flag(Kind.BOOL, False, "start the pod as a service and return once it is up"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    if len(args) != 1:
        raise UsageError("expected exactly one pod UUID", hint=USAGE.splitlines()[-1].strip())
    ctx.require_root()
    opts = start_options(values, 1)  # the flags alone first; against the pod's apps below

    def check(n_apps: int) -> None:
        start_options(values, n_apps)

    uuid, status = run_prepared(ctx, args[0], opts, check)
    if opts.detach:
        ctx.out(uuid)
    return status
