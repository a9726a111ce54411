"""Calling a pod's stage1 entrypoints (stop, gc, enter) from stage0, with cwd = the pod dir."""

from __future__ import annotations

from pathlib import Path

from ..common.contract import entry_env
from ..common.manifests import read_image_manifest
from ..common.podpaths import PodPaths
from ..errors import Stage1Error
from ..host import proc
from ..paths import Paths
from .poddir import PodRef
from .prepare import stage1_entrypoint


def entrypoint(paths: Paths, ref: PodRef, which: str) -> Path | None:
    return entrypoint_at(paths, ref.path, which)


def entrypoint_at(paths: Paths, poddir: Path, which: str) -> Path | None:
    """Entrypoint ``which`` (prepare.stage1_entrypoint) of the pod's stage1, if it is there."""
    try:
        pp = PodPaths(poddir)
        tree = pp.stage1_tree_id.read_text().strip()
        manifest = read_image_manifest(pp.stage1_manifest)
    except (OSError, ValueError):
        return None
    entry = stage1_entrypoint(manifest, which)
    if entry is None:
        return None
    p = paths.tree(tree) / "rootfs" / entry.lstrip("/")
    return p if p.is_file() else None


def call(paths: Paths, ref: PodRef, which: str, args: list[str]) -> None:
    ep = entrypoint(paths, ref, which)
    if ep is None:
        if which == "gc":
            return  # the stage1 image is gone: nothing of it to clean up
        raise Stage1Error(f'pod "{ref.uuid}": stage1 has no "{which}" entrypoint')
    proc.run([str(ep), *args, ref.uuid], cwd=ref.path, what=f"stage1 {which}",
             env=proc.clean_env(entry_env()))


def exec_entrypoint(paths: Paths, ref: PodRef, which: str, args: list[str]) -> int:
    """Run an interactive entrypoint (enter) with our stdio; its exit status is returned.
    Unlike :func:`call`, no UUID is appended: the contract's args are complete."""
    ep = entrypoint(paths, ref, which)
    if ep is None:
        raise Stage1Error(f'pod "{ref.uuid}": stage1 has no "{which}" entrypoint')
    return proc.run_passthrough([str(ep), *args], cwd=ref.path,
                                env=proc.clean_env(entry_env()))
