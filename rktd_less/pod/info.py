"""What `rkt list` and `rkt status` show of a pod, read from its directory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.podpaths import PodPaths
from . import names
from .poddir import PodRef
from .state import PodState


@dataclass(frozen=True)
class AppInfo:
    name: str
    image_name: str  # name[:version]
    image_id: str
    exit_code: int | None


@dataclass(frozen=True)
class PodInfo:
    uuid: str
    state: PodState
    apps: tuple[AppInfo, ...]
    created: float | None
    started: float | None
    pid: int | None
    manifest: dict[str, Any] | None
    pod_name: str | None = None  # --pod-name


def _mtime(p: Path) -> float | None:
    try:
        return p.stat().st_mtime
    except OSError:
        return None


def _read(p: Path) -> str | None:
    try:
        return p.read_text()
    except OSError:
        return None


def status_dir(poddir: Path) -> Path | None:
    pp = PodPaths(poddir)
    tree = _read(pp.stage1_tree_id)
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
    text = _read(d / app)
    if text is None or not text.strip().lstrip("-").isdigit():
        return None
    return int(text.strip())


def app_statuses(poddir: Path) -> dict[str, int | None]:
    """Each app of the pod → its recorded exit status (None while it has none)."""
    try:
        manifest = json.loads(_read(PodPaths(poddir).manifest) or "{}")
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


def wait_while_running(ref: PodRef, done: Callable[[], bool], timeout: float) -> bool:
    """Poll ``done`` every 50 ms while the pod runs, at most ``timeout`` seconds: True once it
    holds, False when the pod is no longer running or time is up."""
    import time

    deadline = time.monotonic() + timeout
    while not done():
        if ref.state() != PodState.RUNNING or time.monotonic() > deadline:
            return done()
        time.sleep(0.05)
    return True


def pod_pid(poddir: Path) -> int | None:
    """The pod's init: the only child of the process named in ``ppid`` (nspawn)."""
    pp = PodPaths(poddir)
    text = _read(pp.ppid) or _read(pp.pid)
    if text is None or not text.strip().isdigit():
        return None
    ppid = int(text.strip())
    if pp.pid.exists():
        return ppid
    children = _read(Path(f"/proc/{ppid}/task/{ppid}/children"))
    if not children or not children.split():
        return None
    return int(children.split()[0])


def _display(img: dict[str, Any]) -> str:
    name = str(img.get("name") or "")
    version = next((lb.get("value") for lb in img.get("labels", [])
                    if lb.get("name") == "version"), None)
    return name + (f":{version}" if version else "")


def pod_info(ref: PodRef, state: PodState | None = None) -> PodInfo:
    st = state if state is not None else ref.state()
    pp = PodPaths(ref.path)
    text = _read(pp.manifest)
    manifest: dict[str, Any] | None
    try:
        manifest = json.loads(text) if text is not None else None
    except ValueError:
        manifest = None
    apps = []
    for ra in (manifest or {}).get("apps", []):
        img = ra.get("image", {})
        apps.append(AppInfo(name=ra.get("name", ""), image_name=_display(img) or "--",
                            image_id=str(img.get("id", "")),
                            exit_code=app_exit_code(ref.path, ra.get("name", ""))))
    started = _mtime(pp.ppid) or _mtime(pp.pid)
    pid = pod_pid(ref.path) if st == PodState.RUNNING else None
    return PodInfo(uuid=ref.uuid, state=st, apps=tuple(apps),
                   created=_mtime(pp.created), started=started, pid=pid,
                   manifest=manifest, pod_name=names.read(ref.path))


def pod_exit_code(info: PodInfo) -> int:
    """rkt: the pod's status is the first failing app's code, else 0."""
    for a in info.apps:
        if a.exit_code:
            return a.exit_code
    return 0


__all__ = ["AppInfo", "PodInfo", "pod_info"]
