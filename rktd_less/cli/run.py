"""rkt run: parse the flags, let stage0 (pod/run.py) prepare and start the pod, print."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..common.contract import IPC_MODES
from ..config import load_stage1
from ..errors import UsageError
from ..net import dns, netlist, ports
from ..pod import stage1select
from ..pod.prepare import PodPlan
from ..pod.run import PodRequest, StartOptions, check_host_volume, run
from .context import Context
from .flags import Flag, Kind
from .run_args import env_pairs, parse_run
from .volume_args import VOLUME_USAGE, parse_mount, parse_volume

RAW_ARGS = True
SHORT = "Run image(s) in a pod in rkt"
USAGE = """Usage:
  rkt run [pod flags] IMAGE [per-app flags] [-- image-args... [---]] ...

Pod flags (before the first image):
      --net[=NAME[:ARGS],...]    the pod's networks (default: default): default,
                                 default-restricted, none, host, all, or a network of
                                 net.d; ARGS (KEY=VALUE;...) reach the plugin as CNI_ARGS
      --dns=IP[,IP]|host|none    the apps' name servers (host: the machine's resolv.conf;
                                 none: the image's, even if a network offers DNS)
      --dns-search=DOMAIN, --dns-opt=OPT, --dns-domain=DOMAIN   more of that resolv.conf
      --hosts-entry=IP=HOST[,...]|host   the apps' /etc/hosts entries (host: the machine's)
      --port=NAME:[HOSTIP:]HOSTPORT   forward a host port to the app port NAME of an image
                                 (needs a pod network: not with --net=host or none)
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
    "net": Flag(Kind.OPTMULTI, [], "the pod's networks", no_opt="default"),
    "interactive": Flag(Kind.BOOL, False, "run pod interactively"),
    "hostname": Flag(Kind.STR, "", "pod hostname"),
    "dns": Flag(Kind.LIST, [], "name servers for the pod's apps (IPs), or host, or none"),
    "dns-search": Flag(Kind.LIST, [], "DNS search domains for the pod's resolv.conf"),
    "dns-opt": Flag(Kind.LIST, [], "DNS options for the pod's resolv.conf"),
    "dns-domain": Flag(Kind.STR, "", "the DNS domain of the pod's resolv.conf"),
    "hosts-entry": Flag(Kind.LIST, [], "entries of the pod's /etc/hosts (IP=HOSTNAME), or host"),
    "port": Flag(Kind.MULTI, [], "ports to expose on the host (requires contained network): "
                                 "NAME:[HOSTIP:]HOSTPORT"),
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


def read_env_file(path: str) -> tuple[tuple[str, str], ...]:
    """rkt's --set-env-file: NAME=VALUE per line; blank lines and lines starting with # or ;
    are ignored."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise UsageError(f'cannot read environment file "{path}": {e.strerror}') from e
    lines = [ln.strip() for ln in text.splitlines()]
    return env_pairs([ln for ln in lines if ln and not ln.startswith(("#", ";"))])


def start_options(values: dict[str, Any], n_apps: int) -> StartOptions:
    """The start flags of run and run-prepared, checked (rkt's messages)."""
    nets = netlist.parse(values["net"])
    if values.get("port"):
        ports.check_net(nets)
    if values.get("ipc", "auto") not in IPC_MODES:
        raise UsageError(f'invalid --ipc "{values["ipc"]}"', hint="auto, private or parent")
    if values["interactive"] and n_apps != 1:
        raise UsageError("interactive option only supports one image")
    if values.get("detach"):
        if values["interactive"]:
            raise UsageError("--detach and --interactive cannot be used together")
        from ..systemd import bus

        if not bus.available():
            raise UsageError("--detach needs a running systemd to leave the pod to",
                             hint="run the pod in the foreground under your init's supervision")
    dns_conf = dns.parse(values.get("dns", []), values.get("dns-search", []),
                         values.get("dns-opt", []), values.get("dns-domain", ""),
                         values.get("hosts-entry", []))
    return StartOptions(net=nets, dns=dns_conf, interactive=bool(values["interactive"]),
                        hostname=values.get("hostname") or "", ipc=values.get("ipc", "auto"),
                        detach=bool(values.get("detach")))


def _pull_policy(values: dict[str, Any]) -> str:
    if values.get("store-only") and values.get("no-store"):
        raise UsageError("both --store-only and --no-store specified")
    if values.get("store-only"):  # rkt's deprecated aliases
        return "never"
    if values.get("no-store"):
        return "update"
    return str(values["pull-policy"])


def check_uuid_file(values: dict[str, Any]) -> str:
    """--uuid-file-save must be writable before any work is done (not after the pod exists)."""
    f = values.get("uuid-file-save")
    if not f:
        return ""
    parent = os.path.dirname(os.path.abspath(f))
    if not os.path.isdir(parent):
        raise UsageError(f'--uuid-file-save: cannot write "{f}": directory "{parent}" does not '
                         "exist")
    if os.path.isdir(f):
        raise UsageError(f'--uuid-file-save: "{f}" is a directory')
    if not os.access(parent, os.W_OK) or (os.path.exists(f) and not os.access(f, os.W_OK)):
        raise UsageError(f'--uuid-file-save: cannot write "{f}": permission denied')
    return str(f)


def pod_request(args: list[str], spec: dict[str, Flag],
                make_ctx: Callable[[dict[str, Any]], Context]
                ) -> tuple[Context, PodRequest, StartOptions]:
    """Shared by run and prepare: every flag parsed and checked before any work is done."""
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
    opts = start_options(values, n_apps)
    pull_policy = _pull_policy(values)
    if values.get("private-users") and not values.get("no-overlay"):
        raise UsageError("cannot use both overlay and user namespace: not implemented yet",
                         hint="Try --no-overlay")
    if values.get("pod-name"):
        from ..pod.names import check

        check(values["pod-name"])
    stage1 = stage1select.from_flags(values, args)
    stage1_config = load_stage1(ctx.config)
    uuid_file = check_uuid_file(values)
    env = PodPlan(
        apps=(),
        inherited_env=tuple(os.environ.items()) if values["inherit-env"] else (),
        env_file=read_env_file(values["set-env-file"]) if values["set-env-file"] else (),
        set_env=env_pairs(values["set-env"]),
        ports=tuple(ports.parse_flag(p) for p in values.get("port", [])),
        volumes=tuple(check_host_volume(parse_volume(v)) for v in values["volume"]),
        mounts=tuple(parse_mount(m) for m in values["mount"]))
    ctx.require_root()
    return ctx, PodRequest(
        apps=parsed.apps, user_manifest=user_manifest, env=env, pull_policy=pull_policy,
        stage1=stage1, stage1_config=stage1_config, no_overlay=bool(values.get("no-overlay")),
        private_users=bool(values.get("private-users")), pod_name=values.get("pod-name") or "",
        uuid_file=uuid_file), opts


def main_raw(args: list[str], spec: dict[str, Flag],
             make_ctx: Callable[[dict[str, Any]], Context]) -> int:
    ctx, req, opts = pod_request(args, spec, make_ctx)
    uuid, status = run(ctx, req, opts)
    if opts.detach:
        ctx.out(uuid)
    return status
