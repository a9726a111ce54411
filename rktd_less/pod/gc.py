"""Pod garbage collection with rkt's two passes (reference §2.7), plus `rkt rm`.

Deleting never fails on "device or resource busy" (rkt #2878): pods mount only inside stage1's
private mount namespace, and any mount still found below a pod dir is lazily detached first.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..common.mountinfo import parse
from ..common.podpaths import PodPaths
from ..fsio import try_lock
from ..host import mount
from ..paths import Paths
from . import names, poddir
from .poddir import PodRef
from .state import PodState

Say = Callable[[str], None]
Stage1Gc = Callable[[PodRef], None]


@dataclass(frozen=True)
class GcPolicy:
    grace_period: float = 30 * 60
    expire_prepared: float = 24 * 3600
    mark_only: bool = False


def _mounts_below(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    found = [m.point for m in parse(text) if m.point == str(path) or m.point.startswith(prefix)]
    return sorted(found, key=len, reverse=True)


def delete_pod(paths: Paths, ref: PodRef, stage1_gc: Stage1Gc | None, err: Say) -> bool:
    """Remove a garbage pod the caller holds exclusively."""
    if ref.phase == "exited-garbage" and stage1_gc is not None:
        try:
            stage1_gc(ref)
        except Exception as e:  # a broken stage1 must not keep a pod forever
            err(f'problem performing stage1 GC on "{ref.uuid}": {e}')
    for mp in _mounts_below(ref.path):
        try:
            mount.umount(mp, lazy=True)
        except Exception as e:
            err(f"unable to unmount {mp}: {e}")
    try:
        shutil.rmtree(PodPaths(ref.path).stage1_rootfs, ignore_errors=False)
    except FileNotFoundError:
        pass
    except OSError as e:
        err(f'unable to remove pod rootfs "{ref.uuid}": {e}')
        return False
    name = names.read(ref.path)
    try:
        shutil.rmtree(ref.path)
    except OSError as e:
        err(f'unable to remove pod "{ref.uuid}": {e}')
        return False
    names.release(paths, ref.uuid, name)
    return True


def _lock(ref: PodRef) -> int | None:
    try:
        fd = poddir.open_dir(ref.path)
    except FileNotFoundError:
        return None
    if not try_lock(fd):
        os.close(fd)
        return None
    return fd


EMBRYO_GRACE = 60.0


def _abandoned_embryo(ref: PodRef, now: float) -> bool:
    """An embryo is locked and renamed within moments of its mkdir; one left unlocked for a
    minute belongs to a stage0 that died in between (rkt never collected these)."""
    try:
        age = now - ref.path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > EMBRYO_GRACE and not poddir.is_locked(ref.path)


def gc(paths: Paths, policy: GcPolicy, out: Say, err: Say, stage1_gc: Stage1Gc | None) -> None:
    now = time.time()
    for ref in list(poddir.all_pods(paths)):
        if ref.phase == "run" and ref.state() == PodState.EXITED:
            err(f'moving pod "{ref.uuid}" to garbage')
            poddir.mark(paths, ref, "exited-garbage")
        elif ((ref.phase == "prepare" and ref.state() == PodState.ABORTED_PREPARE)
              or (ref.phase == "embryo" and _abandoned_embryo(ref, now))):
            err(f'moving failed prepare "{ref.uuid}" to garbage')
            poddir.mark(paths, ref, "garbage")
    if policy.mark_only:
        return
    for ref in list(poddir.all_pods(paths)):
        if ref.phase == "prepared" and poddir.ctime(ref.path) + policy.expire_prepared < now:
            err(f'moving expired prepared pod "{ref.uuid}" to garbage')
            poddir.mark(paths, ref, "garbage")
    for ref in list(poddir.all_pods(paths)):
        if ref.phase == "exited-garbage":
            if poddir.ctime(ref.path) + policy.grace_period > time.time():
                err(f'pod "{ref.uuid}" not removed: still within grace period '
                    f"({format_duration(policy.grace_period)})")
                continue
        elif ref.phase != "garbage":
            continue
        fd = _lock(ref)
        if fd is None:
            continue
        try:
            out(f'Garbage collecting pod "{ref.uuid}"')
            delete_pod(paths, ref, stage1_gc, err)
        finally:
            os.close(fd)


def remove(paths: Paths, ref: PodRef, stage1_gc: Stage1Gc | None, err: Say) -> bool:
    """`rkt rm` of one pod: rkt's state checks and messages (rkt/rm.go)."""
    st = ref.state()
    if st == PodState.EMBRYO and _abandoned_embryo(ref, time.time()):
        st = PodState.ABORTED_PREPARE
    if st == PodState.RUNNING:
        err(f'pod "{ref.uuid}" is currently running')
        return False
    if st in (PodState.EMBRYO, PodState.PREPARING):
        err(f'pod "{ref.uuid}" is currently being prepared')
        return False
    if st in (PodState.DELETING, PodState.EXITED_DELETING):
        err(f'pod "{ref.uuid}" is currently being deleted')
        return False
    target = ref
    if st == PodState.ABORTED_PREPARE:
        err(f'moving failed prepare "{ref.uuid}" to garbage')
        target = poddir.mark(paths, ref, "garbage") or ref
    elif st == PodState.PREPARED:
        err(f'moving expired prepared pod "{ref.uuid}" to garbage')
        target = poddir.mark(paths, ref, "garbage") or ref
    elif st == PodState.EXITED:
        target = poddir.mark(paths, ref, "exited-garbage") or ref
    fd = _lock(target)
    if fd is None:
        err(f'unable to acquire exclusive lock on pod "{ref.uuid}"')
        return False
    try:
        return delete_pod(paths, target, stage1_gc, err)
    finally:
        os.close(fd)


def format_duration(seconds: float) -> str:
    """Go's time.Duration String(): 30m0s, 24h0m0s, 0s, 1.5s."""
    if seconds == 0:
        return "0s"
    total = seconds
    h = int(total // 3600)
    total -= h * 3600
    m = int(total // 60)
    s = total - m * 60
    s_txt = f"{s:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{h}h{m}m{s_txt}"
    if m:
        return f"{m}m{s_txt}"
    return s_txt
