"""rkt fetch: put images into the store and print their IDs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError
from ..fetch.resolve import resolve_image
from ..ids import fetch_id
from ..store import Store
from .context import Context
from .flags import Flag, Kind, parse_trailing

SHORT = "Fetch image(s) and store them in the local store"
USAGE = "Usage:\n  rkt fetch IMAGE_URL_OR_FILE [--signature FILE] [IMAGE [--signature FILE] ...]"
FLAGS: dict[str, Flag] = {
    "full": Flag(Kind.BOOL, False, "print the full image hash after fetching"),
    "pull-policy": Flag(Kind.STR, "update", "never, new or update"),
    "signature": Flag(Kind.STR, None, "local signature file for the preceding image"),
}
RAW_ARGS = True  # --signature belongs to the image before it, as in rkt


def main_raw(args: list[str], spec: dict[str, Flag],
             make_ctx: Callable[[dict[str, Any]], Context]) -> int:
    per_image = {"signature": spec["signature"]}
    values, items = parse_trailing({k: f for k, f in spec.items() if k not in per_image},
                                   per_image, args)
    return fetch_all(make_ctx(values), values,
                     [(img, flags.get("signature")) for img, flags in items])


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    """``rkt image fetch`` (flags already parsed): --signature for its image."""
    return fetch_all(ctx, values, [(a, values["signature"]) for a in args])


def fetch_all(ctx: Context, values: dict[str, Any],
              images: Sequence[tuple[str, str | None]]) -> int:
    if not images:
        raise UsageError("expected at least one image", hint=USAGE.splitlines()[-1].strip())
    settings = ctx.fetch_settings(values["pull-policy"])
    store = Store(ctx.paths)
    for img, signature in images:
        key = resolve_image(store, img, settings, signature)
        ctx.out(key if values["full"] else fetch_id(key))
    return 0
