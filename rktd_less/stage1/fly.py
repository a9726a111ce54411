"""Entrypoints of the fly stage1: the privileged, chroot-like isolation level (reference
isolation.md §2, rkt's stage1_fly).

run (``/init``): the pod's one app, chrooted in its rootfs with the machine's ``/dev``,
``/proc`` and ``/sys``, a tmpfs ``/tmp``, its volumes, environment and credentials; no pid,
network or UTS namespace, no capability, seccomp or device restriction: that is what fly is
for. As rkt's, it execs the app, so the pod's PID (``pid``) is the app's and the exit status of
the unit is the app's. Beyond rkt:
- its mounts are made in a mount namespace of its own, so they never reach the machine's mount
  table and are gone with the app (rkt #3445, #2878, #3465 left them until gc);
- the pod is a unit as any other and registered with systemd-machined (``machinectl list``);
- the unit's ExecStopPost (``/stop-post``, a shell script: stage1-fly/entrypoints/) records
  the app's exit status for ``rkt status`` in the file this run named in ``fly-status``.
stop: SIGTERM (``--force``: SIGKILL) to the app.  enter: a command in the app's mount
namespace and root, with its credentials and environment.  gc: nothing (no mount outlives the
pod).  Standard library and pure modules only: this is on the pod start path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.appids import resolve_id
from ..common.manifests import read_pod_manifest
from ..common.podpaths import PodPaths
from ..common.podstatus import status_dir
from ..common.volumes import safe_target
from ..errors import RktError
from ..fsio import replace_file
from ..host.machined import register
from ..net import dns
from . import apps as appmod
from .verbs import HERE, dispatch, parse_opts

if TYPE_CHECKING:
    from ..common.manifests import AppDoc, RuntimeAppDoc

API_FS = ("dev", "proc", "sys")


def _etc_binds(opts: dict[str, str], pp: PodPaths, approot: Path, mount: Any) -> None:
    """rkt fly's DNS and hosts modes: the machine's files (host) or stage0's (--dns IPs,
    --hosts-entry) bound over the app's; else the image's own."""
    resolv_mode, hosts_mode = dns.parse_conf_mode(opts.get("dns-conf-mode", ""))
    sources = {"host": {"resolv.conf": Path("/etc/resolv.conf"), "hosts": Path("/etc/hosts")},
               "stage0": {"resolv.conf": pp.stage0_resolv, "hosts": pp.stage0_hosts}}
    for name, mode in (("resolv.conf", resolv_mode), ("hosts", hosts_mode)):
        src = sources.get(mode, {}).get(name)
        if src is None:
            continue
        target = safe_target(approot, f"/etc/{name}")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(mode=0o644)
        mount.bind(src, target, recursive=False, readonly=mode == "host")


def run(args: list[str]) -> int:
    from ..host import mount
    from .entry import lock_pod, mount_volumes

    opts, uuid = parse_opts(args)
    pp = PodPaths(Path.cwd())
    pod = read_pod_manifest(pp.manifest)
    apps = pod.get("apps", [])
    if len(apps) != 1:
        raise RktError(f"fly only supports 1 application per pod, this one has {len(apps)}",
                       hint="run each app in a pod of its own, or use the nspawn stage1")
    ra = apps[0]
    name = ra["name"]
    app = _app(pp, ra)
    data = pp.root.parents[2]
    approot = pp.app_rootfs(name)

    lock_pod(pp.root)  # inheritable: the pod is "running" for as long as the app lives
    mount.unshare_mounts()  # nothing below reaches the machine's mount table
    if pp.overlay_prepared.exists():
        tree = pp.app_tree_id(name).read_text().strip()
        ov = pp.overlay(tree)
        mount.overlay([data / "cas" / "tree" / tree / "rootfs"], ov / "upper" / name,
                      ov / "work" / name, approot)
    for d in API_FS:  # through safe_target: an image's symlink cannot redirect them
        target = safe_target(approot, f"/{d}")
        target.mkdir(parents=True, exist_ok=True)
        mount.bind(f"/{d}", target, recursive=True)
    tmp = safe_target(approot, "/tmp")
    tmp.mkdir(mode=0o1777, parents=True, exist_ok=True)
    mount.mount("tmpfs", tmp, "tmpfs", mount.MS_NOSUID | mount.MS_NODEV, "mode=1777")
    volumes = {v["name"]: v for v in pod.get("volumes", []) or []}
    mount_volumes(pp.root, approot, ra, volumes, mount)
    _etc_binds(opts, pp, approot, mount)
    if ra.get("readOnlyRootFS"):
        if not pp.overlay_prepared.exists():  # a plain directory: a mount of its own first
            mount.bind(approot, approot, recursive=True)
        mount.remount_readonly(approot)

    env = appmod.app_env(name, app.get("environment", []))
    path = dict(env).get("PATH", appmod.DEFAULT_PATH)
    argv = appmod.resolve_exec(app.get("exec") or [], approot, path)
    uid = resolve_id(str(app.get("user", "0")), approot, "passwd", "user", name)
    gid = resolve_id(str(app.get("group", "0")), approot, "group", "group", name)
    groups = [int(g) for g in app.get("supplementaryGIDs", []) or []]
    # the app's PID (we exec it) and its start time, so that stop never signals a reused PID
    replace_file(pp.pid, f"{os.getpid()}\n")
    replace_file(pp.root / "pid-start", f"{_start_time(os.getpid())}\n")
    status = status_dir(pp.root)
    if status is not None:  # rkt's readiness mark (enter, stop wait for it): up once exec'd
        status.mkdir(parents=True, exist_ok=True)
        ready = status.parent / "supervisor-status"
        ready.unlink(missing_ok=True)
        ready.symlink_to("ready")
        # where the unit's stop-post (stage1-fly/entrypoints/stop-post) records the app's exit
        replace_file(pp.root / "fly-status", f"{(status / name).relative_to(pp.root)}\n")
    why = register(uuid, os.getpid(), "container", approot)  # the leader: soon the app
    if why is not None:
        print(f"stage1: registering with systemd-machined: {why}", file=sys.stderr)
    # a socket-activated `rkt run`: the sockets systemd gave us are the app's (same PID)
    env += [(k, os.environ[k]) for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
            if k in os.environ]
    workdir = app.get("workingDirectory") or "/"
    try:
        os.chroot(approot)
        os.chdir(workdir)
    except OSError as e:
        raise RktError(f'app "{name}": working directory "{workdir}": {e.strerror}') from None
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    try:
        os.execve(argv[0], argv, dict(env))
    except OSError as e:
        print(f"stage1: cannot run {argv[0]}: {e.strerror}", file=sys.stderr)
        return 254
    return 254  # not reached


def entered_app(pp: PodPaths, name: str) -> AppDoc:
    """The app `rkt enter` names (its pod manifest entry's, or its image's)."""
    pod = read_pod_manifest(pp.manifest)
    ra = next((a for a in pod.get("apps", []) if a["name"] == name), None)
    if ra is None:
        raise RktError(f'pod has no app "{name}"')
    return _app(pp, ra)


def _app(pp: PodPaths, ra: RuntimeAppDoc) -> AppDoc:
    """The app of a pod manifest entry, or its image's (a --pod-manifest may leave it out)."""
    app = ra.get("app")
    if app:
        return app
    from ..common.manifests import read_image_manifest

    return read_image_manifest(pp.app_image_manifest(ra["name"]).read_bytes()).get("app") or {}


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: when the process started (boot ticks)."""
    try:
        stat_ = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat_.rsplit(")", 1)[-1].split()[19]


def stop(args: list[str]) -> int:
    opts, _uuid = parse_opts(args)
    try:
        pid = int(PodPaths(HERE).pid.read_text().strip())
        started = (HERE / "pid-start").read_text().strip()
    except (OSError, ValueError) as e:
        raise RktError("pod has no pid file: it never started") from e
    if _start_time(pid) != started:
        return 0  # the app has ended (and its PID may be another process's now)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL if opts.get("force") == "true" else signal.SIGTERM)
    return 0


def gc(args: list[str]) -> int:
    parse_opts(args)  # the app's mounts went with its mount namespace
    return 0


def enter(args: list[str]) -> int:
    """``--pid=PID --appname=NAME -- CMD ARGS``: CMD in the app's mount namespace and root, as
    the app's user with its environment; returns CMD's exit status."""
    from .enter import parse_args

    ea = parse_args(args)
    pp = PodPaths(Path.cwd())
    app = entered_app(pp, ea.app)
    root = Path(f"/proc/{ea.pid}/root")
    uid = resolve_id(str(app.get("user", "0")), root, "passwd", "user", ea.app)
    gid = resolve_id(str(app.get("group", "0")), root, "group", "group", ea.app)
    env = dict(appmod.app_env(ea.app, app.get("environment", [])))
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            from ..host.mount import join_mount_ns

            join_mount_ns(os.open(f"/proc/{ea.pid}/ns/mnt", os.O_RDONLY))
            os.chroot(f"/proc/{ea.pid}/root")
            os.chdir(app.get("workingDirectory") or "/")
            os.setgroups([int(g) for g in app.get("supplementaryGIDs", []) or []])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.execvpe(ea.cmd[0], list(ea.cmd), env)
        except BaseException as e:
            os.write(2, f"enter: {ea.cmd[0]}: {e}\n".encode())
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main(verb: str, args: list[str]) -> int:
    return dispatch({"init": run, "stop": stop, "gc": gc, "enter": enter}, verb, args)
