"""``/proc/<pid>/mountinfo`` as data (pure): what stage0 (gc, the overlay check) and stage1
(its cgroups without systemd) read of the mount table."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MountEntry:
    root: str  # the mounted directory within its filesystem (field 4)
    point: str  # where it is mounted (field 5)
    fstype: str
    super_options: tuple[str, ...]  # e.g. the cgroup v1 controllers, name=systemd


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse(text: str) -> list[MountEntry]:
    """The entries of a mountinfo text, in its order (a later one is mounted over an earlier
    one at the same point); malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        out.append(MountEntry(_unescape(fields[3]), _unescape(fields[4]), tail[0],
                              tuple(tail[2].split(",")) if len(tail) > 2 else ()))
    return out
