"""Docker-style pod names (rkt #1818): ``rkt run --pod-name=web ...``.

A name is claimed by creating the symlink ``<data>/names/<name> -> <uuid>`` (atomic, so two
pods cannot get the same name); the pod dir keeps a copy in ``pod-name`` for `rkt list`. The
name is released when the pod is removed; a link whose pod is gone is stale and may be taken.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import UsageError
from ..paths import Paths

NAME_FILE = "pod-name"


def check(name: str) -> str:
    """A pod name: an AC name (lower-case letters, digits, dashes) of at most 63 characters.
    Where a name could also be read as a UUID prefix, the name wins (as with docker)."""
    from ..appc.types import is_ac_name  # (not on the read paths: list, status, stage1)

    if not is_ac_name(name) or len(name) > 63:
        raise UsageError(f'invalid pod name "{name}"',
                         hint="use lower-case letters, digits and dashes, at most 63 characters")
    return name


def lookup(paths: Paths, name: str) -> str | None:
    """The UUID of the pod named ``name``, if that pod still exists."""
    try:
        uuid = os.readlink(paths.pod_names / name)
    except OSError:
        return None
    return uuid if paths.pod_phase(uuid) is not None else None


def _names_lock(paths: Paths) -> Path:
    return paths.locks / "podNames"


def claim(paths: Paths, name: str, uuid: str) -> None:
    """Give ``name`` to pod ``uuid``; UsageError if a live pod has it. Claims, the takeover of
    a stale link and releases are serialised by one flock, so two claimers can never both win
    (the link alone made a check-then-replace of a stale link racy)."""
    from ..store.lock import ensure_dir, flocked

    d = paths.pod_names
    ensure_dir(paths.data, d)
    ensure_dir(paths.data, paths.locks)
    link = d / name
    with flocked(_names_lock(paths)):
        try:
            os.symlink(uuid, link)
            return
        except FileExistsError:
            pass
        owner = lookup(paths, name)
        if owner == uuid:
            return
        if owner is not None:
            raise UsageError(f'pod name "{name}" is already used by pod {owner}',
                             hint=f"choose another name, or remove that pod with "
                                  f"`rkt rm {name}`")
        # stale: its pod is gone; replaced in one rename
        tmp = d / f".{name}.{uuid}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(uuid, tmp)
        os.replace(tmp, link)


def record(poddir: Path, name: str) -> None:
    """The pod dir's own copy of its name (what `rkt list` shows)."""
    (poddir / NAME_FILE).write_text(name + "\n")


def read(poddir: Path) -> str | None:
    try:
        return (poddir / NAME_FILE).read_text().strip() or None
    except OSError:
        return None


def release(paths: Paths, uuid: str, name: str | None) -> None:
    """Drop the name link of a removed pod (only if it still points at that pod)."""
    if not name:
        return
    from ..store.lock import flocked

    link = paths.pod_names / name
    try:
        with flocked(_names_lock(paths)):
            if os.readlink(link) == uuid:
                link.unlink()
    except OSError:
        pass
