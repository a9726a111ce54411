"""What this process's cgroup says about it."""

from __future__ import annotations

from pathlib import Path


def own_service() -> str | None:
    """The systemd service whose cgroup this process is in (``web.service``), if any: the
    last ``*.service`` component of the unified (or name=systemd) hierarchy path."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[-1].rstrip("/")
        last = path.rsplit("/", 1)[-1]
        if last.endswith(".service"):
            return last
    return None
