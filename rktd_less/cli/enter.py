"""rkt enter: run a command in a running pod's app (stage1 enter entrypoint), with its stdio."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..common.podstatus import is_ready
from ..errors import NotFound, PodError, UsageError
from ..pod import poddir, stage1call
from ..pod.info import pod_info, pod_pid, wait_while_running
from ..pod.state import PodState
from .context import Context
from .flags import Flag, Kind, parse

SHORT = "Enter the namespaces of an app within a rkt pod"
USAGE = "Usage:\n  rkt enter [--app=APPNAME] UUID [CMD [ARGS ...]]"
FLAGS: dict[str, Flag] = {
    "app": Flag(Kind.STR, "", "name of the app to enter within the specified pod"),
}
DEFAULT_CMD = "/bin/bash"
# Flags stop at the UUID (cobra SetInterspersed(false)): `rkt enter UUID sh -c ...` works.
RAW_ARGS = True


def main_raw(args: list[str], spec: Mapping[str, Flag],
             make_ctx: Callable[[dict[str, Any]], Context]) -> int:
    values, pos = parse(spec, args, interspersed=False)
    return main(make_ctx(values), values, pos)


def app_name(apps: list[str], wanted: str) -> str:
    """rkt: --app must name an app of the pod; a pod of one app needs no --app."""
    if wanted:
        if wanted not in apps:
            raise NotFound(f'app "{wanted}" not found in the pod',
                           hint="apps: " + ", ".join(apps))
        return wanted
    if not apps:
        raise PodError("pod contains zero apps")
    if len(apps) > 1:
        raise UsageError('specify app using "rkt enter --app= ..."',
                         hint="pod contains multiple apps: " + ", ".join(apps))
    return apps[0]


START_WAIT = 60.0  # seconds a pod that is still starting is waited for


def _wait_started(ref: poddir.PodRef) -> int:
    """The pod's init, once its systemd is up; a pod that is still starting is waited for, as
    rkt's ContainerPid1 did (rkt's pid_file tests)."""
    def started() -> bool:
        return pod_pid(ref.path) is not None and is_ready(ref.path)

    ready = wait_while_running(ref, started, START_WAIT)
    pid = pod_pid(ref.path)
    if pid is None or ref.state() != PodState.RUNNING:
        raise PodError(f'pod "{ref.uuid}" isn\'t currently running')
    if not ready:
        raise PodError(f'pod "{ref.uuid}" did not finish starting within {START_WAIT:.0f}s')
    return pid


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    ctx.require_root()
    if not args:
        raise UsageError("missing pod UUID", hint=USAGE.splitlines()[-1].strip())
    ref = poddir.resolve(ctx.paths, args[0])
    st = ref.state()
    if st != PodState.RUNNING:
        raise PodError(f'pod "{ref.uuid}" isn\'t currently running')
    info = pod_info(ref, st)
    app = app_name([a.name for a in info.apps], values["app"])
    pid = _wait_started(ref)
    cmd = args[1:]
    if not cmd:
        ctx.err(f'no command specified, assuming "{DEFAULT_CMD}"')
        cmd = [DEFAULT_CMD]
    return stage1call.exec_entrypoint(ctx.paths, ref, "enter",
                                      [f"--pid={pid}", f"--appname={app}", "--", *cmd])
