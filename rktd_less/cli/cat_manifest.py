"""rkt cat-manifest: print a pod's manifest."""

from __future__ import annotations

import json
from typing import Any

from ..common.podpaths import PodPaths
from ..errors import PodError
from ..pod import poddir
from .context import Context
from .flags import Flag, Kind
from .output import manifest_json
from .status import uuid_arg

SHORT = "Inspect and print the pod manifest"
USAGE = "Usage:\n  rkt cat-manifest [--pretty-print=false] UUID"
FLAGS: dict[str, Flag] = {
    "pretty-print": Flag(Kind.BOOL, True, "apply indent to format the output"),
    "uuid-file": Flag(Kind.STR, "", "read pod UUID from file instead of argument"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    ref = poddir.resolve(ctx.paths, uuid_arg(values, args))
    try:
        manifest = json.loads(PodPaths(ref.path).manifest.read_bytes())
    except (OSError, ValueError) as e:
        raise PodError(f'pod "{ref.uuid}" has no readable manifest') from e
    ctx.out(manifest_json(manifest, values["pretty-print"]))
    return 0
