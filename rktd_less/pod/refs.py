"""What pods hold on to in the image store: rendered trees and images (rkt/image_gc.go).

A pod names its trees in ``stage1TreeStoreID`` and ``appsinfo/<app>/treeStoreID`` and its
images in the pod manifest ``pod``. Trees of pods in every phase but ``garbage`` are in use
(rkt's ``IncludeMostDirs``); images count only for running pods.

Reading must be complete or fail: a pod whose references were missed would lose its trees, so
an unreadable pod directory is an error, never a skip. A pod moved to another phase while being
read (gc, a pod exiting) is looked up again. New pods cannot appear during a scan when the
caller holds :func:`prepare_lock` exclusively, since preparing a pod holds it shared.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..common.podpaths import PodPaths
from ..errors import PermissionDenied, PodError, RktError
from ..paths import Paths
from . import poddir
from .poddir import PodRef
from .state import PodState

MOST_PHASES = ("embryo", "prepare", "prepared", "run", "exited-garbage")
_RETRIES = 5


@dataclass(frozen=True)
class PodRefs:
    uuid: str
    running: bool
    trees: frozenset[str]
    images: frozenset[str]  # image keys of the apps; read for running pods only


class _Moved(Exception):
    """The pod directory went away while being read."""


def _error(what: str, e: OSError) -> RktError:
    if e.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"cannot read {what}: {e.strerror}",
                                hint="run as root or as a member of group rkt")
    return PodError(f"cannot read {what}: {e.strerror}")


def _read(ref: PodRef, path: Path) -> str | None:
    """A pod file's text; None if the pod has not written it (yet)."""
    try:
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        if not ref.path.is_dir():
            raise _Moved from None
        return None
    except OSError as e:
        raise _error(f'pod "{ref.uuid}"', e) from e


def _trees(ref: PodRef) -> set[str]:
    pp = PodPaths(ref.path)
    names = [_read(ref, pp.stage1_tree_id)]
    try:
        apps = sorted(p.name for p in pp.apps_info.iterdir())
    except FileNotFoundError:
        if not ref.path.is_dir():
            raise _Moved from None
        apps = []
    except OSError as e:
        raise _error(f'pod "{ref.uuid}"', e) from e
    names += [_read(ref, pp.app_tree_id(a)) for a in apps]
    return {n.strip() for n in names if n and n.strip()}


def _images(ref: PodRef) -> set[str]:
    text = _read(ref, PodPaths(ref.path).manifest)
    if text is None:
        return set()
    try:
        manifest = json.loads(text)
        return {str(a["image"]["id"]) for a in manifest.get("apps") or []
                if a.get("image", {}).get("id")}
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        raise PodError(f'cannot read the manifest of pod "{ref.uuid}": {e}') from e


def _state(ref: PodRef) -> PodState:
    try:
        return ref.state()
    except OSError as e:
        raise _error(f'pod "{ref.uuid}"', e) from e


def _one(paths: Paths, ref: PodRef) -> PodRefs | None:
    for _ in range(_RETRIES):
        if ref.phase not in MOST_PHASES:
            return None
        try:
            running = _state(ref) == PodState.RUNNING
            return PodRefs(ref.uuid, running, frozenset(_trees(ref)),
                           frozenset(_images(ref) if running else ()))
        except _Moved:
            found = poddir.find(paths, ref.uuid)
            if found is None:
                return None  # deleted
            ref = found
    raise PodError(f'pod "{ref.uuid}" keeps moving; try again')


def scan(paths: Paths) -> list[PodRefs]:
    """The references of every pod that is not garbage."""
    out: list[PodRefs] = []
    try:
        refs = list(poddir.all_pods(paths))
    except OSError as e:
        raise _error(f"the pods in {paths.pods}", e) from e
    for ref in refs:
        one = _one(paths, ref)
        if one is not None:
            out.append(one)
    return out


def tree_ids_in_use(paths: Paths) -> set[str]:
    """Trees referenced by any pod in embryo/prepare/prepared/run/exited-garbage."""
    return set().union(*(p.trees for p in scan(paths)))


def images_of_running_pods(paths: Paths) -> set[str]:
    return set().union(*(p.images for p in scan(paths) if p.running))


def running_pod_using(pods: Sequence[PodRefs], key: str, trees: Sequence[str]) -> str | None:
    """The UUID of a running pod that runs image ``key`` or uses one of ``trees`` (pure)."""
    for p in pods:
        if p.running and (key in p.images or not p.trees.isdisjoint(trees)):
            return p.uuid
    return None


@contextmanager
def prepare_lock(paths: Paths, *, exclusive: bool) -> Iterator[None]:
    """rkt's ``prepareLock``: held shared from rendering a pod's trees until the pod directory
    names them, exclusively while image gc/rm decide which trees are unused."""
    from ..store.lock import ensure_dir, flocked

    ensure_dir(paths.data, paths.locks)
    with flocked(paths.prepare_lock, exclusive=exclusive):
        yield

