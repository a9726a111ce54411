"""What every stage1 flavour's entrypoints share (pure): their ``--key=value ... UUID``
arguments and the dispatch of a verb to its function, with rkt's exit status 254 and a
one-line ``stage1: ...`` for an error."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import RktError

# The pod directory: every entrypoint runs in it. Relative, so that paths below it follow the
# directory should `rkt gc` rename it (run → exited-garbage) under a stop-post or gc running
# in it; Path.cwd() would not.
HERE = Path(".")


def parse_opts(args: Sequence[str]) -> tuple[dict[str, str], str]:
    """``--key[=value] ... UUID``; a flag without a value is ``"true"``."""
    if not args:
        raise RktError("missing pod UUID")
    opts: dict[str, str] = {}
    for a in args[:-1]:
        if not a.startswith("--"):
            raise RktError(f"unexpected argument {a!r}")
        k, _, v = a[2:].partition("=")
        opts[k] = v or "true"
    return opts, args[-1]


def dispatch(verbs: Mapping[str, Callable[[list[str]], int]], verb: str, args: list[str]) -> int:
    try:
        return verbs[verb](args)
    except RktError as e:
        print(f"stage1: {e}", file=sys.stderr)
        return 254
