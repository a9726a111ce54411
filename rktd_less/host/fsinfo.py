"""What the machine's filesystems can do, read from /proc (no mount, no process)."""

from __future__ import annotations

import re
from pathlib import Path

# Filesystems an overlay's upper dir cannot be on (rkt's PathSupportsOverlay: aufs, zfs; and
# overlayfs itself, which the kernel refuses as upper with EINVAL: a data dir in a container's
# overlay root).
NO_OVERLAY_UPPER = ("aufs", "zfs", "overlay")


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def fstype_of(path: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount ``path`` (absolute, resolved) is on (pure)."""
    best, best_type = "", None
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        fields = pre.split()
        if not sep or len(fields) < 5 or not post:
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the last of equal ones is the one on top
            best, best_type = point, post.split()[0]
    return best_type


def overlay_unsupported(path: Path) -> str | None:
    """Why pods under ``path`` cannot use overlay (rkt's wording), or None."""
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError as e:
        return f"cannot open /proc/filesystems: {e.strerror}"
    if "nodev\toverlay" not in filesystems.splitlines():
        return "overlay entry not present in /proc/filesystems"
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        fstype = fstype_of(str(existing.resolve()), Path("/proc/self/mountinfo").read_text())
    except OSError:
        return None
    if fstype in NO_OVERLAY_UPPER:
        return f"unsupported filesystem: {fstype}"
    return None
