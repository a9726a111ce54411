"""Entrypoints of the nspawn stage1 (the stage1 contract, reference §2.3).

They run with the pod directory as working directory:
  run:  [--debug] [--net=LIST] [--local-config=DIR] [--system-config=DIR] [--interactive]
        [--hostname=H] [...] UUID
  stop: [--force] UUID
  gc:   [--debug] [--local-config=DIR] UUID
  stop-post: UUID   (the pod unit's ExecStopPost=: the pod's networks released)
Imports are kept to the standard library plus our pure modules: this is on the pod start path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..appc import isolators as iso
from ..common import selinux
from ..common.appids import resolve_id
from ..common.contract import IPC_MODES
from ..common.manifests import read_image_manifest, read_pod_manifest
from ..common.podpaths import PodPaths
from ..common.uidrange import UidRange
from ..common.volumes import safe_target, volume_source
from ..errors import RktError
from ..fsio import replace_file
from ..host.cgroup import own_service
from ..ids import machine_id, machine_name
from ..net import dns, netlist
from . import apps as appmod
from . import sockets, units
from .confine import DeviceMount, Relax, app_capabilities, pod_capability_args, service_lines
from .diagnose import exec_problem
from .nspawn import NspawnPlan, nspawn_argv, nspawn_env
from .verbs import HERE, dispatch, parse_opts

if TYPE_CHECKING:
    from ..common.manifests import ImageManifestDoc, PodManifestDoc, RuntimeAppDoc, VolumeDoc
    from ..net.ports import Forward
    from ..net.setup import Attached

RESERVED_DIRS = ("rkt/status", "rkt/env", "rkt/iomux", "rkt/diag", "opt/stage2",
                 "etc/systemd/system")
# The generators of the machine's systemd would run at every pod boot (one process each, some
# shell scripts): none has anything to do in a stage1 (no fstab, gettys, init scripts, disks),
# so each is masked as systemd documents: a same-named link to /dev/null under /etc.
GENERATOR_DIRS = ("system-generators", "system-environment-generators")


def _systemd_booted() -> bool:
    return os.path.isdir("/run/systemd/system")


def lock_pod(poddir: Path) -> int:
    env_fd = os.environ.pop("RKT_LOCK_FD", "")
    if env_fd.isdigit():
        fd = int(env_fd)
    else:
        fd = os.open(poddir, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_SH)  # "running" for as long as nspawn lives
    os.set_inheritable(fd, True)
    return fd


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    replace_file(path, text, mode=mode)  # rewritten at every start: no fsync on the way up


def _host_assets(root: Path) -> None:
    """What the stage1 takes of the machine it runs on, written at every start (the image is
    built elsewhere, as rkt's host flavour installed its assets at run time): the os-release
    nspawn looks for, and the masks of the machine's systemd generators."""
    for release in (Path("/etc/os-release"), Path("/usr/lib/os-release")):
        with contextlib.suppress(FileNotFoundError):
            _write(root / "etc" / "os-release", release.read_text())
            break
    else:
        raise RktError("this machine has no os-release file (/etc/os-release)")
    for gdir in GENERATOR_DIRS:
        try:
            names = os.listdir(Path("/usr/lib/systemd") / gdir)
        except FileNotFoundError:
            continue
        masks = root / "etc" / "systemd" / gdir
        masks.mkdir(parents=True, exist_ok=True)
        for name in names:
            if not os.path.lexists(masks / name):
                os.symlink("/dev/null", masks / name)


def _isolators(ra: RuntimeAppDoc, manifest: ImageManifestDoc) -> list[dict[str, Any]]:
    """The app's isolators from the pod manifest (stage0 merged the image's and the flags'),
    or the image's where the pod manifest has no app (--pod-manifest), checked again."""
    app = ra.get("app") or manifest.get("app") or {}
    return iso.check_all(app.get("isolators") or [], str(ra.get("name")))


def _app_unit(ra: RuntimeAppDoc, approot: Path, manifest: ImageManifestDoc,
              interactive: bool, isolators: list[dict[str, Any]], relax: Relax,
              private_network: bool, devices: list[DeviceMount],
              listen: tuple[tuple[str, str], ...] = ()
              ) -> tuple[units.AppUnit, list[tuple[str, str]]]:
    name = ra["name"]
    app = ra.get("app") or manifest.get("app") or {}
    env = appmod.app_env(name, app.get("environment", []))
    path = dict(env).get("PATH", appmod.DEFAULT_PATH)
    argv = appmod.resolve_exec(app.get("exec") or [], approot, path)
    uid = resolve_id(str(app.get("user", "0")), approot, "passwd", "user", name)
    gid = resolve_id(str(app.get("group", "0")), approot, "group", "group", name)
    notify = any(a.get("name") == "appc.io/executor/supports-systemd-notify"
                 and a.get("value") == "true" for a in manifest.get("annotations", []))
    image_name = manifest.get("name", "")
    # appc event handlers; the manifest validator allows only these two names, once each
    handlers = {h.get("name"): tuple(appmod.resolve_exec(h.get("exec") or [], approot, path))
                for h in app.get("eventHandlers") or []
                if h.get("name") in ("pre-start", "post-stop")}
    unit = units.AppUnit(
        name=name, image_name=image_name, argv=tuple(argv), uid=uid, gid=gid,
        supplementary_gids=tuple(int(g) for g in app.get("supplementaryGIDs", [])),
        working_dir=app.get("workingDirectory") or "/",
        read_only_rootfs=bool(ra.get("readOnlyRootFS")), interactive=interactive,
        pre_start=handlers.get("pre-start", ()), post_stop=handlers.get("post-stop", ()),
        supports_notify=notify, sockets=listen,
        confinement=tuple(service_lines(name, isolators, uid, relax,
                                        private_network=private_network, devices=devices)))
    return unit, env


def mount_volumes(poddir: Path, approot: Path, ra: RuntimeAppDoc,
                   volumes: dict[str, VolumeDoc], mount: Any) -> list[DeviceMount]:
    """Bind each of the app's mounts (a host dir or the pod's empty volume) into its rootfs,
    read-only where the volume or the mount says so. Returns the device files among them, which
    the app's DevicePolicy=closed must allow."""
    devices = []
    for m in ra.get("mounts", []) or []:
        vol = volumes.get(m["volume"])
        if vol is None:
            raise RktError(f'app "{ra["name"]}": no volume named "{m["volume"]}"')
        src = volume_source(poddir, vol)
        target = safe_target(approot, m["path"])
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        readonly = bool(vol.get("readOnly")) or bool(m.get("readOnly"))
        mount.bind(src, target, recursive=bool(vol.get("recursive", True)), readonly=readonly)
        mode = src.stat().st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            devices.append(DeviceMount("/" + str(target.relative_to(approot)), readonly))
    return devices


@dataclasses.dataclass(frozen=True)
class PodRoot:
    """What :func:`build_pod_root` made: the stage1 root with every app's rootfs, volumes and
    unit, for a flavour to boot (nspawn, or a VM's systemd)."""

    hostname: str
    app_units: list[units.AppUnit]
    apps_caps: list[tuple[str, ...]]
    stdin_fifo: Path | None  # with stdin_stream: the (one) app's stdin FIFO


def build_pod_root(opts: dict[str, str], uuid: str, pp: PodPaths, pod: PodManifestDoc,
                   *, attached: list[Attached], private_network: bool, relax: Relax,
                   interactive: bool, stdin_stream: bool, host_ports: dict[str, int],
                   given: dict[tuple[str, int], str], mount: Any) -> PodRoot:
    """The pod's stage1 root, in this process's private mount namespace: the stage1 and app
    overlays (or the --no-overlay copies), reserved dirs, the machine's assets, hostname and
    etc files, each app's volumes, read-only rootfs, env file and unit, and the pod's units,
    accounts and machine-id (the nspawn and kvm flavours share all of it: one source)."""
    root = pp.stage1_rootfs
    data = pp.root.parents[2]
    s1tree = pp.stage1_tree_id.read_text().strip()
    overlay = pp.overlay_prepared.exists()  # else --no-overlay: copies in place
    if overlay:
        ov = pp.overlay(s1tree)
        mount.overlay([data / "cas" / "tree" / s1tree / "rootfs"], ov / "upper", ov / "work",
                      root)
    for d in RESERVED_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    _host_assets(root)
    hostname = opts.get("hostname") or machine_name(uuid)
    _write(root / "etc" / "hostname", hostname + "\n")
    etc_files = _etc_files(opts, pp, root, hostname, attached)

    app_units: list[units.AppUnit] = []
    apps_caps: list[tuple[str, ...]] = []
    stdin_fifo: Path | None = None  # with stdin_stream: the (one) app's stdin FIFO
    volumes = {v["name"]: v for v in pod.get("volumes", []) or []}
    for ra in pod.get("apps", []):
        name = ra["name"]
        tree = pp.app_tree_id(name).read_text().strip()
        approot = pp.app_rootfs(name)
        if overlay:
            aov = pp.overlay(tree)
            mount.overlay([data / "cas" / "tree" / tree / "rootfs"], aov / "upper" / name,
                          aov / "work" / name, approot)
        for d in ("proc", "sys", "dev", "tmp", "run", "etc"):
            p = approot / d
            if not os.path.lexists(p):
                p.mkdir(mode=0o1777 if d == "tmp" else 0o755)
        mtab = approot / "etc" / "mtab"
        if not os.path.lexists(mtab) and not mtab.parent.is_symlink():
            os.symlink("../proc/self/mounts", mtab)  # as rkt's prepare-app
        devices = mount_volumes(pp.root, approot, ra, volumes, mount)
        etc_binds = _etc_binds(approot, etc_files)
        if ra.get("readOnlyRootFS"):
            # rkt's --readonly-rootfs: the app's rootfs mount read-only, after its mount points
            # were made; its volumes are mounts of their own and keep their own flags
            if not overlay:  # a plain directory: made a mount of its own first
                mount.bind(approot, approot, recursive=True)
            mount.remount_readonly(approot)
        manifest_bytes = pp.app_image_manifest(name).read_bytes()
        (approot.parent / "manifest").write_bytes(manifest_bytes)
        img_manifest = read_image_manifest(manifest_bytes)
        isolators = _isolators(ra, img_manifest)
        unit, env = _app_unit(ra, approot, img_manifest, interactive, isolators, relax,
                              private_network, devices,
                              sockets.listen_ports(ra.get("app") or img_manifest.get("app")
                                                   or {}, host_ports, given))
        unit = dataclasses.replace(unit, confinement=(*unit.confinement, *etc_binds))
        apps_caps.append(app_capabilities(isolators))
        if stdin_stream:  # --interactive takes exactly one app
            unit = dataclasses.replace(unit, stdin_fifo=True)
            stdin_fifo = root / "rkt" / "iomux" / f"{name}.stdin"
            if not stdin_fifo.exists():
                os.mkfifo(stdin_fifo, 0o600)
        app_units.append(unit)
        # what the reaper says should the program not start (systemd's 203), as rkt's
        problem = exec_problem(approot, unit.argv[0])
        diag = root / "rkt" / "diag" / name
        if problem is not None:
            _write(diag, problem + "\n")
        else:
            diag.unlink(missing_ok=True)
        _write(root / "rkt" / "env" / name, units.env_file(env))
        fifo = root / "rkt" / "iomux" / name
        if not interactive and not fifo.exists():
            os.mkfifo(fifo, 0o600)

    for fname, text in units.pod_units(app_units).items():
        _write(root / units.UNIT_DIR / fname, text)
    _write(root / "rkt" / "apps", "".join(f"{a.name}\n" for a in app_units))
    passwd, group = units.stage1_accounts(app_units)
    _write(root / "etc" / "passwd", passwd)
    _write(root / "etc" / "group", group)
    _write(root / "etc" / "machine-id", machine_id(uuid) + "\n", 0o444)
    return PodRoot(hostname, app_units, apps_caps, stdin_fifo)


def run(args: list[str]) -> int:
    from ..host import mount  # only the run entrypoint mounts

    opts, uuid = parse_opts(args)
    poddir = Path.cwd()
    debug = opts.get("debug") == "true"
    nets = netlist.parse([opts["net"]] if "net" in opts else [])
    # --interactive: the app's stdio is the pod console when the caller has a terminal; with a
    # pipe or file instead (rkt #2414) the app reads it from a FIFO fed by a relay, then EOF.
    interactive = opts.get("interactive") == "true"
    stdin_stream = interactive and not os.isatty(0)
    interactive = interactive and not stdin_stream
    ipc = opts.get("ipc", "auto")
    if ipc not in IPC_MODES:
        raise RktError(f"invalid --ipc {ipc!r}", hint="auto, private or parent")
    relax = Relax.from_opts(opts)
    lock_fd = lock_pod(poddir)
    pp = PodPaths(poddir)
    pod = read_pod_manifest(pp.manifest)
    data = poddir.parents[2]
    s1tree = pp.stage1_tree_id.read_text().strip()
    root = pp.stage1_rootfs
    private_users = opts.get("private-users", "")
    if private_users:
        private_users = UidRange.parse(private_users).serialize()
    # the pod's networks, made in the machine's mount namespace (their namespace file must be
    # visible there); nspawn is started inside that network namespace (by an open fd of it,
    # whatever stage1 mounts later)
    # a socket-activated `rkt run`: the host's listening sockets, which reach the pod where
    # nspawn is exec'd in our place (a unit's main process, with machined)
    given = sockets.passed() if own_service() is not None and _systemd_booted() else {}
    fws = forwards(pod) if nets.contained else []
    host_ports = {f.name: f.host_port for f in fws}
    netns_fd, attached = (networks(opts, nets, uuid, poddir,
                                    data / "cas" / "tree" / s1tree / "rootfs",
                                    [f for f in fws if not (f.socket_activated and
                                                            (f.protocol, f.host_port) in given)])
                          if nets.contained else (None, []))
    # the machine's mount namespace, where the networks are released should nspawn not start
    # (and, without systemd, after it ended): this process leaves it now
    host_mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        mount.unshare_mounts()
        built = build_pod_root(opts, uuid, pp, pod, attached=attached,
                               private_network=not nets.host, relax=relax,
                               interactive=interactive, stdin_stream=stdin_stream,
                               host_ports=host_ports, given=given, mount=mount)
        hostname, apps_caps, stdin_fifo = built.hostname, built.apps_caps, built.stdin_fifo

        if stdin_fifo is not None:
            from ..host.relay import start_stdin_relay

            start_stdin_relay(stdin_fifo, (lock_fd,))
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)  # the relay alone reads the caller's input
            os.close(null)
        plan = NspawnPlan(uuid=uuid, root=str(root), hostname=hostname, interactive=interactive,
                          register=_systemd_booted(),
                          # in the pod's transient unit, or a unit whose ExecStart is rkt
                          keep_unit=own_service() is not None,
                          private_network=nets.none, debug=debug,
                          capability_args=tuple(pod_capability_args(apps_caps, relax)),
                          private_users=private_users,
                          selinux_context=os.environ.get(selinux.ENV_CONTEXT, ""),
                          selinux_mount_context=os.environ.get(selinux.ENV_MOUNT_CONTEXT, ""))
        argv = nspawn_argv(plan)
        ns_env = nspawn_env(debug, writable_api_vfs=relax.paths, ipc=ipc)
        if "NOTIFY_SOCKET" in os.environ:  # --notify-ready=yes forwards the pod's READY=1 there
            ns_env["NOTIFY_SOCKET"] = os.environ["NOTIFY_SOCKET"]
        if plan.keep_unit and plan.register:  # we exec nspawn: it takes what we were given
            ns_env.update(sockets.nspawn_env())
        os.environ.clear()
        if debug:
            print("stage1: exec " + " ".join(argv), file=sys.stderr)
        if not plan.register:
            # No systemd manager (sysv init, runit, OpenRC, a plain container): stage1 stays as
            # the pod's supervisor, with cgroups of its own and nothing left on the host; it
            # keeps the lock ("running") until they are gone. "ppid" names nspawn then.
            from . import standalone

            return standalone.run(argv, ns_env, uuid, poddir,
                                  lambda pid: _write(pp.ppid, f"{pid}\n"),
                                  before_exit=lambda: net_down(poddir, uuid, host_mnt),
                                  netns_fd=netns_fd)
        # rkt contract: "ppid" names the process whose only child is the pod's init; we exec
        # nspawn in place, so that is us.
        _write(pp.ppid, f"{os.getpid()}\n")
        del lock_fd  # stays open (inheritable) across exec: the pod is running while nspawn lives
        if netns_fd is not None:  # nspawn inherits the pod's network namespace (as in rkt)
            from ..host.netns import join

            join(netns_fd)
        os.execve(argv[0], argv, ns_env)
        return 1  # not reached
    except BaseException:
        if netns_fd is not None:  # nspawn never ran: nothing may keep the networks
            net_down(poddir, uuid, host_mnt)
        raise


def forwards(pod: PodManifestDoc) -> list[Forward]:
    if not pod.get("ports"):
        return []
    from ..net.ports import forwards

    return forwards(pod)


def networks(opts: dict[str, str], nets: netlist.NetList, uuid: str, poddir: Path,
              stage1_rootfs: Path, fws: list[Forward]) -> tuple[int, list[Attached]]:
    """Set the pod's CNI networks up and forward ``fws`` to them; returns an fd of its
    namespace and the networks with their results."""
    from ..net import conf as netconf
    from ..net import setup as netsetup

    def warn(line: str) -> None:
        print(f"stage1: {line}", file=sys.stderr)

    system, local = (Path(opts[k]) if opts.get(k) else None
                     for k in ("system-config", "local-config"))
    chosen, search = netconf.pod_networks(nets, stage1_rootfs, system, local, warn)
    path, attached = netsetup.setup(poddir, uuid, chosen, search, fws)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return fd, attached


@dataclasses.dataclass(frozen=True)
class EtcFile:
    """A file of the stage1 bound onto a path of every app by the app's unit (BindPaths=: the
    app's own mount namespace, so nothing is mounted below the app's rootfs beforehand, which
    nspawn's idmapped --private-users root could not take)."""

    source: str  # in the stage1
    target: str  # in the app
    only_if_absent: bool = False
    read_only: bool = False


def _etc_files(opts: dict[str, str], pp: PodPaths, root: Path, hostname: str,
               attached: list[Attached]) -> list[EtcFile]:
    """resolv.conf, hosts and hostname of every app, as rkt's stage1 and prepare-app made them
    (net/dns.py: the modes). The machine's files (``host`` modes) are copied at start: a bind
    of them would be a mount below the stage1 root."""
    resolv_mode, hosts_mode = dns.parse_conf_mode(opts.get("dns-conf-mode", ""))
    etc = root / "etc"
    files = [EtcFile("/etc/hostname", "/etc/hostname")]
    resolv = etc / "rkt-resolv.conf"
    resolv_text = None
    if resolv_mode == "host":
        resolv_text = Path("/etc/resolv.conf").read_text()
    elif resolv_mode == "stage0":
        resolv_text = pp.stage0_resolv.read_text()
    elif resolv_mode == "default" and any(a.result.dns for a in attached):
        first = next(a for a in attached if a.result.dns)
        d = first.result.dns
        resolv_text = dns.resolv_conf(d.nameservers, d.search, d.options, d.domain,
                                      f"Generated by rkt from network {first.net.conf.name}")
    if resolv_text is not None:
        _write(resolv, resolv_text)
        files.append(EtcFile("/etc/rkt-resolv.conf", "/etc/resolv.conf",
                             read_only=resolv_mode == "host"))
    if hosts_mode == "host":
        _write(etc / "rkt-hosts", Path("/etc/hosts").read_text())
        files.append(EtcFile("/etc/rkt-hosts", "/etc/hosts", read_only=True))
    elif hosts_mode == "stage0":
        _write(etc / "rkt-hosts",
               dns.add_hosts_entry(pp.stage0_hosts.read_text(), "127.0.0.1", hostname))
        files.append(EtcFile("/etc/rkt-hosts", "/etc/hosts"))
    else:
        _write(etc / "hosts-fallback",
               dns.add_hosts_entry(dns.HOSTS_FALLBACK, "127.0.0.1", hostname))
        files.append(EtcFile("/etc/hosts-fallback", "/etc/hosts", only_if_absent=True))
    return files


def _etc_binds(approot: Path, files: list[EtcFile]) -> list[str]:
    """The app unit's bind lines; each target made first (the rootfs may become read-only)."""
    lines = []
    for f in files:
        target = safe_target(approot, f.target)
        if target.exists():
            if f.only_if_absent:
                continue
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(mode=0o644)
        inside = "/" + str(target.relative_to(approot))
        lines.append(f"{'BindReadOnlyPaths' if f.read_only else 'BindPaths'}="
                     f"{f.source}:{inside}")
    return lines


def net_down(poddir: Path, uuid: str, host_mnt: int | None = None) -> None:
    """Release the pod's networks (nothing to do for a pod without any). ``host_mnt``: the
    machine's mount namespace, for a caller that left it (the namespace file is unbound there)."""
    from ..net import setup as netsetup

    if not PodPaths(poddir).netns.exists() and not PodPaths(poddir).net_dir.exists():
        return
    if host_mnt is None:
        netsetup.teardown(poddir, uuid)
        return
    from ..host.mount import call_in_mount_ns

    why = call_in_mount_ns(host_mnt, lambda: netsetup.teardown(poddir, uuid))
    if why is not None:
        print(f"stage1: releasing the pod's networks: {why}", file=sys.stderr)


def pod_here(opts: dict[str, str], uuid: str) -> Path:
    """The pod directory of stop-post: the working directory, or, where `rkt gc` moved the pod
    from it meanwhile, the pod of that UUID in ``--pods-dir``."""
    if (HERE / "pod").exists() or not opts.get("pods-dir"):
        return HERE
    for p in Path(opts["pods-dir"]).glob(f"*/{uuid}"):
        return p
    return HERE


def stop_post(args: list[str]) -> int:
    """ExecStopPost= of the pod unit: the pod ended (however), its networks go now."""
    opts, uuid = parse_opts(args)
    net_down(pod_here(opts, uuid), uuid)
    return 0


def stop(args: list[str]) -> int:
    from ..common.podstatus import is_ready  # not on the run entrypoint's path

    opts, _uuid = parse_opts(args)
    poddir = Path.cwd()
    force = opts.get("force") == "true"
    if not force:
        # A halt request reaches the pod's systemd only once it handles signals: give a pod
        # that is still booting a moment to come up (bounded; --force does not wait).
        deadline = time.monotonic() + 10
        while not is_ready(poddir) and time.monotonic() < deadline:
            time.sleep(0.05)
    try:
        pid = int(PodPaths(poddir).ppid.read_text().strip())
    except (OSError, ValueError) as e:
        raise RktError("pod has no pid file: it never started") from e
    sig = signal.SIGKILL if force else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return 0


def gc(args: list[str]) -> int:
    import re
    import shutil

    uuid = parse_opts(args)[1]
    mid = machine_id(uuid)
    if not re.fullmatch(r"[0-9a-f]{32}", mid):
        raise RktError(f"not a pod UUID: {uuid!r}")
    # The pod's persistent journal (nspawn --link-journal=try-host made the host directory
    # /var/log/journal/<machine-id>); pods of older versions (try-guest) left a symlink there
    # pointing into the pod instead.
    journal = Path("/var/log/journal") / mid
    if journal.is_symlink():
        if uuid in os.readlink(journal):
            journal.unlink()
    elif journal.is_dir():
        shutil.rmtree(journal)
    # networks of a pod that was killed before its ExecStopPost, or whose machine rebooted
    net_down(HERE, uuid)
    # a pod run without systemd whose supervising stage1 was killed: its cgroups remain
    from .standalone import gc as standalone_gc

    standalone_gc(Path.cwd(), uuid)
    return 0


def enter(args: list[str]) -> int:
    """``--pid=PID --appname=NAME -- CMD ARGS``: run CMD with the app's confinement (see
    stage1/enter.py); returns CMD's exit status."""
    from . import enter as entermod

    return entermod.execute(entermod.parse_args(args))


def main(verb: str, args: list[str]) -> int:
    return dispatch({"init": run, "stop": stop, "gc": gc, "enter": enter,
                     "stop-post": stop_post}, verb, args)
