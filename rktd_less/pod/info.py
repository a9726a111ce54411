"""What `rkt list` and `rkt status` show of a pod, read from its directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.manifests import read_pod_manifest
from ..common.podpaths import PodPaths
from ..common.podstatus import app_exit_code, read_text
from . import names
from .poddir import PodRef
from .state import PodState

if TYPE_CHECKING:
    from ..common.manifests import ImageRefDoc, PodManifestDoc


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
    manifest: PodManifestDoc | None
    pod_name: str | None = None  # --pod-name
    # net-info.json entries (rkt's netName, netConf, pluginPath, ifName, ip, args, mask)
    networks: tuple[dict[str, str], ...] = ()

    def networks_column(self) -> str:
        """rkt's NETWORKS / ``networks=``: ``default:ip4=172.16.28.2``, joined by ", "."""
        return ", ".join(f"{n.get('netName', '')}:ip4={n.get('ip', '')}"
                         for n in self.networks)


def _mtime(p: Path) -> float | None:
    try:
        return p.stat().st_mtime
    except OSError:
        return None


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
    text = read_text(pp.ppid) or read_text(pp.pid)
    if text is None or not text.strip().isdigit():
        return None
    ppid = int(text.strip())
    if pp.pid.exists():
        return ppid
    children = read_text(Path(f"/proc/{ppid}/task/{ppid}/children"))
    if not children or not children.split():
        return None
    return int(children.split()[0])


def _display(img: ImageRefDoc) -> str:
    name = str(img.get("name") or "")
    version = next((lb.get("value") for lb in img.get("labels", [])
                    if lb.get("name") == "version"), None)
    return name + (f":{version}" if version else "")


def read_networks(path: Path) -> tuple[dict[str, str], ...]:
    """net-info.json; nothing for a pod without networks (or an unreadable file)."""
    text = read_text(path)
    if text is None:
        return ()
    try:
        doc = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(doc, list):
        return ()
    return tuple({str(k): str(v) for k, v in n.items()} for n in doc if isinstance(n, dict))


def pod_info(ref: PodRef, state: PodState | None = None) -> PodInfo:
    st = state if state is not None else ref.state()
    pp = PodPaths(ref.path)
    text = read_text(pp.manifest)
    manifest: PodManifestDoc | None
    try:
        manifest = read_pod_manifest(text) if text is not None else None
    except ValueError:
        manifest = None
    apps = []
    for ra in manifest.get("apps", []) if manifest else []:
        img = ra.get("image", {})
        apps.append(AppInfo(name=ra.get("name", ""), image_name=_display(img) or "--",
                            image_id=str(img.get("id", "")),
                            exit_code=app_exit_code(ref.path, ra.get("name", ""))))
    started = _mtime(pp.ppid) or _mtime(pp.pid)
    pid = pod_pid(ref.path) if st == PodState.RUNNING else None
    return PodInfo(uuid=ref.uuid, state=st, apps=tuple(apps),
                   created=_mtime(pp.created), started=started, pid=pid,
                   manifest=manifest, pod_name=names.read(ref.path),
                   networks=read_networks(pp.net_info))


def pod_exit_code(info: PodInfo) -> int:
    """rkt: the pod's status is the first failing app's code, else 0."""
    for a in info.apps:
        if a.exit_code:
            return a.exit_code
    return 0


__all__ = ["AppInfo", "PodInfo", "pod_info"]
