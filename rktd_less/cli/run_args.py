"""rkt's run/prepare grammar (pure): pod flags, then images each followed by its per-app flags;
``--`` starts an app's arguments and a lone ``---`` ends them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
}


@dataclass(frozen=True)
class RunArgs:
    pod: dict[str, Any]
    apps: tuple[AppRequest, ...]


def env_pairs(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise UsageError(f'invalid environment "{item}": expected NAME=VALUE')
        out.append((k, v))
    return tuple(out)


def _gids(items: Sequence[str]) -> tuple[int, ...] | None:
    if not items:
        return None
    if not all(g.isdigit() for g in items):
        raise UsageError(f'invalid --supplementary-gids "{",".join(items)}"',
                         hint="a comma-separated list of numeric group IDs")
    return tuple(int(g) for g in items)


def _app(image: str, v: Mapping[str, Any], args: list[str] | None) -> AppRequest:
    return AppRequest(
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
