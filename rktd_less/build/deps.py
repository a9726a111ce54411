"""Images a build starts from or depends on, through rktd-less's own fetch and store: appc
discovery over HTTPS, signatures verified by default, local files, docker:// images, and the
store as the cache between builds (acbuild had only discovery, unverified, per build).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .aci import fill_from_file

if TYPE_CHECKING:
    from ..appc.manifest import Dependency, ImageManifest
    from ..fetch.images import FetchSettings
    from ..store import Store


def fill_from_image(store: Store, settings: FetchSettings, text: str,
                    rootfs: Path) -> ImageManifest:
    """``begin NAME`` (or ``docker://…``): the image fetched (and verified) into the store,
    its manifest and its own rootfs taken as the build's (its dependencies stay dependencies)."""
    from ..fetch.resolve import resolve_image

    key = resolve_image(store, text, settings)
    # a stored image is an ACI: its own (validated) manifest comes back
    return fill_from_file(store.blob_path(key), rootfs, store.manifest(key))


def fetch_dependency(store: Store, settings: FetchSettings, dep: Dependency,
                     parent: str) -> str:
    """``dep add``: the dependency (and its own) from the store, else discovered, fetched and
    verified, at once (acbuild waited for the first ``run``, and verified nothing)."""
    from ..fetch.images import Fetcher

    return Fetcher(store, settings).fetch_dependency(dep.image_name, dep.label_map(),
                                                     dep.image_id or "", parent)


@contextmanager
def dependency_trees(store: Store, settings: FetchSettings,
                     m: ImageManifest) -> Iterator[list[Path]]:
    """The rendered tree (rootfs) of each of the build's dependencies, top-most first: the
    last dependency wins, as in appc's rendering. The store's trees are the cache between
    builds; they are held against ``rkt image gc`` (its prepare lock, shared) meanwhile."""
    from ..pod.refs import prepare_lock

    if not m.dependencies:  # nothing of rkt's store is touched (or made)
        yield []
        return
    keys = [fetch_dependency(store, settings, d, m.name) for d in m.dependencies]
    with prepare_lock(store.paths, exclusive=False):
        yield [store.tree_rootfs(store.render(k)) for k in reversed(keys)]
