"""rkt config: the merged configuration (auth.d, paths.d, stage1.d of the system, local and user
config directories) as rkt's JSON (rkt/config.go)."""

from __future__ import annotations

import json
from typing import Any

from ..config import merged_json
from .context import Context
from .flags import Flag, Kind

SHORT = "Print configuration for each stage in JSON format"
USAGE = """Usage:
  rkt config [--pretty-print=true|false]

Prints {"stage0": [...]}: one entry per auth domain and docker registry, then the paths and
the default stage1, as the configuration files would say them."""
FLAGS: dict[str, Flag] = {
    "pretty-print": Flag(Kind.BOOL, True, "apply indent to format the output"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    doc = merged_json(ctx.config)
    ctx.out(json.dumps(doc, indent="\t") if values["pretty-print"]
            else json.dumps(doc, separators=(",", ":")))
    return 0
