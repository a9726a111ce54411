"""rkt run: prepare a pod from images and run it in the foreground."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.contract import entry_env
from ..common.podpaths import PodPaths
from ..common.uidrange import UidRange
from ..config import load_stage1
from ..errors import PodError, RktError, UsageError
from ..fetch.resolve import resolve_image
from ..pod import launch, names, poddir, stage1select, userns
from ..pod.prepare import (
    PodPlan,
    ResolvedApp,
    check_os_arch,
    pod_manifest,
    stage1_entrypoint,
    write_pod_dir,
)
from ..stage1.nspawn import IPC_MODES
from .context import Context
from .flags import Flag, Kind
from .run_args import env_pairs, parse_run
from .volume_args import VOLUME_USAGE, parse_mount, parse_volume

if TYPE_CHECKING:
    from ..store import Store

RAW_ARGS = True
SHORT = "Run image(s) in a pod in rkt"
USAGE = """Usage:
  rkt run [pod flags] IMAGE [per-app flags] [-- image-args... [---]] ...

Pod flags (before the first image):
      --net=host|none            network of the pod (default host)
      --interactive              run the pod interactively (one image only)
      --hostname=NAME            pod hostname (default rkt-<uuid>)
      --pull-policy=new|never|update
      --uuid-file-save=FILE      write the pod UUID to FILE
      --inherit-env, --set-env=NAME=VALUE, --set-env-file=FILE   environment for all apps
      --volume=NAME,kind=host,source=PATH[,readOnly=BOOL][,recursive=BOOL]
      --volume=NAME,kind=empty[,mode=0755][,uid=0][,gid=0]
      --mount=volume=NAME,target=PATH   mount a volume into every app
      --pod-name=NAME            a unique name for the pod, usable wherever a UUID is
      --pod-manifest=FILE        run this pod manifest (no images, volumes or env flags then)
      --detach                   start the pod as rkt-<uuid>.service, print its UUID and
                                 return once its apps are up (logs: journalctl -u)
      --stage1-path=FILE | --stage1-url=URL | --stage1-name=NAME | --stage1-hash=ID |
      --stage1-from-dir=FILE     the stage1 image (one of them; default: stage1.d config,
                                 else stage1-nspawn.aci of the stage1 images directory)
Per-app flags (after an image): --name --exec --user --group --supplementary-gids
      --working-dir --environment=NAME=VALUE --readonly-rootfs --mount=volume=NAME,target=PATH
      --signature=FILE
"""
FLAGS: dict[str, Flag] = {
    "net": Flag(Kind.STR, "host", "pod network", no_opt="default"),
    "interactive": Flag(Kind.BOOL, False, "run pod interactively"),
    "hostname": Flag(Kind.STR, "", "pod hostname"),
    "ipc": Flag(Kind.STR, "auto", "IPC namespace: auto (= private), private, or parent "
                                  "(the host's)"),
    "pull-policy": Flag(Kind.STR, "new", "never, new or update"),
    "mds-register": Flag(Kind.BOOL, False, "register the pod with the metadata service "
                                           "(accepted as rkt's; there is no metadata service yet)"),
    "store-only": Flag(Kind.BOOL, False, "deprecated: --pull-policy=never"),
    "no-store": Flag(Kind.BOOL, False, "deprecated: --pull-policy=update"),
    "no-overlay": Flag(Kind.BOOL, False, "disable overlay filesystem: copy the images"),
    "private-users": Flag(Kind.BOOL, False, "run within user namespaces (needs --no-overlay)"),
    "uuid-file-save": Flag(Kind.STR, "", "write out pod UUID to specified file"),
    "inherit-env": Flag(Kind.BOOL, False, "apps inherit all environment variables of rkt"),
    "set-env": Flag(Kind.MULTI, [], "an environment variable for all apps: NAME=VALUE"),
    "set-env-file": Flag(Kind.STR, "", "a file of NAME=VALUE lines for all apps"),
    "volume": Flag(Kind.MULTI, [], "a pod volume: " + VOLUME_USAGE),
    "mount": Flag(Kind.MULTI, [], "mount a volume into every app: volume=NAME,target=PATH"),
    "pod-name": Flag(Kind.STR, "", "a unique name for the pod, usable instead of its UUID"),
    "pod-manifest": Flag(Kind.STR, "", "the path to the pod manifest to run"),
    "detach": Flag(Kind.BOOL, False, "start the pod as a service and return once it is up"),
    **{f: Flag(Kind.MULTI, [], h) for f, h in stage1select.FLAG_HELP.items()},
}


def _host_volume_checked(vol: dict[str, Any]) -> dict[str, Any]:
    if vol["kind"] == "host" and not os.path.exists(vol["source"]):
        raise UsageError(f'volume "{vol["name"]}": source "{vol["source"]}" does not exist')
    return vol


def read_env_file(path: str) -> tuple[tuple[str, str], ...]:
    """rkt's --set-env-file: NAME=VALUE per line; blank lines and lines starting with # or ;
    are ignored."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f'cannot read environment file "{path}": {e.strerror}') from e
    lines = [ln.strip() for ln in text.splitlines()]
    return env_pairs([ln for ln in lines if ln and not ln.startswith(("#", ";"))])


def check_pod_flags(values: dict[str, Any], n_apps: int) -> None:
    if values["net"] not in ("host", "none"):
        raise UsageError(f'network "{values["net"]}" is not available yet',
                         hint="use --net=host or --net=none")
    if values.get("ipc", "auto") not in IPC_MODES:
        raise UsageError(f'invalid --ipc "{values["ipc"]}"', hint="auto, private or parent")
    if values.get("store-only") and values.get("no-store"):
        raise UsageError("both --store-only and --no-store specified")
    if values.get("store-only"):  # rkt's deprecated aliases
        values["pull-policy"] = "never"
    elif values.get("no-store"):
        values["pull-policy"] = "update"
    if values.get("private-users") and not values.get("no-overlay"):
        raise UsageError("cannot use both overlay and user namespace: not implemented yet",
                         hint="Try --no-overlay")
    if values["interactive"] and n_apps != 1:
        raise UsageError("interactive option only supports one image")
    if values.get("detach"):
        if values["interactive"]:
            raise UsageError("--detach and --interactive cannot be used together")
        from ..systemd import bus

        if not bus.available():
            raise UsageError("--detach needs a running systemd to leave the pod to",
                             hint="run the pod in the foreground under your init's supervision")
    if values.get("pod-name"):
        from ..pod.names import check

        check(values["pod-name"])


def _env_plan(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "inherited_env": tuple(os.environ.items()) if values["inherit-env"] else (),
        "env_file": read_env_file(values["set-env-file"]) if values["set-env-file"] else (),
        "set_env": env_pairs(values["set-env"]),
        "volumes": tuple(_host_volume_checked(parse_volume(v)) for v in values["volume"]),
        "mounts": tuple(parse_mount(m) for m in values["mount"]),
    }


def _render_apps(manifest: dict[str, Any], store: Store) -> dict[str, tuple[str, bytes]]:
    """app name → (its rendered tree, its image manifest)."""
    return {ra["name"]: (store.render(ra["image"]["id"]),
                         store.manifest_bytes(ra["image"]["id"]))
            for ra in manifest["apps"]}


def _from_manifest(raw: dict[str, Any], store: Store) -> dict[str, Any]:
    from ..pod import from_manifest

    manifest, _ims = from_manifest.complete(
        raw, store.resolve_id, lambda key: json.loads(store.manifest_bytes(key)))
    for name, source in from_manifest.host_sources(manifest):
        _host_volume_checked({"name": name, "kind": "host", "source": source})
    return manifest


def _check_ids(manifest: dict[str, Any], trees: dict[str, tuple[str, bytes]],
               store: Store) -> None:
    """--user/--group names and file paths resolve in the image now, not in stage1 after the
    pod dir was made (stage1 resolves them again against the same tree)."""
    from ..stage1.apps import resolve_id

    for ra in manifest["apps"]:
        app = ra.get("app") or json.loads(trees[ra["name"]][1]).get("app") or {}
        rootfs = store.tree_rootfs(trees[ra["name"]][0])
        resolve_id(str(app.get("user", "0")), rootfs, "passwd", "user", ra["name"])
        resolve_id(str(app.get("group", "0")), rootfs, "group", "group", ra["name"])


def prepare_pod(ctx: Context, values: dict[str, Any], plan_apps: list[ResolvedApp],
                store: Store, user_manifest: dict[str, Any] | None,
                env_plan: dict[str, Any], stage1_key: str) -> tuple[poddir.Embryo, Path]:
    """Render everything first, then make the pod dir; on failure leave nothing behind."""
    stage1_tree = store.render(stage1_key)
    if user_manifest is not None:
        manifest = _from_manifest(user_manifest, store)
    else:
        manifest = pod_manifest(PodPlan(apps=tuple(plan_apps), **env_plan))
    from ..common.platform import host_arch

    for ra in manifest["apps"]:  # before any tree is rendered
        check_os_arch(json.loads(store.manifest_bytes(ra["image"]["id"])), host_arch())
    trees = _render_apps(manifest, store)
    _check_ids(manifest, trees, store)
    s1_manifest = store.manifest_bytes(stage1_key)
    entry = stage1_entrypoint(json.loads(s1_manifest), "run")
    if entry is None:
        raise UsageError("stage1 image has no run entrypoint")
    embryo = poddir.Embryo(ctx.paths)
    name = values.get("pod-name") or None
    try:
        if name:
            names.claim(ctx.paths, name, embryo.uuid)
            names.record(embryo.path, name)
        write_pod_dir(embryo.path, manifest, trees, stage1_tree, s1_manifest,
                      store.tree_rootfs, overlay=not values.get("no-overlay"),
                      private_users=(userns.random_range().serialize()
                                     if values.get("private-users") else None))
    except BaseException:
        discard_embryo(ctx, embryo, values)
        raise
    entrypoint = ctx.paths.tree(stage1_tree) / "rootfs" / entry.lstrip("/")
    return embryo, entrypoint


def discard_embryo(ctx: Context, embryo: poddir.Embryo, values: dict[str, Any]) -> None:
    """A pod that failed before it could run: its dir, its name claim and its lock go."""
    shutil.rmtree(embryo.path, ignore_errors=True)
    names.release(ctx.paths, embryo.uuid, values.get("pod-name") or None)
    embryo.close()


def prepare_from_args(args: list[str], spec: dict[str, Flag],
                      make_ctx: Callable[[dict[str, Any]], Context]
                      ) -> tuple[Context, dict[str, Any], poddir.Embryo, Path]:
    """Shared by run and prepare: parse, fetch (verified), render, write the pod dir."""
    parsed = parse_run(spec, args, require_image=False)
    ctx = make_ctx(parsed.pod)
    values = parsed.pod
    user_manifest = None
    if values.get("pod-manifest"):
        from ..pod import from_manifest

        from_manifest.check_flags(values, len(parsed.apps))
        user_manifest = from_manifest.load(values["pod-manifest"])
        n_apps = len(user_manifest["apps"])
    elif not parsed.apps:
        raise UsageError("no image given",
                         hint="usage: rkt run [flags] IMAGE [-- image-args...]")
    else:
        n_apps = len(parsed.apps)
    check_pod_flags(values, n_apps)
    stage1_choice = stage1select.from_flags(values, args)
    stage1_config = load_stage1(ctx.config)
    check_uuid_file(values)
    env_plan = _env_plan(values)  # every flag checked before any work is done
    settings = ctx.fetch_settings(values["pull-policy"])
    ctx.require_root()
    from ..store import Store

    store = Store(ctx.paths)
    resolved = []
    for req in parsed.apps:
        key = resolve_image(store, req.image, settings, req.signature)
        resolved.append(ResolvedApp(request=req, key=key,
                                    manifest=json.loads(store.manifest_bytes(key))))
    # after the apps' images, so that a refused image leaves no stage1 in a new store
    stage1_key = stage1select.select(store, settings, stage1_choice, stage1_config,
                                     stage1select.images_dir(ctx.paths_config.stage1_images))
    # Shared with other preparers, exclusive against image gc/rm: a tree rendered here must
    # not be collected before the pod dir names it.
    from ..pod.refs import prepare_lock

    with prepare_lock(ctx.paths, exclusive=False):
        embryo, entrypoint = prepare_pod(ctx, values, resolved, store, user_manifest, env_plan,
                                         stage1_key)
    return ctx, values, embryo, entrypoint


def stage1_args(ctx: Context, uuid: str, path: Path, values: dict[str, Any]
                ) -> tuple[str, ...]:
    return launch.stage1_run_args(uuid, debug=ctx.debug, net=values["net"],
                                  private_users=_private_users(path),
                                  interactive=values["interactive"],
                                  hostname=values["hostname"] or None,
                                  insecure=ctx.insecure.options,
                                  ipc=values.get("ipc", "auto"))


def measure_pod(ctx: Context, uuid: str, path: Path, values: dict[str, Any]) -> None:
    """TPM measurement before the pod starts, where a TPM is configured (pod/measure.py)."""
    from ..pod import measure
    from ..store.lock import ensure_dir

    cfg = measure.load_config([ctx.config.system, ctx.config.local])
    if cfg is None:
        return
    try:
        pp = PodPaths(path)
        pm = json.loads(pp.manifest.read_text())
        apps = [(str(a["name"]), str(a["image"]["id"])) for a in pm.get("apps", [])]
        stage1 = pp.stage1_tree_id.read_text().strip()
        ensure_dir(ctx.paths.data, ctx.paths.locks)
        measure.measure(cfg, ctx.paths.locks / "tpm", path, stage1, apps,
                        stage1_args(ctx, uuid, path, values))
    except (RktError, OSError, ValueError, KeyError) as e:
        msg = getattr(e, "message", None) or str(e)
        if cfg.policy == "require":
            raise PodError(f"TPM measurement failed: {msg}",
                           hint="the TPM policy is require: the pod does not run") from None
        ctx.err(f"warning: TPM measurement failed, running the pod anyway: {msg}")


def _private_users(path: Path) -> str | None:
    """SHIFT:COUNT of a pod prepared with --private-users (rkt reads it at every start)."""
    try:
        text = PodPaths(path).private_users.read_text()
    except FileNotFoundError:
        return None
    return UidRange.parse(text).serialize()


def _selinux_env() -> tuple[tuple[str, str], ...]:
    """rkt: a pod of its own MCS level where SELinux and lxc_contexts are there."""
    from ..common import selinux

    labels = selinux.pod_labels()
    if labels is None:
        return ()
    return ((selinux.ENV_CONTEXT, labels.process), (selinux.ENV_MOUNT_CONTEXT, labels.file))


def launch_pod(ctx: Context, uuid: str, path: Path, lock_fd: int, entrypoint: Path,
               values: dict[str, Any]) -> int:
    """Start a pod that is in ``run/`` and whose shared 'running' lock ``lock_fd`` holds."""
    lx = launch.Launch(uuid=uuid, poddir=path, entrypoint=entrypoint,
                       args=stage1_args(ctx, uuid, path, values),
                       interactive=values["interactive"],
                       env=(*entry_env().items(), *_selinux_env()))
    if values.get("detach"):
        return _detach(ctx, lx, lock_fd)
    mode = launch.choose_mode()
    if ctx.debug:
        ctx.err(f"pod {uuid}: launching in mode {mode}")
    if mode == launch.Mode.UNIT:
        return launch.run_in_unit(lx, lock_fd)
    if mode == launch.Mode.NO_SYSTEMD:
        ctx.err("systemd is not running here: the pod runs without machinectl/journalctl "
                "integration")
    sys.stdout.flush()
    launch.exec_stage1(lx, lock_fd, ctx.debug)
    return 254  # not reached


def _detach(ctx: Context, lx: launch.Launch, lock_fd: int) -> int:
    """--detach: the pod is left running as rkt-<uuid>.service; print its UUID once its apps
    are up. A pod that already finished cleanly by then counts as started."""
    from ..errors import PodError
    from ..ids import unit_name
    from ..pod.info import pod_exit_code, pod_info

    result = launch.run_detached(lx, lock_fd)
    if result != "done":
        ref = poddir.find(ctx.paths, lx.uuid)
        info = pod_info(ref) if ref is not None else None
        unit = unit_name(lx.uuid)
        if info is None or not info.apps or any(a.exit_code is None for a in info.apps):
            raise PodError(f'pod {lx.uuid} did not start: {unit} ended with result "{result}"',
                           hint=f"see `journalctl -u {unit}`")
        code = pod_exit_code(info)
        if code:
            raise PodError(f"pod {lx.uuid} exited with status {code} before it was ready",
                           hint=f"see `journalctl -u {unit}`")
    ctx.out(lx.uuid)
    return 0


def check_uuid_file(values: dict[str, Any]) -> None:
    """--uuid-file-save must be writable before any work is done (not after the pod exists)."""
    f = values.get("uuid-file-save")
    if not f:
        return
    parent = os.path.dirname(os.path.abspath(f))
    if not os.path.isdir(parent):
        raise UsageError(f'--uuid-file-save: cannot write "{f}": directory "{parent}" does not '
                         "exist")
    if os.path.isdir(f):
        raise UsageError(f'--uuid-file-save: "{f}" is a directory')
    if not os.access(parent, os.W_OK) or (os.path.exists(f) and not os.access(f, os.W_OK)):
        raise UsageError(f'--uuid-file-save: cannot write "{f}": permission denied')


def save_uuid(values: dict[str, Any], uuid: str) -> Path | None:
    """rkt's --uuid-file-save: the UUID, no trailing newline. Called while the pod can still
    be discarded: the caller removes the pod if this fails, and the file if a later step does."""
    if not values.get("uuid-file-save"):
        return None
    path = Path(values["uuid-file-save"])
    try:
        path.write_text(uuid)
    except OSError as e:
        raise UsageError(f'--uuid-file-save: cannot write "{path}": {e.strerror}') from e
    return path


def main_raw(args: list[str], spec: dict[str, Flag],
             make_ctx: Callable[[dict[str, Any]], Context]) -> int:
    ctx, values, embryo, entrypoint = prepare_from_args(args, spec, make_ctx)
    saved = None
    try:
        measure_pod(ctx, embryo.uuid, embryo.path, values)  # TPM policy "require" may refuse
        saved = save_uuid(values, embryo.uuid)
        path = embryo.move("run")
        poddir.share_lock_for_run(embryo.fd, path)
    except BaseException:
        discard_embryo(ctx, embryo, values)
        if saved is not None:
            saved.unlink(missing_ok=True)
        raise
    return launch_pod(ctx, embryo.uuid, path, embryo.fd, entrypoint, values)
