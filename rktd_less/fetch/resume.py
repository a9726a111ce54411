"""On-disk state of resumable downloads: the partial file and its ``.meta`` sidecar.

A partial lives at a stable per-URL path (``partial_path``) so a later run finds it; its
sidecar records the URL and the strong validator (ETag or Last-Modified) sent back as
``If-Range`` when continuing. ``content_range`` reads the server's answer to that Range.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def partial_path(directory: Path, url: str) -> Path:
    """A stable temp path for ``url`` under ``directory``, so reruns resume the same file."""
    return directory / ("dl-" + hashlib.sha256(url.encode()).hexdigest()[:32] + ".part")


def sidecar_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".meta")


def read_sidecar(dest: Path, url: str) -> str | None:
    """The If-Range validator for continuing ``dest``, if it is a partial of ``url``."""
    try:
        meta = json.loads(sidecar_path(dest).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("url") != url:
        return None
    v = meta.get("validator")
    return v if isinstance(v, str) and v else None


def write_sidecar(dest: Path, url: str, validator: str | None) -> None:
    side = sidecar_path(dest)
    if validator is None:
        side.unlink(missing_ok=True)  # cannot prove identity later: never resume this one
        return
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "validator": validator}))
    tmp.replace(side)


def discard_partial(dest: Path) -> None:
    dest.unlink(missing_ok=True)
    sidecar_path(dest).unlink(missing_ok=True)


def content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    start, _, _end = span.partition("-")
    try:
        return int(start), (None if total.strip() == "*" else int(total))
    except ValueError:
        return None
