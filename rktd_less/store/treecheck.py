"""Rendered trees under ``rkt image verify``: checked against their hash, rendered again when
they differ (rkt's ``tree cache verification failed … rebuilding``).

A tree records its digest (:mod:`.treehash`) the first time it is verified, by comparison
with a fresh render of its layers from blobs verified first; later verifies hash the tree
once and compare. A tree that differs is replaced by a fresh render in one step
(:meth:`.tree.TreeStore.swap_in`): pods running over the old tree keep it, and it is removed
at once only when no pod names the tree — otherwise ``rkt image gc`` removes it with the
tree once no pod does (it is a ``.tmp-<tree id>-*`` directory, as a crashed render's). The
store knows nothing of pods: the caller passes rkt's prepare lock and a reader of the trees
pods name (:mod:`rktd_less.pod.refs`).

Locks: a check holds the tree's lock shared; a fresh render and the swap hold it exclusively
(a pod being prepared meanwhile finds the tree rendered and does not wait); the prepare
lock, then the tree lock, is gc's order too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Set
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoreError
from . import treehash
from .export import hash_blob
from .lock import atomic_write
from .tree import Layer, TreeStore, dependency_list, rmtree, tree_id_for

if TYPE_CHECKING:
    from . import Store


class Outcome(StrEnum):
    MATCHES = "matches"
    DIFFERS = "differs"  # TreeCheck.problem says how
    UNRECORDED = "unrecorded"  # no digest yet: compare with a fresh render
    ABSENT = "absent"  # not rendered (removed, half-made): nothing a pod could use


@dataclass(frozen=True)
class TreeCheck:
    outcome: Outcome
    problem: str = ""


@dataclass(frozen=True)
class TreeVerdict:
    problem: str | None  # why the tree failed (it was rendered again); None: it verified
    note: str | None = None  # about an old copy left for the pods using it


def check(trees: TreeStore, tree_id: str) -> TreeCheck:
    """Compare tree ``tree_id`` with its recorded digest (rkt's treestore ``Check``)."""
    final = trees.paths.tree(tree_id)
    with trees.lock(tree_id, exclusive=False):
        if not trees.is_rendered(tree_id):
            return TreeCheck(Outcome.ABSENT)
        try:
            record = treehash.read_record(final)
        except (OSError, ValueError) as e:
            return TreeCheck(Outcome.DIFFERS, f"cannot read its hash record: {e}")
        if record is None:
            return TreeCheck(Outcome.UNRECORDED)
        try:
            actual = treehash.digest(final / "rootfs")
        except StoreError as e:
            return TreeCheck(Outcome.DIFFERS, f"cannot hash it: {e.message}")
        why = treehash.mismatch(record.digest, actual, recorded_by=record.method,
                                now=treehash.method())
    return TreeCheck(Outcome.MATCHES) if why is None else TreeCheck(Outcome.DIFFERS, why)


def layers_of(trees: TreeStore, tree_id: str, key: str) -> list[Layer]:
    """The layers tree ``tree_id`` of image ``key`` was rendered from: those its record
    names (once verified), else the image's dependency list now, if that still makes this
    tree."""
    try:
        record = treehash.read_record(trees.paths.tree(tree_id))
    except (OSError, ValueError):
        record = None
    if record is not None and tree_id_for(record.layers) == tree_id:
        # levels and ancestors only matter while a dependency list is being built
        return [Layer(k, trees.source.manifest(k), 0) for k in record.layers]
    layers = dependency_list(trees.source, key)
    if tree_id_for([lay.key for lay in layers]) != tree_id:
        raise StoreError(f'cannot render tree "{tree_id}" again: the dependencies of image '
                         f'"{layers[0].manifest.name}" changed since it was rendered',
                         hint="`rkt image gc` removes it once no pod uses it")
    return layers


def _record(tree: Path, data: bytes) -> None:
    try:
        atomic_write(tree / treehash.HASH_FILE, data)
    except OSError as e:
        raise StoreError(f"cannot record the hash of tree {tree.name}: {e.strerror}") from e


def _fresh(trees: TreeStore, tree_id: str, layers: list[Layer]) -> tuple[Path, int, str]:
    """Under the tree's lock: a fresh render in a temp dir, its digest recorded; the temp
    dir, its size and the digest."""
    tmp, size = trees.make(tree_id, layers)
    try:
        expected = treehash.digest(tmp / "rootfs")
        record = treehash.TreeRecord(tuple(lay.key for lay in layers), expected,
                                     treehash.method())
        _record(tmp, record.dumps())
    except BaseException:
        rmtree(tmp)
        raise
    return tmp, size, expected


def _rendered(trees: TreeStore, key: str, size: int) -> None:
    if trees.on_rendered is not None:
        trees.on_rendered(key, size)


def compare_fresh(trees: TreeStore, tree_id: str, layers: list[Layer]
                  ) -> tuple[str | None, Path | None]:
    """First verify of a tree without a digest: render ``layers`` afresh and compare. If
    both hash the same, the tree records the digest; else the fresh render replaces it.
    Why it differed (None: it did not) and the old tree after a swap."""
    final = trees.paths.tree(tree_id)
    with trees.lock(tree_id):
        if not trees.is_rendered(tree_id):  # removed meanwhile
            return None, None
        tmp, size, expected = _fresh(trees, tree_id, layers)
        try:
            try:
                why = treehash.mismatch(expected, treehash.digest(final / "rootfs"))
            except StoreError as e:
                why = f"cannot hash it: {e.message}"
            if why is None:
                _record(final, (tmp / treehash.HASH_FILE).read_bytes())
        except BaseException:
            rmtree(tmp)
            raise
        if why is None:
            rmtree(tmp)
            return None, None
        retired = trees.swap_in(tmp, tree_id)
    _rendered(trees, layers[0].key, size)
    return why, retired


def rebuild(trees: TreeStore, tree_id: str, layers: list[Layer]) -> Path | None:
    """Replace tree ``tree_id`` by a fresh render of ``layers`` (its digest recorded); the
    old tree, if there was one."""
    with trees.lock(tree_id):
        tmp, size, _ = _fresh(trees, tree_id, layers)
        retired = trees.swap_in(tmp, tree_id)
    _rendered(trees, layers[0].key, size)
    return retired


def drop_retired(trees: TreeStore, tree_id: str, retired: Path) -> None:
    """Remove an old tree :func:`rebuild` returned; the caller knows no pod uses it."""
    if retired.parent != trees.paths.tree_dir or \
            not retired.name.startswith(f".tmp-{tree_id}-"):
        raise StoreError(f'"{retired}" is not an old copy of tree "{tree_id}"')
    with trees.lock(tree_id):
        try:
            rmtree(retired)
        except OSError as e:
            raise StoreError(f'cannot remove the old copy of tree "{tree_id}": {e}') from e


def _sound(store: Store, layers: list[Layer]) -> None:
    """A tree is rendered again from sound blobs only: one rendered from a corrupt
    dependency would be recorded as good. (The image's own blob the caller verified.)"""
    for lay in layers[1:]:
        actual = hash_blob(store.blob_path(lay.key))
        if actual != lay.key:
            raise StoreError(f'dependency "{lay.manifest.name}" ("{lay.key}") is corrupt in '
                             f'the store: its blob hashes to "{actual}"',
                             hint=f"remove it with `rkt image rm {lay.key}` and fetch it again")


def verify_tree(store: Store, key: str, tree_id: str, *,
                failing: Callable[[str], None],
                pods_locked: Callable[[], contextlib.AbstractContextManager[object]],
                in_use: Callable[[], Set[str]]) -> TreeVerdict:
    """Verify tree ``tree_id`` of image ``key`` (whose blob the caller verified) and render it
    again if it differs; ``failing(why)`` is told before it is rendered again (after, for
    a first verify, which renders to compare). ``pods_locked`` (the prepare lock, held
    exclusively) keeps new pods from naming the tree while ``in_use`` reads the trees that
    pods name: an old tree one of them may run over stays."""
    trees = store.trees
    checked = check(trees, tree_id)
    if checked.outcome in (Outcome.MATCHES, Outcome.ABSENT):
        return TreeVerdict(None)
    layers = layers_of(trees, tree_id, key)
    _sound(store, layers)
    if checked.outcome == Outcome.UNRECORDED:
        why, retired = compare_fresh(trees, tree_id, layers)
        if why is None:
            return TreeVerdict(None)
        failing(why)
    else:
        why = checked.problem
        failing(why)
        retired = rebuild(trees, tree_id, layers)
    if retired is None:
        return TreeVerdict(why)
    with pods_locked():
        if tree_id in in_use():
            return TreeVerdict(why, f'the old copy of tree "{tree_id}" stays for the pods that '
                                    "use it: `rkt image gc` removes it once none does")
        try:
            drop_retired(trees, tree_id, retired)
        except StoreError as e:
            return TreeVerdict(why, e.message)
    return TreeVerdict(why)
