"""stage0 as a library: prepare a pod from images (fetch and verify, render, write the pod
directory) and start it through its stage1 (reference §2.1). The verbs `rkt run`, `prepare`
and `run-prepared` parse their flags into the frozen options below and call this; they print.

On any failure before the pod runs nothing is left behind: no pod directory, no name claim, no
UUID file."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..common.appids import resolve_id
from ..common.contract import STOP_POST_ANNOTATION, entry_env, stage1_unit
from ..common.manifests import read_image_manifest, read_pod_manifest
from ..common.platform import host_arch
from ..common.podpaths import PodPaths
from ..common.uidrange import UidRange
from ..config import ConfigDirs, Insecure, PathsConfig, Stage1Config
from ..errors import PodError, RktError, UsageError
from ..net.dns import DnsConfig
from ..net.netlist import NetList
from ..net.netlist import parse as netlist_parse
from ..paths import Paths
from . import launch, names, poddir, stage1call, stage1select, userns
from .prepare import (
    AppRequest,
    PodPlan,
    ResolvedApp,
    check_os_arch,
    pod_manifest,
    stage1_entrypoint,
    write_pod_dir,
)

if TYPE_CHECKING:
    from ..common.manifests import PodManifestDoc
    from ..fetch.images import FetchSettings
    from ..store import Store


class Caller(Protocol):
    """What stage0 needs of whoever drives it (the CLI's Context has all of it)."""

    @property
    def paths(self) -> Paths: ...

    @property
    def config(self) -> ConfigDirs: ...

    @property
    def insecure(self) -> Insecure: ...

    @property
    def debug(self) -> bool: ...

    @property
    def paths_config(self) -> PathsConfig: ...

    def err(self, line: str) -> None: ...

    def fetch_settings(self, pull_policy: str) -> FetchSettings: ...


@dataclass(frozen=True)
class StartOptions:
    """How a prepared pod is started (run and run-prepared)."""

    net: NetList = field(default_factory=NetList)
    dns: DnsConfig = field(default_factory=DnsConfig)
    interactive: bool = False
    hostname: str = ""
    ipc: str = "auto"
    detach: bool = False


@dataclass(frozen=True)
class PodRequest:
    """What to prepare: images (each with its per-app flags) or a pod manifest, pod-wide
    settings, and which stage1."""

    apps: tuple[AppRequest, ...] = ()
    user_manifest: PodManifestDoc | None = None  # --pod-manifest, already loaded
    env: PodPlan = field(default_factory=lambda: PodPlan(apps=()))  # env, volumes, mounts
    pull_policy: str = "new"
    stage1: stage1select.Choice = field(default_factory=lambda: stage1select.Choice(""))
    stage1_config: Stage1Config = field(default_factory=Stage1Config)
    no_overlay: bool = False
    private_users: bool = False
    pod_name: str = ""
    uuid_file: str = ""  # --uuid-file-save


@dataclass(frozen=True)
class Prepared:
    embryo: poddir.Embryo
    entrypoint: Path  # the stage1 run entrypoint


# --- prepare --------------------------------------------------------------------------------

def _render_apps(manifest: PodManifestDoc, store: Store) -> dict[str, tuple[str, bytes]]:
    """app name → (its rendered tree, its image manifest)."""
    return {ra["name"]: (store.render(ra["image"]["id"]),
                         store.manifest_bytes(ra["image"]["id"]))
            for ra in manifest["apps"]}


def _from_manifest(raw: PodManifestDoc, store: Store) -> PodManifestDoc:
    from . import from_manifest

    manifest, _ims = from_manifest.complete(
        raw, store.resolve_id, lambda key: read_image_manifest(store.manifest_bytes(key)))
    for name, source in from_manifest.host_sources(manifest):
        check_host_volume({"name": name, "kind": "host", "source": source})
    return manifest


def check_host_volume(vol: dict[str, Any]) -> dict[str, Any]:
    if vol["kind"] == "host" and not os.path.exists(vol["source"]):
        raise UsageError(f'volume "{vol["name"]}": source "{vol["source"]}" does not exist')
    return vol


def _check_ids(manifest: PodManifestDoc, trees: dict[str, tuple[str, bytes]],
               store: Store) -> None:
    """--user/--group names and file paths resolve in the image now, not in stage1 after the
    pod dir was made (stage1 resolves them again against the same tree)."""
    for ra in manifest["apps"]:
        app = ra.get("app") or read_image_manifest(trees[ra["name"]][1]).get("app") or {}
        rootfs = store.tree_rootfs(trees[ra["name"]][0])
        resolve_id(str(app.get("user", "0")), rootfs, "passwd", "user", ra["name"])
        resolve_id(str(app.get("group", "0")), rootfs, "group", "group", ra["name"])


def _write_pod(caller: Caller, req: PodRequest, resolved: list[ResolvedApp], store: Store,
               stage1_key: str) -> Prepared:
    """Render everything first, then make the pod dir; on failure leave nothing behind."""
    stage1_tree = store.render(stage1_key)
    if req.user_manifest is not None:
        manifest = _from_manifest(req.user_manifest, store)
    else:
        manifest = pod_manifest(dataclasses.replace(req.env, apps=tuple(resolved)))
    from ..net.ports import forwards

    forwards(manifest)  # each --port names one app port, no two take one host port
    for ra in manifest["apps"]:  # before any tree is rendered
        check_os_arch(read_image_manifest(store.manifest_bytes(ra["image"]["id"])), host_arch())
    trees = _render_apps(manifest, store)
    _check_ids(manifest, trees, store)
    s1_manifest = store.manifest_bytes(stage1_key)
    entry = stage1_entrypoint(read_image_manifest(s1_manifest), "run")
    assert entry is not None  # stage1select refuses an image without one
    embryo = poddir.Embryo(caller.paths)
    try:
        if req.pod_name:
            names.claim(caller.paths, req.pod_name, embryo.uuid)
            names.record(embryo.path, req.pod_name)
        write_pod_dir(embryo.path, manifest, trees, stage1_tree, s1_manifest,
                      store.tree_rootfs, overlay=not req.no_overlay,
                      private_users=(userns.random_range().serialize()
                                     if req.private_users else None))
    except BaseException:
        discard(caller, embryo, req.pod_name)
        raise
    return Prepared(embryo, caller.paths.tree(stage1_tree) / "rootfs" / entry.lstrip("/"))


def prepare(caller: Caller, req: PodRequest) -> Prepared:
    """Fetch (verified) the apps' images and the stage1, render them, write the pod dir (in
    ``embryo``, its lock held)."""
    if not req.no_overlay:
        from ..host.fsinfo import overlay_unsupported

        why = overlay_unsupported(caller.paths.data)
        if why is not None:  # as rkt: say so, then copy the images into the pod instead
            caller.err(f'disabling overlay support: "{why}"')
            req = dataclasses.replace(req, no_overlay=True)
    settings = caller.fetch_settings(req.pull_policy)
    from ..fetch.resolve import resolve_image
    from ..store import Store

    store = Store(caller.paths)
    resolved = []
    for app in req.apps:
        key = resolve_image(store, app.image, settings, app.signature)
        resolved.append(ResolvedApp(request=app, key=key,
                                    manifest=read_image_manifest(store.manifest_bytes(key))))
    # after the apps' images, so that a refused image leaves no stage1 in a new store
    stage1_key = stage1select.select(store, settings, req.stage1, req.stage1_config,
                                     stage1select.images_dir(caller.paths_config.stage1_images))
    # Shared with other preparers, exclusive against image gc/rm: a tree rendered here must
    # not be collected before the pod dir names it.
    from .refs import prepare_lock

    with prepare_lock(caller.paths, exclusive=False):
        return _write_pod(caller, req, resolved, store, stage1_key)


def discard(caller: Caller, embryo: poddir.Embryo, pod_name: str) -> None:
    """A pod that failed before it could run: its dir, its name claim and its lock go."""
    shutil.rmtree(embryo.path, ignore_errors=True)
    names.release(caller.paths, embryo.uuid, pod_name or None)
    embryo.close()


def save_uuid(uuid_file: str, uuid: str) -> Path | None:
    """rkt's --uuid-file-save: the UUID, no trailing newline. Called while the pod can still
    be discarded: the caller removes the pod if this fails, and the file if a later step does."""
    if not uuid_file:
        return None
    path = Path(uuid_file)
    try:
        path.write_text(uuid)
    except OSError as e:
        raise UsageError(f'--uuid-file-save: cannot write "{path}": {e.strerror}') from e
    return path


def prepare_only(caller: Caller, req: PodRequest) -> str:
    """`rkt prepare`: the pod is left in ``prepared``; its UUID is returned."""
    prep = prepare(caller, req)
    saved = None
    try:
        saved = save_uuid(req.uuid_file, prep.embryo.uuid)
        prep.embryo.move("prepared")
    except BaseException:
        discard(caller, prep.embryo, req.pod_name)
        if saved is not None:
            saved.unlink(missing_ok=True)
        raise
    finally:
        prep.embryo.close()
    return prep.embryo.uuid


# --- start ----------------------------------------------------------------------------------

def _private_users(path: Path) -> str | None:
    """SHIFT:COUNT of a pod prepared with --private-users (rkt reads it at every start)."""
    try:
        text = PodPaths(path).private_users.read_text()
    except FileNotFoundError:
        return None
    return UidRange.parse(text).serialize()


def stage1_args(caller: Caller, uuid: str, path: Path, start: StartOptions) -> tuple[str, ...]:
    return launch.stage1_run_args(uuid, debug=caller.debug, net=str(start.net),
                                  config=caller.config, dns_conf_mode=start.dns.conf_mode(),
                                  private_users=_private_users(path),
                                  interactive=start.interactive,
                                  hostname=start.hostname or None,
                                  insecure=caller.insecure.options, ipc=start.ipc)


def measure(caller: Caller, uuid: str, path: Path, start: StartOptions) -> None:
    """TPM measurement before the pod starts, where a TPM is configured (pod/measure.py)."""
    from ..store.lock import ensure_dir
    from . import measure as tpm

    cfg = tpm.load_config([caller.config.system, caller.config.local])
    if cfg is None:
        return
    try:
        pp = PodPaths(path)
        pm = read_pod_manifest(pp.manifest)
        apps = [(str(a["name"]), str(a["image"]["id"])) for a in pm.get("apps", [])]
        stage1 = pp.stage1_tree_id.read_text().strip()
        ensure_dir(caller.paths.data, caller.paths.locks)
        tpm.measure(cfg, caller.paths.locks / "tpm", path, stage1, apps,
                    stage1_args(caller, uuid, path, start))
    except (RktError, OSError, ValueError, KeyError) as e:
        msg = getattr(e, "message", None) or str(e)
        if cfg.policy == "require":
            raise PodError(f"TPM measurement failed: {msg}",
                           hint="the TPM policy is require: the pod does not run") from None
        caller.err(f"warning: TPM measurement failed, running the pod anyway: {msg}")


def _selinux_env() -> tuple[tuple[str, str], ...]:
    """rkt: a pod of its own MCS level where SELinux and lxc_contexts are there."""
    from ..common import selinux

    labels = selinux.pod_labels()
    if labels is None:
        return ()
    return ((selinux.ENV_CONTEXT, labels.process), (selinux.ENV_MOUNT_CONTEXT, labels.file))


def check_networks(caller: Caller, path: Path, nets: NetList) -> None:
    """The networks a pod is to start with exist and their plugins are there, and a pod with
    forwarded ports has one: refused before the pod is in ``run`` (stage1 loads them again as
    it sets them up)."""
    pp = PodPaths(path)
    if stage1_unit(read_image_manifest(pp.stage1_manifest)).host_network:
        if read_pod_manifest(pp.manifest).get("ports"):
            raise UsageError("--port does not apply: this pod's stage1 runs it on the host's "
                             "network", hint="the app's ports are the host's ports")
        return
    if not nets.contained:
        if read_pod_manifest(PodPaths(path).manifest).get("ports"):
            from ..net.ports import check_net

            check_net(nets)
        return
    from ..net import conf as netconf

    tree = PodPaths(path).stage1_tree_id.read_text().strip()
    chosen, search = netconf.pod_networks(nets, caller.paths.tree(tree) / "rootfs",
                                          caller.config.system, caller.config.local,
                                          lambda _line: None)  # stage1 says these
    netconf.check_plugins(chosen, search)


def _write_dns_files(path: Path, cfg: DnsConfig) -> None:
    """rkt's stage0 resolv.conf and hosts of --dns* and --hosts-entry, for stage1 to use."""
    from ..fsio import replace_file
    from ..net import dns

    pp = PodPaths(path)
    if cfg.resolv_mode == "stage0":
        replace_file(pp.stage0_resolv, dns.stage0_resolv(cfg))
    if cfg.hosts_mode == "stage0":
        replace_file(pp.stage0_hosts, dns.stage0_hosts(cfg))


def start(caller: Caller, uuid: str, path: Path, lock_fd: int, entrypoint: Path,
          opts: StartOptions) -> int:
    """Start a pod that is in ``run/`` and whose shared 'running' lock ``lock_fd`` holds. In
    the foreground: the pod's exit status (or this process becomes stage1). Detached: 0 once
    its apps are up."""
    try:
        s1_manifest = read_image_manifest(PodPaths(path).stage1_manifest)
    except (OSError, ValueError) as e:
        raise PodError(f'pod "{uuid}": its stage1 manifest is unreadable: {e}') from None
    _write_dns_files(path, opts.dns)
    s1_unit = stage1_unit(s1_manifest)
    if s1_unit.host_network:  # fly: --net does not apply
        opts = dataclasses.replace(opts, net=netlist_parse(["host"]))
    lx = launch.Launch(uuid=uuid, poddir=path, entrypoint=entrypoint,
                       args=stage1_args(caller, uuid, path, opts),
                       interactive=opts.interactive,
                       env=(*entry_env().items(), *_selinux_env()),
                       stage1_unit=s1_unit,
                       # a pod with networks of its own has them to release; fly records the
                       # app's exit status there
                       stop_post=(stage1call.entrypoint_at(caller.paths, path,
                                                           STOP_POST_ANNOTATION)
                                  if opts.net.contained or s1_unit.stop_post_always
                                  else None))
    if opts.detach:
        _detach(caller, lx, lock_fd)
        return 0
    mode = launch.choose_mode()
    if caller.debug:
        caller.err(f"pod {uuid}: launching in mode {mode}")
    if mode == launch.Mode.UNIT:
        return launch.run_in_unit(lx, lock_fd)
    if mode == launch.Mode.KEEP_UNIT and opts.net.contained:
        launch.bind_stop_post(lx)  # the networks go when the caller's unit stops
    if mode == launch.Mode.NO_SYSTEMD:
        caller.err("systemd is not running here: the pod runs without machinectl/journalctl "
                   "integration")
    sys.stdout.flush()
    launch.exec_stage1(lx, lock_fd, caller.debug)
    return 254  # not reached


def _detach(caller: Caller, lx: launch.Launch, lock_fd: int) -> None:
    """--detach: the pod is left running as rkt-<uuid>.service once its apps are up. A pod
    that already finished cleanly by then counts as started."""
    from ..ids import unit_name
    from .info import pod_exit_code, pod_info

    result = launch.run_detached(lx, lock_fd)
    if result == "done":
        return
    ref = poddir.find(caller.paths, lx.uuid)
    info = pod_info(ref) if ref is not None else None
    unit = unit_name(lx.uuid)
    if info is None or not info.apps or any(a.exit_code is None for a in info.apps):
        raise PodError(f'pod {lx.uuid} did not start: {unit} ended with result "{result}"',
                       hint=f"see `journalctl -u {unit}`")
    code = pod_exit_code(info)
    if code:
        raise PodError(f"pod {lx.uuid} exited with status {code} before it was ready",
                       hint=f"see `journalctl -u {unit}`")


def run(caller: Caller, req: PodRequest, opts: StartOptions) -> tuple[str, int]:
    """`rkt run`: prepare, measure, move to ``run`` and start. Returns (UUID, status)."""
    prep = prepare(caller, req)
    embryo = prep.embryo
    saved = None
    try:
        check_networks(caller, embryo.path, opts.net)
        measure(caller, embryo.uuid, embryo.path, opts)  # TPM policy "require" may refuse
        saved = save_uuid(req.uuid_file, embryo.uuid)
        path = embryo.move("run")
        poddir.share_lock_for_run(embryo.fd, path)
    except BaseException:
        discard(caller, embryo, req.pod_name)
        if saved is not None:
            saved.unlink(missing_ok=True)
        raise
    status = start(caller, embryo.uuid, path, embryo.fd, prep.entrypoint, opts)
    # stage1 failed before the pod existed (its networks, its mounts: it said why and undid
    # them): like a failed prepare, nothing of it is left
    if (status and not (PodPaths(path).ppid.exists() or PodPaths(path).pid.exists())
            and discard_unstarted(caller, path, embryo.uuid, req.pod_name)
            and saved is not None):
        saved.unlink(missing_ok=True)
    return embryo.uuid, status


def discard_unstarted(caller: Caller, path: Path, uuid: str, pod_name: str) -> bool:
    """Remove a pod whose stage1 ended before starting nspawn, if nothing holds it; True if
    it was removed. A pod no longer there ran: `rkt gc` moves a pod that ran and ended (its
    pid files then are elsewhere), and it keeps its --uuid-file-save."""
    from ..fsio import try_lock

    try:
        fd = poddir.open_dir(path)
    except FileNotFoundError:
        return False
    try:
        if not try_lock(fd):
            return False
        shutil.rmtree(path, ignore_errors=True)
        names.release(caller.paths, uuid, pod_name or None)
        return True
    finally:
        os.close(fd)


def run_prepared(caller: Caller, pod: str, opts: StartOptions,
                 check: Callable[[int], None] | None = None) -> tuple[str, int]:
    """`rkt run-prepared`: start a pod ``rkt prepare`` made. ``check(n_apps)`` validates the
    start options against the pod before anything changes. Returns (UUID, status)."""
    ref = poddir.resolve(caller.paths, pod)
    entrypoint = stage1call.entrypoint(caller.paths, ref, "run")
    if entrypoint is None:
        raise PodError(f'pod "{ref.uuid}": its stage1 image is gone or has no run entrypoint')
    try:
        apps = read_pod_manifest(PodPaths(ref.path).manifest).get("apps", [])
    except (OSError, ValueError) as e:
        raise PodError(f'pod "{ref.uuid}" has no readable manifest') from e
    if check is not None:
        check(len(apps))
    check_networks(caller, ref.path, opts.net)
    measure(caller, ref.uuid, ref.path, opts)  # a refused pod stays prepared
    fd, path = poddir.lock_prepared(caller.paths, ref)
    poddir.share_lock_for_run(fd, path)
    return ref.uuid, start(caller, ref.uuid, path, fd, entrypoint, opts)
