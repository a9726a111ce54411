"""Reading what a running or exited pod's stage1 wrote: the apps' exit statuses and the
supervisor's readiness (rkt's ``rkt/status/<app>`` and ``rkt/supervisor-status``), wherever
they are (the stage1 overlay's upper dir, or the stage1 rootfs of a --no-overlay pod). Shared
by stage0 (list, status, enter, run) and stage1 (stop, the supervisor)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .podpaths import PodPaths


def read_text(p: Path) -> str | None:
    try:
        return p.read_text()
    except OSError:
        return None


def status_dir(poddir: Path) -> Path | None:
    pp = PodPaths(poddir)
    tree = read_text(pp.stage1_tree_id)
    if tree is None:
        return None
    copy = pp.copied_status_dir()
    if not pp.overlay_prepared.exists() and copy.is_dir():  # --no-overlay
        return copy
    return pp.overlay_status_dir(tree.strip())


def app_exit_code(poddir: Path, app: str) -> int | None:
    d = status_dir(poddir)
    if d is None:
        return None
    text = read_text(d / app)
    if text is None or not text.strip().lstrip("-").isdigit():
        return None
    return int(text.strip())


def app_statuses(poddir: Path) -> dict[str, int | None]:
    """Each app of the pod → its recorded exit status (None while it has none)."""
    try:
        manifest = json.loads(read_text(PodPaths(poddir).manifest) or "{}")
    except ValueError:
        return {}
    names_ = [str(ra.get("name", "")) for ra in manifest.get("apps", [])]
    return {n: app_exit_code(poddir, n) for n in names_}


def is_ready(poddir: Path) -> bool:
    """rkt: the pod's supervisor is up once ``rkt/supervisor-status`` points to ``ready``."""
    d = status_dir(poddir)
    if d is None:
        return False
    try:
        return os.readlink(d.parent / "supervisor-status") == "ready"
    except OSError:
        return False
