"""A small cobra/pflag-compatible flag parser: ``--name=value``, ``--name value``, bool flags
as ``--name`` or ``--name=true|false``, repeated flags for lists, ``--`` ends flags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..errors import UsageError


class Kind(Enum):
    BOOL = "bool"
    STR = "string"
    LIST = "list"  # repeated and/or comma-separated
    MULTI = "multi"  # repeated, each value kept whole (NAME=VALUE may contain commas)
    OPTSTR = "optional string"  # --wait or --wait=5s
    OPTMULTI = "optional multi"  # repeated, each whole; bare --net means no_opt (rkt's --net)


@dataclass(frozen=True)
class Flag:
    kind: Kind
    default: Any = None
    help: str = ""
    no_opt: str = "true"  # value of an OPTSTR/OPTMULTI flag given without '='


def bool_value(text: str) -> bool | None:
    """Go's strconv.ParseBool subset rkt accepts: 1/t/true, 0/f/false; None otherwise."""
    return {"1": True, "t": True, "true": True,
            "0": False, "f": False, "false": False}.get(text.lower())


def parse_bool(name: str, text: str) -> bool:
    value = bool_value(text)
    if value is None:
        raise UsageError(f'invalid argument "{text}" for "--{name}" flag: expected true or false')
    return value


def defaults(spec: Mapping[str, Flag]) -> dict[str, Any]:
    return {k: (list(f.default) if f.kind in (Kind.LIST, Kind.MULTI, Kind.OPTMULTI)
                else f.default)
            for k, f in spec.items()}


def take_flag(spec: Mapping[str, Flag], args: Sequence[str], i: int,
              values: dict[str, Any]) -> int | None:
    """Parse the flag at ``args[i]`` into ``values``; return the next index, or None if
    ``args[i]`` is not a flag of ``spec``."""
    a = args[i]
    if not a.startswith("--") or a == "--":
        return None
    name, eq, val = a[2:].partition("=")
    f = spec.get(name)
    if f is None:
        return None
    if f.kind == Kind.BOOL:
        values[name] = parse_bool(name, val) if eq else True
        return i + 1
    if f.kind == Kind.OPTSTR:
        values[name] = val if eq else f.no_opt
        return i + 1
    if f.kind == Kind.OPTMULTI:
        values[name].append(val if eq else f.no_opt)
        return i + 1
    if not eq:
        if i + 1 >= len(args):
            raise UsageError(f"flag needs an argument: --{name}")
        val = args[i + 1]
        i += 1
    if f.kind == Kind.LIST:
        values[name].extend(v for v in val.split(",") if v)
    elif f.kind == Kind.MULTI:
        values[name].append(val)
    else:
        values[name] = val
    return i + 1


def parse(spec: Mapping[str, Flag], args: Sequence[str],
          interspersed: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Flags anywhere (or only before the first positional if not ``interspersed``)."""
    values, items = _parse(spec, {}, args, interspersed)
    return values, [p for p, _ in items]


def parse_trailing(spec: Mapping[str, Flag], trailing: Mapping[str, Flag], args: Sequence[str]
                   ) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Flags of ``spec`` anywhere; each flag of ``trailing`` belongs to the positional argument
    (image) before it, once, as rkt's per-image flags (``fetch IMG --signature F``)."""
    return _parse(spec, trailing, args, True)


def _parse(spec: Mapping[str, Flag], trailing: Mapping[str, Flag], args: Sequence[str],
           interspersed: bool) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    values = defaults(spec)
    items: list[tuple[str, dict[str, Any]]] = []  # positional → its trailing flags
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            items.extend((p, {}) for p in args[i + 1:])
            break
        own = defaults(trailing) if trailing else {}
        nxt = take_flag(trailing, args, i, own) if trailing else None
        if nxt is not None:
            name = a[2:].partition("=")[0]
            if not items:
                raise UsageError(f"--{name} must follow an image")
            if name in items[-1][1]:
                raise UsageError(f"--{name} specified multiple times for the same image")
            items[-1][1][name] = own[name]
            i = nxt
            continue
        nxt = take_flag(spec, args, i, values)
        if nxt is not None:
            i = nxt
            continue
        if a.startswith("--") and len(a) > 2:
            raise UsageError(f"unknown flag: {a.split('=', 1)[0]}",
                             hint="see `rkt help` for the flags")
        items.append((a, {}))
        i += 1
        if not interspersed:
            items.extend((p, {}) for p in args[i:])
            break
    return values, items
