"""Pod directories and their transitions: flock + rename + fsync (reference §2.2).

A pod is ``<data>/pods/<phase>/<uuid>``. Who holds a lock on the directory decides the state
(see :func:`state.derive_state`): stage0 holds an exclusive lock while preparing; from the move
to ``run/`` on, stage0 and stage1 hold *shared* locks for as long as the pod runs, so a pod is
running exactly while an exclusive non-blocking lock cannot be taken. Losers of rename races
see ENOENT and move on.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..common.podpaths import PodPaths
from ..errors import Ambiguous, NotFound, PodError, UsageError
from ..fsio import try_lock
from ..ids import is_full_uuid, new_pod_uuid
from ..paths import POD_PHASES, Paths
from .names import lookup
from .state import PodState, derive_state


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_layout(paths: Paths) -> None:
    """The phase dirs, 2750 root:rkt as units/tmpfiles.d says, whichever command comes first."""
    if all(paths.phase_dir(p).is_dir() for p in POD_PHASES):
        return
    from ..store.lock import ensure_dir

    for phase in POD_PHASES:
        ensure_dir(paths.data, paths.phase_dir(phase))


def open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def is_locked(path: Path) -> bool:
    """True if somebody holds a lock on the directory (probe with an exclusive lock)."""
    try:
        fd = open_dir(path)
    except FileNotFoundError:
        return False
    try:
        return not try_lock(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class PodRef:
    uuid: str
    phase: str
    path: Path

    def state(self) -> PodState:
        return derive_state(self.phase, is_locked(self.path))


def find(paths: Paths, uuid: str) -> PodRef | None:
    phase = paths.pod_phase(uuid)
    return PodRef(uuid, phase, paths.pod(phase, uuid)) if phase is not None else None


def all_pods(paths: Paths) -> Iterator[PodRef]:
    seen: set[str] = set()
    for phase in POD_PHASES:
        d = paths.phase_dir(phase)
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            continue
        for name in names:
            if name in seen or not is_full_uuid(name):
                continue
            seen.add(name)
            yield PodRef(name, phase, d / name)


def resolve(paths: Paths, text: str) -> PodRef:
    """A pod by full UUID, its ``--pod-name``, or an unambiguous UUID prefix (rkt
    pkg/pod/uuid.go); a name wins over a UUID prefix that reads the same (as with docker)."""
    t = text.strip().lower()
    if not t:
        raise UsageError("empty UUID", hint="pass a pod UUID or an unambiguous prefix of one")
    named = lookup(paths, text.strip())
    if named is not None:
        t = named
    if is_full_uuid(t):
        ref = find(paths, t)
        if ref is None:
            raise NotFound(f'no matches found for "{text}"', hint="see `rkt list` for pods")
        return ref
    matches = [p for p in all_pods(paths) if p.uuid.startswith(t)]
    if not matches:
        raise NotFound(f'no matches found for "{text}"', hint="see `rkt list` for pods")
    if len(matches) > 1:
        raise Ambiguous(f'ambiguous UUID "{text}": matches {len(matches)} pods',
                        hint="type more characters of the UUID")
    return matches[0]


class Embryo:
    """A new pod being prepared: created in ``embryo/``, then locked and moved to ``prepare/``.

    The exclusive lock is held on ``self.fd`` until the pod reaches ``run/`` or ``prepared/``
    (or is abandoned, which leaves an "aborted prepare" for gc).
    """

    def __init__(self, paths: Paths) -> None:
        ensure_layout(paths)
        self.paths = paths
        self.uuid = new_pod_uuid()
        emb = paths.pod("embryo", self.uuid)
        # 0750 in the setgid phase dir: group rkt may read the pod (rkt list/status), as rkt
        emb.mkdir(mode=0o750)
        self.fd = open_dir(emb)
        if not try_lock(self.fd):  # nobody else can know this brand-new UUID
            raise PodError(f"cannot lock new pod {self.uuid}")
        self.path = paths.pod("prepare", self.uuid)
        os.rename(emb, self.path)
        _fsync_dir(paths.phase_dir("prepare"))
        # rkt: CREATED is the mtime of pod-created.
        PodPaths(self.path).created.touch()

    def move(self, phase: str) -> Path:
        """Move to ``run`` or ``prepared``; the caller keeps ``fd``."""
        dst = self.paths.pod(phase, self.uuid)
        os.rename(self.path, dst)
        _fsync_dir(self.paths.phase_dir(phase))
        self.path = dst
        return dst

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def share_lock_for_run(fd: int, path: Path) -> None:
    """Turn stage0's exclusive lock into the shared 'running' lock.

    flock conversion is not atomic: in the instant between, a gc could take the pod for exited
    and move it. Detect that and fail rather than run a pod out of a garbage directory.
    """
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    fst = os.fstat(fd)
    if st is None or (st.st_ino, st.st_dev) != (fst.st_ino, fst.st_dev):
        raise PodError(f"pod {path.name} was moved by a concurrent gc while starting")


def lock_prepared(paths: Paths, ref: PodRef) -> tuple[int, Path]:
    """run-prepared: take the prepared pod exclusively and move it to ``run/``."""
    if ref.phase != "prepared":
        raise PodError(f"pod {ref.uuid} is not prepared (state {ref.state()})")
    fd = open_dir(ref.path)
    if not try_lock(fd):
        os.close(fd)
        raise PodError(f"pod {ref.uuid} is being used by another process")
    dst = paths.pod("run", ref.uuid)
    try:
        os.rename(ref.path, dst)
    except FileNotFoundError as e:
        os.close(fd)
        raise PodError(f"pod {ref.uuid} was removed") from e
    return fd, dst


def mark(paths: Paths, ref: PodRef, phase: str) -> PodRef | None:
    """Rename a pod into ``phase``; None if another process moved it first."""
    dst = paths.pod(phase, ref.uuid)
    try:
        os.rename(ref.path, dst)
    except FileNotFoundError:
        return None
    # rkt measures the grace period from the ctime of this rename.
    return PodRef(ref.uuid, phase, dst)


def ctime(path: Path) -> float:
    try:
        return path.stat().st_ctime
    except FileNotFoundError:
        return time.time()
