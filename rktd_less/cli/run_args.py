"""rkt's run/prepare grammar (pure): pod flags, then images each followed by its per-app flags;
``--`` starts an app's arguments and a lone ``---`` ends them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..appc.isolators import AppIsolatorFlags, from_flags
from ..errors import UsageError
from ..pod.prepare import AppRequest
from .flags import Flag, Kind, defaults, take_flag
from .volume_args import parse_mount

APP_FLAGS: dict[str, Flag] = {
    "name": Flag(Kind.STR, None, "set the name of the app (default: image name's last part)"),
    "exec": Flag(Kind.STR, None, "override the exec command of the app"),
    "user": Flag(Kind.STR, None, "user override: uid, name from the image, or file path"),
    "group": Flag(Kind.STR, None, "group override: gid, name from the image, or file path"),
    "working-dir": Flag(Kind.STR, None, "override the working directory of the app"),
    "supplementary-gids": Flag(Kind.LIST, [], "supplementary group IDs of the app: 1,2,3"),
    "environment": Flag(Kind.MULTI, [], "set an environment variable of the app: NAME=VALUE"),
    "readonly-rootfs": Flag(Kind.BOOL, False, "mount the app's rootfs read-only"),
    "signature": Flag(Kind.STR, None, "local signature file for the image"),
    "mount": Flag(Kind.MULTI, [], "mount a pod volume into this app: volume=NAME,target=PATH"),
    "memory": Flag(Kind.STR, None, "memory limit for the app: 50M, 1Gi, ..."),
    "cpu": Flag(Kind.STR, None, "CPU limit for the app in cores: 500m = half a core"),
    "cpu-shares": Flag(Kind.STR, None, "CPU shares of the app, 2..262144"),
    "oom-score-adj": Flag(Kind.STR, None, "OOM score adjustment of the app, -1000..1000"),
    "caps-retain": Flag(Kind.STR, None, "capabilities the app keeps: CAP_A,CAP_B (only these)"),
    "caps-remove": Flag(Kind.STR, None, "capabilities taken from the app's default set"),
    "seccomp": Flag(Kind.STR, None,
                    "seccomp filter: mode=retain|remove[,errno=ENAME],SYSCALL|@GROUP,..."),
    "annotation": Flag(Kind.MULTI, [], "set an annotation of the app: NAME=VALUE"),
    "user-annotation": Flag(Kind.MULTI, [], "set a user annotation of the app: NAME=VALUE"),
    "user-label": Flag(Kind.MULTI, [], "set a user label of the app: NAME=VALUE"),
}


@dataclass(frozen=True)
class RunArgs:
    pod: dict[str, Any]
    apps: tuple[AppRequest, ...]


def _pairs(items: Sequence[str], bad: Callable[[str], UsageError]
           ) -> tuple[tuple[str, str], ...]:
    """NAME=VALUE items split at the first "="; ``bad(item)`` for one without a name or "="."""
    out = []
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise bad(item)
        out.append((k, v))
    return tuple(out)


def env_pairs(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return _pairs(items, lambda item: UsageError(
        f'invalid environment "{item}": expected NAME=VALUE'))


def _gids(items: Sequence[str]) -> tuple[int, ...] | None:
    if not items:
        return None
    if not all(g.isdigit() for g in items):
        raise UsageError(f'invalid --supplementary-gids "{",".join(items)}"',
                         hint="a comma-separated list of numeric group IDs")
    return tuple(int(g) for g in items)


def _kv(flag: str, items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return _pairs(items, lambda item: UsageError(f'invalid format of --{flag} flag "{item}"',
                                                 hint=f"--{flag}=NAME=VALUE"))


def _app(image: str, v: Mapping[str, Any], args: list[str] | None) -> AppRequest:
    flags = AppIsolatorFlags(
        memory=v["memory"], cpu=v["cpu"], cpu_shares=v["cpu-shares"],
        oom_score_adj=v["oom-score-adj"], caps_retain=v["caps-retain"],
        caps_remove=v["caps-remove"], seccomp=v["seccomp"])
    from_flags(flags)  # checked here: a bad flag fails before any image is fetched
    return AppRequest(
        isolator_flags=flags, annotations=_kv("annotation", v["annotation"]),
        user_annotations=_kv("user-annotation", v["user-annotation"]),
        user_labels=_kv("user-label", v["user-label"]),
        image=image, name=v["name"], exec_=v["exec"],
        args=tuple(args) if args is not None else None,
        user=v["user"], group=v["group"], working_dir=v["working-dir"],
        environment=env_pairs(v["environment"]), readonly_rootfs=v["readonly-rootfs"],
        signature=v["signature"], mounts=tuple(parse_mount(m) for m in v["mount"]),
        supplementary_gids=_gids(v["supplementary-gids"]))


def parse_run(pod_spec: Mapping[str, Flag], args: Sequence[str],
              require_image: bool = True) -> RunArgs:
    pod = defaults(pod_spec)
    apps: list[AppRequest] = []
    i, n = 0, len(args)
    # Pod-level flags come before the first image.
    while i < n and args[i].startswith("--") and args[i] not in ("--", "---"):
        nxt = take_flag(pod_spec, args, i, pod)
        if nxt is None:
            raise UsageError(f"unknown flag: {args[i].split('=', 1)[0]}",
                             hint="pod flags go before the first image; see `rkt help run`")
        i = nxt
    while i < n:
        image = args[i]
        if image in ("--", "---") or image.startswith("--"):
            raise UsageError(f'expected an image, got "{image}"')
        i += 1
        values = defaults(APP_FLAGS)
        app_args: list[str] | None = None
        while i < n:
            a = args[i]
            if a == "--":
                app_args = []
                i += 1
                while i < n and args[i] != "---":
                    app_args.append(args[i])
                    i += 1
                if i < n:
                    i += 1  # the '---'
                break
            if a.startswith("--") and a != "---":
                nxt = take_flag(APP_FLAGS, args, i, values)
                if nxt is None:
                    raise UsageError(f"unknown flag: {a.split('=', 1)[0]}",
                                     hint="after an image only per-app flags are allowed")
                i = nxt
                continue
            break
        apps.append(_app(image, values, app_args))
    if not apps and require_image:
        raise UsageError("no image given", hint="usage: rkt run [flags] IMAGE [-- image-args...]")
    return RunArgs(pod=pod, apps=tuple(apps))
