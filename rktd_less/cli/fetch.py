"""rkt fetch: put images into the store and print their IDs."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..fetch.resolve import resolve_image
from ..ids import fetch_id
from ..store import Store
from .context import Context
from .flags import Flag, Kind

SHORT = "Fetch image(s) and store them in the local store"
USAGE = "Usage:\n  rkt fetch IMAGE_URL_OR_FILE [--signature FILE] ..."
FLAGS: dict[str, Flag] = {
    "full": Flag(Kind.BOOL, False, "print the full image hash after fetching"),
    "pull-policy": Flag(Kind.STR, "update", "never, new or update"),
    "signature": Flag(Kind.STR, None, "local signature file for the image"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    if not args:
        raise UsageError("expected at least one image", hint=USAGE.splitlines()[-1].strip())
    settings = ctx.fetch_settings(values["pull-policy"])
    store = Store(ctx.paths)
    for img in args:
        key = resolve_image(store, img, settings, values["signature"])
        ctx.out(key if values["full"] else fetch_id(key))
    return 0
