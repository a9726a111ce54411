"""Pod volumes (appc pods.md, reference §4.3): implicit empty volumes for image mountPoints no
pod mount covers, docker's copy-up of image content into them (appc/docker2aci#141), and the
host directories behind each app mount."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.volumes import safe_target, shared_volume_dir

if TYPE_CHECKING:
    from ..common.manifests import ImageManifestDoc, PodManifestDoc, RuntimeAppDoc, VolumeDoc

DOCKER_ANNOTATION = "appc.io/docker/repository"


def is_docker_image(manifest: ImageManifestDoc) -> bool:
    """rkt treats an image as docker-converted iff it has this annotation (mount.go)."""
    return any(a.get("name") == DOCKER_ANNOTATION for a in manifest.get("annotations", []) or [])


def implicit_volumes(apps: Sequence[RuntimeAppDoc],
                     image_manifests: Sequence[ImageManifestDoc],
                     volumes: list[VolumeDoc]) -> None:
    """Give every image mountPoint without a pod mount an ``empty`` volume of its name, as rkt
    does; pure: edits the pod manifest's ``apps[].mounts`` and ``volumes`` in place."""
    have = {v["name"] for v in volumes}
    for app, manifest in zip(apps, image_manifests, strict=True):
        mounted = {m["path"] for m in app.get("mounts", [])}
        for mp in (manifest.get("app") or {}).get("mountPoints", []) or []:
            if mp["path"] in mounted:
                continue
            if mp["name"] not in have:
                volumes.append({"name": mp["name"], "kind": "empty",
                                "readOnly": bool(mp.get("readOnly", False)),
                                "mode": "0755", "uid": 0, "gid": 0})
                have.add(mp["name"])
            app.setdefault("mounts", []).append({"volume": mp["name"], "path": mp["path"]})


__all__ = ["implicit_volumes", "is_docker_image", "prepare_volumes"]


def prepare_volumes(poddir: Path, manifest: PodManifestDoc,
                    image_manifests: Mapping[str, ImageManifestDoc],
                    app_rootfs: Mapping[str, Path]) -> None:
    """Create the pod's ``empty`` volumes (mode/uid/gid as declared) and fill the implicit
    volume of a docker image's VOLUME with what the image has at that path, as docker does.
    ``image_manifests`` and ``app_rootfs`` (the rendered tree) are keyed by app name."""
    from ..host import proc

    for vol in manifest.get("volumes", []) or []:
        if vol.get("kind") != "empty":
            continue
        d = shared_volume_dir(poddir, str(vol["name"]))
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, int(str(vol.get("mode", "0755")), 8))
        os.chown(d, int(vol.get("uid", 0)), int(vol.get("gid", 0)))
    filled: set[str] = set()
    for app in manifest.get("apps", []) or []:
        image = image_manifests[app["name"]]
        if not is_docker_image(image):
            continue
        points = {mp["name"]: mp["path"]
                  for mp in (image.get("app") or {}).get("mountPoints", []) or []}
        for m in app.get("mounts", []) or []:
            name = m["volume"]
            if name in filled or points.get(name) != m["path"]:
                continue
            src = safe_target(app_rootfs[app["name"]], m["path"])
            if src.is_dir():
                proc.run(["cp", "-a", "--", f"{src}/.", str(shared_volume_dir(poddir, name))],
                         what=f'copy image content into volume "{name}"')
            filled.add(name)
