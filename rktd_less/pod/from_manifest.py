"""`rkt run --pod-manifest FILE`: a pod described by the user's own pod manifest.

rkt's rules (run.go): the manifest names every app, its image (by ID, already in the store),
volumes and mounts; so images and the flags that would build those parts are refused with
"conflicting flags set with --pod-manifest". Pod-level runtime flags (network, interactive,
hostname, UUID file, pod name) still apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..appc import isolators as iso
from ..appc.manifest import parse_pod_manifest
from ..errors import ManifestError, UsageError
from .volumes import implicit_volumes

if TYPE_CHECKING:
    from ..common.manifests import ImageManifestDoc, PodManifestDoc, RuntimeAppDoc, VolumeDoc

# Pod flags that build what the manifest already says; their defaults mean "not given".
CONFLICTING = {
    "volume": [], "mount": [], "set-env": [], "set-env-file": "", "inherit-env": False,
    "pull-policy": "new", "port": [],
}


def conflicts(values: Mapping[str, Any], n_images: int) -> list[str]:
    """The flags (and images) given together with --pod-manifest that rkt refuses."""
    bad = [f"--{k}" for k, default in CONFLICTING.items()
           if k in values and values[k] != default]
    if n_images:
        bad.append("images" if n_images > 1 else "an image")
    return bad


def check_flags(values: Mapping[str, Any], n_images: int) -> None:
    bad = conflicts(values, n_images)
    if bad:
        raise UsageError("conflicting flags set with --pod-manifest: " + ", ".join(bad),
                         hint="the manifest names the images, volumes, mounts and environment; "
                              "see `rkt help run`")


def load(path: str) -> PodManifestDoc:
    """Read and validate the user's pod manifest (appc schema); one line on any problem."""
    from ..appc.manifest import MAX_MANIFEST

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST + 1)
    except OSError as e:
        raise UsageError(f'cannot read pod manifest "{path}": {e.strerror}') from e
    pm = parse_pod_manifest(data)
    if not pm.apps:
        raise ManifestError(f'pod manifest "{path}" has no apps')
    return cast("PodManifestDoc", pm.to_dict())


def complete(manifest: PodManifestDoc, image_key: Callable[[str], str],
             image_manifest: Callable[[str], ImageManifestDoc]
             ) -> tuple[PodManifestDoc, list[ImageManifestDoc]]:
    """The manifest stage1 runs (pure given the two store lookups): image IDs made full store
    keys, image names filled in, implicit volumes for uncovered mountPoints (as rkt's stage1
    does), every app runnable. Returns it and each app's image manifest."""
    out = manifest.copy()
    apps: list[RuntimeAppDoc] = []
    img_manifests: list[ImageManifestDoc] = []
    for ra in manifest["apps"]:
        key = image_key(ra["image"]["id"])
        im = image_manifest(key)
        app = ra.copy()
        image = ra["image"].copy()
        image["id"] = key
        image.setdefault("name", im.get("name", ""))
        if "labels" not in image and im.get("labels"):
            image["labels"] = im["labels"]
        app["image"] = image
        runtime = app.get("app") or im.get("app") or {}
        if not runtime.get("exec"):
            raise ManifestError(f'pod manifest: app "{ra["name"]}" has nothing to run',
                                hint="give it app.exec, or use an image that has one")
        iso.check_all(runtime.get("isolators") or [], str(ra["name"]))
        app.setdefault("mounts", [])
        app.setdefault("annotations", [])
        apps.append(app)
        img_manifests.append(im)
    volumes: list[VolumeDoc] = [v.copy() for v in manifest.get("volumes", [])]
    implicit_volumes(apps, img_manifests, volumes)
    out["apps"] = apps
    out["volumes"] = volumes
    annotations = list(out.get("annotations", []))
    if not any(a.get("name") == "coreos.com/rkt/stage1/mutable" for a in annotations):
        annotations.append({"name": "coreos.com/rkt/stage1/mutable", "value": "false"})
    out["annotations"] = annotations
    return out, img_manifests


def host_sources(manifest: PodManifestDoc) -> Sequence[tuple[str, str]]:
    """(volume name, source) of every host volume, for the does-it-exist check."""
    return [(v["name"], v["source"]) for v in manifest.get("volumes", [])
            if v.get("kind") == "host"]
