"""An app's user and group as appc gives them (a number, a name in the image's
/etc/passwd or /etc/group, or a file whose owner is taken), resolved against its rootfs:
by stage0 before the pod dir is made (a bad name is refused early) and by stage1 for the
app's unit."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PodError


def _lookup(db_text: str, name: str) -> int | None:
    for line in db_text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name:
            try:
                return int(fields[2])
            except ValueError:
                return None
    return None


def resolve_id(spec: str, rootfs: Path, db: str, kind: str, app: str) -> int:
    """appc user/group: a number, a name from the image's /etc/passwd|group, or an absolute
    path whose owner (uid or gid) is taken."""
    if spec.isdigit():
        return int(spec)
    if spec.startswith("/"):
        target = rootfs / spec.lstrip("/")
        try:
            st = os.lstat(target)
        except FileNotFoundError as e:
            raise PodError(f'app "{app}": {kind} file "{spec}" not found in the image') from e
        return st.st_uid if kind == "user" else st.st_gid
    try:
        text = (rootfs / "etc" / db).read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        text = ""
    found = _lookup(text, spec)
    if found is None:
        raise PodError(f'app "{app}": {kind} "{spec}" not found in the image\'s /etc/{db}',
                       hint=f"use a numeric {kind} or add it to the image")
    return found
