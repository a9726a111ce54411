"""Removing images and trees: ``rkt image rm`` and ``rkt image gc`` (rkt §3.5), without rkt's
leaks: an image's rendered trees go with it (rkt #2890) and its tree size with them (#2968).

The store knows nothing of pods: callers pass the tree IDs that pods still reference (those are
never removed) and decide themselves which images running pods protect. What to collect is
decided by pure functions; the executors below apply it.

Consistency: a row and its blob go together under the image's key lock (the one import holds).
The rows go first, in one transaction; if the blob then cannot be removed the rows are put
back. A crash in between leaves a blob without a row, which :func:`sweep_orphans` (run by
``image gc``) removes, as it removes rows whose blob is gone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NotFound, RktError, StoreError
from .index import AciRow
from .lock import flocked

if TYPE_CHECKING:
    from . import Store


@dataclass(frozen=True)
class Removal:
    key: str
    name: str
    stale: tuple[str, ...] = ()  # what could not be removed (rkt's StoreRemovalError)


# --- decisions (pure) -----------------------------------------------------------------------
def trees_to_collect(tree_ids: Iterable[str], in_use: Set[str]) -> list[str]:
    """rkt gcTreeStore: every tree no pod references."""
    return sorted(t for t in set(tree_ids) if t not in in_use)


def images_to_collect(rows: Iterable[AciRow], *, now: float, grace_period: float,
                      protected: Set[str]) -> list[str]:
    """rkt gcStore: images unused for longer than ``grace_period``, least recently used first,
    except the ``protected`` ones (used by running pods)."""
    return [r.key for r in sorted(rows, key=lambda r: r.last_used)
            if now - r.last_used > grace_period and r.key not in protected]


# --- executors ------------------------------------------------------------------------------
def _unlink(path: Path) -> str | None:
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        return f"{path}: {e.strerror}"
    return None


def remove_image(store: Store, key: str, *, keep_trees: Set[str],
                 remove_trees: bool = True) -> Removal:
    """Remove image ``key``: its rows, blob, manifest copy and every tree rendered for it
    except ``keep_trees`` (trees pods reference; ``image gc`` takes them once unreferenced).
    ``remove_trees=False`` leaves all its trees (a caller who may not manage them).

    Raises NotFound for an unknown key and StoreError when the blob cannot be removed (then
    nothing changed); files left behind after that are reported in ``Removal.stale``."""
    paths = store.paths
    if not store.exists() or store.index.get(key) is None:
        raise NotFound(f'no image found with ID "{key}"')
    with flocked(paths.cas_locks / key):
        row, remotes = store.index.remove(key)
        if row is None:  # removed by a concurrent rm
            raise NotFound(f'no image found with ID "{key}"')
        blob_err = _unlink(paths.blob(key))
        if blob_err is not None:
            store.index.restore(row, remotes)
            raise StoreError(f"cannot remove the blob {blob_err}",
                             hint="run as root, or as the user who fetched the image")
        stale = [e for e in (_unlink(paths.image_manifest(key)),) if e]
    store.forget(key)
    if not remove_trees:
        return Removal(key, row.name, tuple(stale))
    try:
        trees = store.trees.trees_of(key)
    except StoreError as e:
        return Removal(key, row.name, (*stale, e.message))
    for t in trees:
        if t in keep_trees:
            continue
        try:
            store.remove_tree(t)
        except RktError as e:
            stale.append(e.message)
    return Removal(key, row.name, tuple(stale))


def _blob_keys(store: Store) -> list[str]:
    try:
        subdirs = os.listdir(store.paths.blob_dir)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise StoreError(f"cannot list {store.paths.blob_dir}: {e.strerror}") from e
    keys = []
    for sub in sorted(subdirs):
        try:
            keys += [n for n in os.listdir(store.paths.blob_dir / sub)
                     if n.startswith("sha512-") and n[7:9] == sub]
        except (NotADirectoryError, FileNotFoundError):
            continue
        except OSError as e:
            raise StoreError(f"cannot list {store.paths.blob_dir / sub}: {e.strerror}") from e
    return keys


def _blob_missing(path: Path) -> bool:
    try:
        path.lstat()
    except FileNotFoundError:
        return True
    return False  # anything else (even EACCES) is not proof that it is gone


def sweep_orphans(store: Store) -> list[tuple[str, str]]:
    """Blobs without a row (a crash during rm) and rows without a blob: removed, each under
    its key lock, so an import in progress (which holds it) is never mistaken for one.
    Returns (key, what) pairs, what being ``blob`` or ``row``."""
    if not store.exists():
        return []
    done: list[tuple[str, str]] = []
    rows = {r.key for r in store.index.all()}
    for key in _blob_keys(store):
        if key in rows:
            continue
        with flocked(store.paths.cas_locks / key):
            if store.index.get(key) is None:
                err = _unlink(store.paths.blob(key))
                if err is not None:
                    raise StoreError(f"cannot remove the orphaned blob {err}")
                _unlink(store.paths.image_manifest(key))
                done.append((key, "blob"))
    for key in sorted(rows):
        if not _blob_missing(store.paths.blob(key)):
            continue
        with flocked(store.paths.cas_locks / key):
            if _blob_missing(store.paths.blob(key)) and store.index.get(key) is not None:
                store.index.remove(key)
                _unlink(store.paths.image_manifest(key))
                store.forget(key)
                done.append((key, "row"))
    return done
