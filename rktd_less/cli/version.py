"""rkt version."""

from __future__ import annotations

import platform
from typing import Any

from .. import APPC_VERSION, __version__
from .context import Context
from .flags import Flag

SHORT = "Print the version and exit"
USAGE = "Usage:\n  rkt version"
FLAGS: dict[str, Flag] = {}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    from ..common.platform import host_arch

    ctx.out(f"rkt Version: {__version__}")
    ctx.out(f"appc Version: {APPC_VERSION}")
    ctx.out(f"Python Version: {platform.python_version()}")
    ctx.out(f"Go OS/Arch: linux/{host_arch()}")
    ctx.out("Features: +TPM +SDJOURNAL")  # pod/measure.py; rkt logs
    return 0
