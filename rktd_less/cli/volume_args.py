"""rkt's --volume and --mount syntax (pure): comma-separated key=value lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from .flags import bool_value

VOLUME_USAGE = ("NAME,kind=host,source=PATH[,readOnly=BOOL][,recursive=BOOL] or "
                "NAME,kind=empty[,mode=0755][,uid=0][,gid=0]")


def _bool(text: str, what: str) -> bool:
    value = bool_value(text)
    if value is None:
        raise UsageError(f'invalid {what} "{text}": expected true or false')
    return value


def _kv(items: Sequence[str], flag: str, spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise UsageError(f'invalid {flag} "{item}"', hint=f"expected {spec}")
        out[k] = v
    return out


def parse_volume(text: str) -> dict[str, Any]:
    name, *rest = text.split(",")
    if not name or "=" in name:
        raise UsageError(f'invalid --volume "{text}": missing volume name',
                         hint=f"expected {VOLUME_USAGE}")
    kv = _kv(rest, "--volume", VOLUME_USAGE)
    kind = kv.pop("kind", "")
    vol: dict[str, Any] = {"name": name, "kind": kind}
    if kind == "host":
        src = kv.pop("source", "")
        if not src.startswith("/"):
            raise UsageError(f'invalid --volume "{text}": source must be an absolute path')
        vol["source"] = src
        vol["readOnly"] = _bool(kv.pop("readOnly", "false"), "readOnly")
        vol["recursive"] = _bool(kv.pop("recursive", "true"), "recursive")
    elif kind == "empty":
        mode = kv.pop("mode", "0755")
        try:
            int(mode, 8)
        except ValueError as e:
            raise UsageError(f'invalid --volume "{text}": mode "{mode}" is not octal') from e
        vol.update(mode=mode, readOnly=_bool(kv.pop("readOnly", "false"), "readOnly"))
        for k in ("uid", "gid"):
            v = kv.pop(k, "0")
            if not v.isdigit():
                raise UsageError(f'invalid --volume "{text}": {k} "{v}" is not a number')
            vol[k] = int(v)
    else:
        raise UsageError(f'invalid --volume "{text}": kind must be host or empty',
                         hint=f"expected {VOLUME_USAGE}")
    if kv:
        raise UsageError(f'invalid --volume "{text}": unknown option "{next(iter(kv))}"',
                         hint=f"expected {VOLUME_USAGE}")
    return vol


def parse_mount(text: str) -> dict[str, Any]:
    kv = _kv(text.split(","), "--mount", "volume=NAME,target=PATH")
    vol, target = kv.pop("volume", ""), kv.pop("target", "")
    if not vol or not target.startswith("/") or kv:
        raise UsageError(f'invalid --mount "{text}"', hint="expected volume=NAME,target=PATH")
    return {"volume": vol, "path": target}
