"""stage0 prepare: images → pod manifest, app trees and the stage1 tree in a new pod dir."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..appc import isolators as iso
from ..appc.isolators import AppIsolatorFlags
from ..common.manifests import read_image_manifest
from ..common.podpaths import PodPaths
from ..errors import ManifestError, UsageError
from ..fsio import replace_file
from .volumes import implicit_volumes, prepare_volumes

if TYPE_CHECKING:
    from ..common.manifests import (
        AppDoc,
        ExposedPortDoc,
        ImageManifestDoc,
        IsolatorDoc,
        MountDoc,
        NameValueDoc,
        PodManifestDoc,
        RuntimeAppDoc,
        VolumeDoc,
    )

STAGE1_ANN_PREFIX = "coreos.com/rkt/stage1/"


@dataclass(frozen=True)
class AppRequest:
    """One image on the command line with its per-app flags (rkt's cli_apps)."""

    image: str
    name: str | None = None
    exec_: str | None = None
    args: tuple[str, ...] | None = None
    user: str | None = None
    group: str | None = None
    working_dir: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    readonly_rootfs: bool = False
    signature: str | None = None
    # --mount after this image, as cli/volume_args.py parsed it: {"volume", "path"}
    mounts: tuple[dict[str, Any], ...] = ()
    supplementary_gids: tuple[int, ...] | None = None
    isolator_flags: AppIsolatorFlags = field(default_factory=AppIsolatorFlags)
    annotations: tuple[tuple[str, str], ...] = ()  # --annotation: the pod manifest app's
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ResolvedApp:
    request: AppRequest
    key: str
    manifest: ImageManifestDoc


@dataclass(frozen=True)
class PodPlan:
    apps: tuple[ResolvedApp, ...]
    annotations: tuple[tuple[str, str], ...] = field(default=())
    # pod-wide environment, rkt's precedence (last wins): inherited parent env, image env,
    # --set-env-file, --set-env, then each app's --environment
    inherited_env: tuple[tuple[str, str], ...] = ()
    env_file: tuple[tuple[str, str], ...] = ()
    set_env: tuple[tuple[str, str], ...] = ()
    # as cli/volume_args.py parses them; pod_manifest() makes them VolumeDoc / MountDoc
    volumes: tuple[dict[str, Any], ...] = ()  # --volume
    mounts: tuple[dict[str, Any], ...] = ()  # --mount before the first image: every app
    ports: tuple[ExposedPortDoc, ...] = ()  # --port (net/ports.py)


def _image_name(manifest: ImageManifestDoc) -> str:
    return str(manifest.get("name", ""))


def default_app_name(image_name: str) -> str:
    """rkt: the last path component of the image name, made a valid AC Name."""
    base = image_name.rstrip("/").rsplit("/", 1)[-1].lower()
    out, prev_dash = [], True
    for ch in base:
        if ch.isascii() and ch.isalnum():
            out.append(ch)
            prev_dash = False
        elif not prev_dash:
            out.append("-")
            prev_dash = True
    name = "".join(out).strip("-")
    return name or "app"


def runtime_app(r: ResolvedApp, plan: PodPlan | None = None) -> AppDoc:
    """The app of one app's pod manifest entry: the image's app with the command line's
    overrides."""
    img_app: AppDoc = (r.manifest.get("app") or {}).copy()
    req = r.request
    exec_: list[str] = list(img_app.get("exec") or [])
    if req.exec_ is not None:
        exec_ = [req.exec_]
    if req.args is not None:
        exec_ = exec_ + list(req.args)
    if not exec_:
        raise UsageError(f'image "{_image_name(r.manifest)}" has no app to run',
                         hint="use --exec to name the program to run")
    app: AppDoc = img_app.copy()
    app["exec"] = exec_
    app.setdefault("user", "0")
    app.setdefault("group", "0")
    if req.user is not None:
        app["user"] = req.user
    if req.group is not None:
        app["group"] = req.group
    if req.supplementary_gids is not None:
        app["supplementaryGIDs"] = list(req.supplementary_gids)
    if req.working_dir is not None:
        app["workingDirectory"] = req.working_dir
    env = dict(plan.inherited_env) if plan else {}
    env.update({e["name"]: e["value"] for e in app.get("environment", [])})
    if plan:
        env.update(dict(plan.env_file))
        env.update(dict(plan.set_env))
    env.update(dict(req.environment))
    if env:
        app["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    name = _image_name(r.manifest)
    isolators = iso.check_all(iso.merge(iso.check_all(img_app.get("isolators") or [], name),
                                        req.isolator_flags), name)
    if isolators:
        app["isolators"] = cast("list[IsolatorDoc]", isolators)
    if req.user_annotations:
        app["userAnnotations"] = {**(img_app.get("userAnnotations") or {}),
                                  **dict(req.user_annotations)}
    if req.user_labels:
        app["userLabels"] = {**(img_app.get("userLabels") or {}), **dict(req.user_labels)}
    return app


def app_names(apps: Sequence[ResolvedApp]) -> list[str]:
    names: list[str] = []
    for r in apps:
        n = r.request.name or default_app_name(_image_name(r.manifest))
        if n in names:
            raise UsageError(f'duplicate app name "{n}"',
                             hint="give each app its own name with --name")
        names.append(n)
    return names


def _mounts(pod_wide: Sequence[dict[str, Any]],
            per_app: Sequence[dict[str, Any]]) -> list[MountDoc]:
    """rkt: a per-app --mount wins over a pod-wide one on the same path."""
    by_path = {m["path"]: dict(m) for m in pod_wide}
    by_path.update({m["path"]: dict(m) for m in per_app})
    return cast("list[MountDoc]", list(by_path.values()))


def pod_manifest(plan: PodPlan) -> PodManifestDoc:
    names = app_names(plan.apps)
    apps: list[RuntimeAppDoc] = []
    for name, r in zip(names, plan.apps, strict=True):
        labels = [lb for lb in r.manifest.get("labels", [])]
        apps.append({
            "name": name,
            "image": {"name": _image_name(r.manifest), "id": r.key, "labels": labels},
            "app": runtime_app(r, plan),
            "readOnlyRootFS": r.request.readonly_rootfs,
            "mounts": _mounts(plan.mounts, r.request.mounts),
            "annotations": [{"name": k, "value": v} for k, v in r.request.annotations],
        })
    volumes = cast("list[VolumeDoc]", [dict(v) for v in plan.volumes])
    vol_names = [v["name"] for v in volumes]
    if len(set(vol_names)) != len(vol_names):
        raise UsageError("duplicate volume name in --volume")
    for app in apps:
        for m in app["mounts"]:
            if m["volume"] not in vol_names:
                raise UsageError(f'--mount of unknown volume "{m["volume"]}"',
                                 hint="declare it with --volume")
    implicit_volumes(apps, [r.manifest for r in plan.apps], volumes)
    annotations: list[NameValueDoc] = [{"name": k, "value": v} for k, v in plan.annotations]
    annotations.append({"name": "coreos.com/rkt/stage1/mutable", "value": "false"})
    return {"acVersion": "0.8.11", "acKind": "PodManifest", "apps": apps, "volumes": volumes,
            "isolators": [], "annotations": annotations, "ports": list(plan.ports)}


def _write(path: Path, data: bytes | str) -> None:
    replace_file(path, data, durable=True)


def write_pod_dir(poddir: Path, manifest: PodManifestDoc, app_trees: dict[str, tuple[str, bytes]],
                  stage1_tree: str, stage1_manifest: bytes,
                  tree_rootfs: Callable[[str], Path] | None = None, *,
                  overlay: bool = True, private_users: str | None = None) -> None:
    """Everything stage1 needs in the pod directory (rkt's layout, reference §2.2).
    ``tree_rootfs`` maps a tree ID to its rendered rootfs (for docker volume copy-up, and the
    copies of ``overlay=False``: rkt's --no-overlay). ``private_users``: SHIFT:COUNT of
    --private-users."""
    if not overlay and tree_rootfs is None:
        raise ValueError("--no-overlay needs the rendered trees")
    pp = PodPaths(poddir)
    s1root = pp.stage1_rootfs
    for name, (tree_id, img_manifest) in app_trees.items():
        _write(pp.app_image_manifest(name), img_manifest)
        _write(pp.app_tree_id(name), tree_id)
        if overlay:
            (pp.overlay(tree_id) / "upper").mkdir(parents=True, exist_ok=True)
            (pp.overlay(tree_id) / "work").mkdir(parents=True, exist_ok=True)
    _write(pp.stage1_tree_id, stage1_tree)
    _write(pp.stage1_manifest, stage1_manifest)
    if overlay:
        s1root.mkdir(parents=True, exist_ok=True)
        # Status files are read from the stage1 overlay's upper dir (rkt touches rkt/status too).
        pp.overlay_status_dir(stage1_tree).mkdir(parents=True, exist_ok=True)
        (pp.overlay(stage1_tree) / "work").mkdir(parents=True, exist_ok=True)
    else:
        from ..host.copy import copy_tree

        assert tree_rootfs is not None
        copy_tree(tree_rootfs(stage1_tree), s1root)
        for name, (tree_id, _m) in app_trees.items():
            copy_tree(tree_rootfs(tree_id), pp.app_rootfs(name))
        pp.copied_status_dir().mkdir(parents=True, exist_ok=True)
    if tree_rootfs is not None:
        prepare_volumes(poddir, manifest,
                        {n: read_image_manifest(m) for n, (_t, m) in app_trees.items()},
                        {n: tree_rootfs(t) for n, (t, _m) in app_trees.items()})
    if overlay:
        _write(pp.overlay_prepared, b"")
    if private_users is not None:
        _write(pp.private_users, private_users)
    _write(pp.manifest, json.dumps(manifest, indent=2))


# rkt's stage0 ValidOSArch
VALID_OS_ARCH = {"linux": ("amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l",
                           "armv7b", "ppc64le")}


def check_os_arch(image_manifest: ImageManifestDoc, host_arch: str) -> None:
    """rkt's prepareAppImage checks: os and arch labels present and valid; beyond rkt, an
    image for another architecture than the machine's is refused here rather than failing to
    execute in the pod."""
    labels = {str(lb.get("name")): str(lb.get("value"))
              for lb in image_manifest.get("labels") or []}
    name = _image_name(image_manifest)
    for label in ("os", "arch"):
        if label not in labels:
            raise ManifestError(f"missing {label} label in the image manifest",
                                hint=f'image "{name}"')
    os_, arch = labels["os"], labels["arch"]
    if os_ not in VALID_OS_ARCH:
        raise ManifestError(f'bad os "{os_}" (must be one of: {list(VALID_OS_ARCH)})',
                            hint=f'image "{name}"')
    if arch not in VALID_OS_ARCH[os_]:
        raise ManifestError(f'bad arch "{arch}" for {os_} (must be one of: '
                            f'{list(VALID_OS_ARCH[os_])})', hint=f'image "{name}"')
    if arch != host_arch:
        raise ManifestError(f'image "{name}" is for {os_}/{arch}, this machine is '
                            f"linux/{host_arch}")


def stage1_entrypoint(stage1_manifest: ImageManifestDoc, which: str) -> str | None:
    """The path in the stage1 image of entrypoint ``which``: rkt's (``run``, ``gc``...) by its
    short name, others by their whole annotation name (common/contract STOP_POST_ANNOTATION)."""
    name = which if "/" in which else STAGE1_ANN_PREFIX + which
    for a in stage1_manifest.get("annotations", []):
        if a.get("name") == name:
            return str(a.get("value"))
    return None


def image_label(manifest: ImageManifestDoc, label: str) -> str | None:
    for lb in manifest.get("labels", []):
        if lb.get("name") == label:
            return str(lb.get("value"))
    return None


def display_name(manifest: ImageManifestDoc) -> str:
    """IMAGE NAME column: name[:version]."""
    v = image_label(manifest, "version")
    return _image_name(manifest) + (f":{v}" if v else "")

