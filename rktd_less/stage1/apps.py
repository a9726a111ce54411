"""From a pod manifest app to what its unit needs: argv, uid/gid, environment (pure)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PodError

if TYPE_CHECKING:
    from ..common.manifests import NameValueDoc

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# rkt common/environment.go: set when absent.
DEFAULT_ENV = (("PATH", DEFAULT_PATH), ("SHELL", "/bin/sh"), ("USER", "root"),
               ("LOGNAME", "root"), ("HOME", "/root"))


def app_env(app_name: str, image_env: Sequence[NameValueDoc]) -> list[tuple[str, str]]:
    """Final environment: the manifest's (already merged by stage0), defaults where absent,
    plus AC_APP_NAME."""
    env: dict[str, str] = {}
    for item in image_env:
        env[str(item["name"])] = str(item["value"])
    for k, v in DEFAULT_ENV:
        env.setdefault(k, v)
    env["AC_APP_NAME"] = app_name
    return list(env.items())


def resolve_exec(argv: Sequence[str], rootfs: Path, path: str) -> list[str]:
    """appc: exec[0] without a slash is looked up in the app's PATH, inside the app rootfs."""
    if not argv:
        raise PodError("app has no exec", hint="pass --exec")
    if "/" in argv[0]:
        return list(argv)
    for d in path.split(":"):
        if d.startswith("/"):
            cand = rootfs / d.lstrip("/") / argv[0]
            if os.path.lexists(cand):
                return [f"{d.rstrip('/')}/{argv[0]}", *argv[1:]]
    raise PodError(f'"{argv[0]}" not found in the app\'s PATH', hint="give an absolute --exec")
