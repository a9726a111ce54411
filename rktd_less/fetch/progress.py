"""Download progress on a terminal, in rkt's format (``rkt/image/io.go``, mitchellh/ioprogress).

    Downloading ACI: [=============>                      ] 2.65 MB/3.7 MB

The line is redrawn in place with ``\\r`` at most every ``interval`` seconds and ends with a
newline. Whether to draw at all is the caller's decision (house rule 9: only on a terminal).
"""

from __future__ import annotations

import time
from typing import TextIO

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
LINE_WIDTH = 80
_BYTES_WIDTH = 18  # room rkt keeps for "2.65 MB/3.7 MB"


def format_bytes(n: int) -> str:
    """ioprogress.ByteUnitStr: decimal units, three significant digits (``2.65 MB``)."""
    size = float(n)
    unit = _UNITS[-1]
    for u in _UNITS:
        if size < 1000:
            unit = u
            break
        size /= 1000
    return f"{size:.3g} {unit}"


def bar(done: int, total: int, width: int) -> str:
    inner = max(width - 2, 1)
    filled = min(inner, int(inner * done / total)) if total > 0 else inner
    if filled < inner:
        head = "=" * max(filled - 1, 0) + (">" if filled else "")
        return "[" + head + " " * (inner - len(head)) + "]"
    return "[" + "=" * inner + "]"


def render_line(label: str, done: int, total: int | None) -> str:
    if total is None or total < 0:
        return f"{label}: {format_bytes(done)} of an unknown total size"
    width = max(LINE_WIDTH - len(label) - _BYTES_WIDTH, 10)
    return f"{label}: {bar(done, total, width)} {format_bytes(done)}/{format_bytes(total)}"


class Progress:
    def __init__(self, label: str, total: int | None, stream: TextIO, *, start: int = 0,
                 interval: float = 0.1) -> None:
        self.label = label
        self.total = total
        self.done = start
        self._stream = stream
        self._interval = interval
        self._last_draw = 0.0
        self._last_len = 0
        self._draw()

    def _draw(self) -> None:
        line = render_line(self.label, self.done, self.total)
        pad = " " * max(self._last_len - len(line), 0)  # wipe a longer previous line
        self._stream.write("\r" + line + pad)
        self._stream.flush()
        self._last_len = len(line)
        self._last_draw = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self._last_draw >= self._interval:
            self._draw()

    def finish(self) -> None:
        """Draw the final state and end the line (also after an error, so output stays tidy)."""
        self._draw()
        self._stream.write("\n")
        self._stream.flush()
