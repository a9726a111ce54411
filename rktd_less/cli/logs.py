"""rkt logs: the output of a pod's apps from its journal, for running and exited pods (beyond
rkt; rkt #1528: users asked to read an exited pod's output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..common.podpaths import PodPaths
from ..errors import NotFound, PodError, UsageError
from ..ids import machine_id
from ..pod import poddir
from ..pod.info import wait_while_running
from ..pod.state import PodState
from .context import Context
from .flags import Flag, Kind
from .status import uuid_arg

SHORT = "Print the output of a pod's apps from its journal"
USAGE = "Usage:\n  rkt logs [--app=NAME] [--follow] [--lines=N] UUID"
FLAGS: dict[str, Flag] = {
    "app": Flag(Kind.STR, "", "only this app's output"),
    "follow": Flag(Kind.BOOL, False, "keep printing new output while the pod runs"),
    "lines": Flag(Kind.STR, "", "only the last N lines"),
    "uuid-file": Flag(Kind.STR, "", "read pod UUID from file instead of argument"),
}
JOURNAL_ROOT = Path("/var/log/journal")


def _lines(text: str) -> int | None:
    if text == "":
        return None
    if not text.isdigit():
        raise UsageError(f'invalid --lines "{text}"', hint="a number of lines")
    return int(text)


JOURNAL_WAIT = 30.0  # seconds a starting pod is given to make its journal


def _wait_journal(ref: poddir.PodRef, directory: Path) -> None:
    """A pod that is still starting makes its journal directory in a moment (nspawn links it
    when it boots): wait for it while the pod runs."""
    if Path("/run/systemd/system").is_dir():  # else pods keep no journal on the machine
        wait_while_running(ref, directory.is_dir, JOURNAL_WAIT)


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    import json

    lines = _lines(str(values["lines"]))
    ref = poddir.resolve(ctx.paths, uuid_arg(values, args))
    try:
        apps = [str(a["name"]) for a in json.loads(PodPaths(ref.path).manifest.read_text())
                .get("apps", [])]
    except (OSError, ValueError) as e:
        raise PodError(f'pod "{ref.uuid}" has no readable manifest') from e
    if values["app"]:
        if values["app"] not in apps:
            raise NotFound(f'app "{values["app"]}" not found in the pod',
                           hint="apps: " + ", ".join(apps))
        apps = [values["app"]]
    directory = JOURNAL_ROOT / machine_id(ref.uuid)
    _wait_journal(ref, directory)
    if not directory.is_dir():
        raise PodError(f'pod "{ref.uuid}" has no journal on this machine',
                       hint="pods keep one only where systemd runs and /var/log/journal "
                            "exists; rkt gc removes it")
    from ..systemd import journal

    def alive() -> bool:
        return ref.state() == PodState.RUNNING

    for _ident, message in journal.read(directory, apps, lines=lines,
                                        follow=bool(values["follow"]), alive=alive):
        ctx.out(message)
    return 0
