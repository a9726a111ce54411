"""rkt fetch: put images into the store and print their IDs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError
from ..fetch.resolve import resolve_image
from ..ids import fetch_id
from ..store import Store
from .context import Context
from .flags import Flag, Kind, defaults, take_flag

SHORT = "Fetch image(s) and store them in the local store"
USAGE = "Usage:\n  rkt fetch IMAGE_URL_OR_FILE [--signature FILE] [IMAGE [--signature FILE] ...]"
FLAGS: dict[str, Flag] = {
    "full": Flag(Kind.BOOL, False, "print the full image hash after fetching"),
    "pull-policy": Flag(Kind.STR, "update", "never, new or update"),
    "signature": Flag(Kind.STR, None, "local signature file for the preceding image"),
}
RAW_ARGS = True  # --signature belongs to the image before it, as in rkt


def parse_images(spec: dict[str, Flag], args: Sequence[str]
                 ) -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
    """Flags anywhere; each ``--signature`` goes with the image before it (rkt's appAsc)."""
    values = defaults(spec)
    images: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--signature" or a.startswith("--signature="):
            one: dict[str, Any] = {}
            nxt = take_flag({"signature": spec["signature"]}, args, i, one)
            assert nxt is not None
            if not images:
                raise UsageError("--signature must follow an image")
            if images[-1][1] is not None:
                raise UsageError("--signature specified multiple times for the same image")
            images[-1] = (images[-1][0], one["signature"])
            i = nxt
            continue
        nxt = take_flag(spec, args, i, values)
        if nxt is not None:
            i = nxt
            continue
        if a.startswith("--") and len(a) > 2:
            raise UsageError(f"unknown flag: {a.split('=', 1)[0]}",
                             hint="see `rkt help fetch`")
        images.append((a, None))
        i += 1
    return values, images


def main_raw(args: list[str], spec: dict[str, Flag],
             make_ctx: Callable[[dict[str, Any]], Context]) -> int:
    values, images = parse_images(spec, args)
    return fetch_all(make_ctx(values), values, images)


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
