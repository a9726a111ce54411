"""rkt's output helpers: Go tabwriter tables (TAB padded), humanized and full times, sizes."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

TAB_WIDTH = 8


def table(rows: Sequence[Sequence[str]]) -> str:
    """Go ``tabwriter.NewWriter(w, 0, 8, 1, '\\t', 0)``: every column but the last is padded
    with TABs to a common multiple of 8 that leaves at least one cell of padding."""
    if not rows:
        return ""
    ncols = max(len(r) for r in rows)
    widths = [0] * ncols
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(cell) + 1)
    widths = [((w + TAB_WIDTH - 1) // TAB_WIDTH) * TAB_WIDTH for w in widths]
    lines = []
    for r in rows:
        parts = []
        for i, cell in enumerate(r):
            if i < len(r) - 1:
                pad = widths[i] - len(cell)
                parts.append(cell + "\t" * max(1, (pad + TAB_WIDTH - 1) // TAB_WIDTH))
            else:
                parts.append(cell)
        lines.append("".join(parts))
    return "\n".join(lines)


def full_time(ts: float) -> str:
    """Go layout ``2006-01-02 15:04:05.999 -0700 MST``."""
    dt = datetime.fromtimestamp(ts).astimezone()
    frac = f"{dt.microsecond // 1000:03d}".rstrip("0")
    base = dt.strftime("%Y-%m-%d %H:%M:%S")
    return f"{base}{'.' + frac if frac else ''} {dt.strftime('%z')} {dt.tzname()}"


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def human_time(ts: float, now: float | None = None) -> str:
    """go-humanize Time(): ``now``, ``5 seconds ago``, ``2 minutes ago``, ``3 days ago``."""
    d = (now if now is not None else time.time()) - ts
    suffix = "ago" if d >= 0 else "from now"
    d = abs(d)
    if d < 1:
        return "now"
    for limit, div, unit in ((60, 1, "second"), (3600, 60, "minute"), (86400, 3600, "hour"),
                             (7 * 86400, 86400, "day"), (30 * 86400, 7 * 86400, "week"),
                             (365 * 86400, 30 * 86400, "month")):
        if d < limit:
            return f"{_plural(int(d // div), unit)} {suffix}"
    return f"{_plural(int(d // (365 * 86400)), 'year')} {suffix}"


def human_bytes(n: int) -> str:
    """IEC sizes as rkt's image list prints them: ``512B``, ``1.5KiB``, ``12MiB``."""
    if n < 1024:
        return f"{n}B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        size /= 1024
        if size < 1024 or unit == "EiB":
            return f"{size:.0f}{unit}" if size >= 10 else f"{size:.1f}{unit}"
    return f"{n}B"


def ns(ts: float | None) -> int | None:
    return None if ts is None else int(ts * 1_000_000_000)


def manifest_json(obj: Any, pretty: bool) -> str:
    """cat-manifest output: tab-indented (rkt's --pretty-print) or compact."""
    return json.dumps(obj, indent="\t") if pretty else json.dumps(obj, separators=(",", ":"))


def dump_json(obj: Any, fmt: str) -> str:
    if fmt == "json-pretty":
        return json.dumps(obj, indent="\t")
    return json.dumps(obj, separators=(",", ":"))
