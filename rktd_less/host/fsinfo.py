"""What the machine's filesystems can do, read from /proc (no mount, no process)."""

from __future__ import annotations

from pathlib import Path

from ..common.mountinfo import parse

# Filesystems an overlay's upper dir cannot be on (rkt's PathSupportsOverlay: aufs, zfs; and
# overlayfs itself, which the kernel refuses as upper with EINVAL: a data dir in a container's
# overlay root).
NO_OVERLAY_UPPER = ("aufs", "zfs", "overlay")


def fstype_of(path: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount ``path`` (absolute, resolved) is on (pure)."""
    best, best_type = "", None
    for m in parse(mountinfo):
        inside = path == m.point or path.startswith(m.point.rstrip("/") + "/")
        if inside and len(m.point) >= len(best):  # the last of equal ones is the one on top
            best, best_type = m.point, m.fstype
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
