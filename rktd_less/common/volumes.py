"""Where a pod's volumes are and where their mounts land in an app's rootfs: shared by stage0
(prepare) and stage1 (which mounts them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import PodError


def shared_volume_dir(poddir: Path, name: str) -> Path:
    return poddir / "sharedVolumes" / name


def volume_source(poddir: Path, volume: Mapping[str, Any]) -> Path:
    if volume.get("kind") == "host":
        return Path(str(volume["source"]))
    return shared_volume_dir(poddir, str(volume["name"]))


MAX_SYMLINKS = 40  # as the kernel's path walk (ELOOP)


def safe_target(root: Path, path: str) -> Path:
    """``path`` resolved inside ``root`` as if ``root`` were ``/`` (what the app sees from its
    chroot): ``..`` stops at the root and symlinks are followed within it, an absolute one from
    ``root``, so a mount target never leaves the app's rootfs whatever the image's links say
    (rkt's mount tests). The image cannot change its links meanwhile: no app runs yet."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        cand = root.joinpath(*resolved, part)
        if os.path.islink(cand):
            links += 1
            if links > MAX_SYMLINKS:
                raise PodError(f'mount path "{path}": too many levels of symbolic links in '
                               "the image")
            target = os.readlink(cand)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    if not resolved:
        raise PodError(f'mount path "{path}" is the app\'s root directory',
                       hint="mount on a directory below /")
    return root.joinpath(*resolved)
