"""acbuild's manifest commands as pure functions: an image manifest in, the edited one out
(reference acbuild.md §1). Each value is checked as appc requires before it is written; an
``rm`` of what the manifest does not have raises :class:`Absent` (acbuild's exit status 2).

Adding what is already there replaces it, moved to the end (acbuild's order). Every command
that changes the manifest is recorded as the annotation ``coreos.com/acbuild/command-N``
(:func:`with_history`), unless ``--no-history``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from ..appc.isolators import check_all
from ..appc.manifest import App, Dependency, ImageManifest
from ..appc.types import (
    EVENT_HANDLER_NAMES,
    EventHandler,
    Isolator,
    Loc,
    MountPoint,
    NameValue,
    Port,
    abs_path,
    ac_identifier,
    image_hash,
    parse_annotations,
    parse_environment,
    parse_labels,
)
from ..errors import Absent, UsageError

UNNAMED = "acbuild-unnamed"
HISTORY_PREFIX = "coreos.com/acbuild/command-"


def skeleton(arch: str, os_: str = "linux") -> ImageManifest:
    """What ``begin`` with nothing starts from: no app, the machine's os and arch."""
    return ImageManifest(name=UNNAMED, labels=(NameValue("arch", arch), NameValue("os", os_)))


def _app(m: ImageManifest) -> App:
    """The manifest's app; a new one runs as user and group 0 (acbuild's)."""
    return m.app if m.app is not None else App(exec=(), user="0", group="0")


def _with_app(m: ImageManifest, **changes: Any) -> ImageManifest:
    return dataclasses.replace(m, app=dataclasses.replace(_app(m), **changes))


# --- set-* ----------------------------------------------------------------------------------

def set_name(m: ImageManifest, name: str) -> ImageManifest:
    return dataclasses.replace(m, name=ac_identifier(Loc("name"), name))


def set_exec(m: ImageManifest, argv: Sequence[str]) -> ImageManifest:
    if argv and not argv[0]:
        raise UsageError("the command must not be empty")
    return _with_app(m, exec=tuple(argv))


def set_user(m: ImageManifest, user: str) -> ImageManifest:
    if not user:
        raise UsageError("the user must not be empty")
    return _with_app(m, user=user)


def set_group(m: ImageManifest, group: str) -> ImageManifest:
    if not group:
        raise UsageError("the group must not be empty")
    return _with_app(m, group=group)


def set_supp_groups(m: ImageManifest, gids: Sequence[str]) -> ImageManifest:
    out = []
    for g in gids:
        if not g.isdigit():
            raise UsageError(f'supplementary group "{g}" is not a number (a GID)')
        out.append(int(g))
    return _with_app(m, supplementary_gids=tuple(out))


def set_working_directory(m: ImageManifest, path: str) -> ImageManifest:
    return _with_app(m, working_directory=abs_path(Loc("working directory"), path))


def set_event_handler(m: ImageManifest, name: str, argv: Sequence[str]) -> ImageManifest:
    if name not in EVENT_HANDLER_NAMES:
        raise UsageError(f'unknown event handler "{name}"',
                         hint="use " + " or ".join(EVENT_HANDLER_NAMES))
    if not argv or not argv[0]:
        raise UsageError("no command given for the event handler")
    app = _app(m)
    handlers = tuple(h for h in app.event_handlers if h.name != name)
    return _with_app(m, event_handlers=(*handlers, EventHandler(name, tuple(argv))))


# --- name/value lists: labels, annotations, environment ------------------------------------

def _add_pair(pairs: tuple[NameValue, ...], name: str, value: str,
              check: Callable[[Loc, Sequence[Any]], tuple[NameValue, ...]],
              what: str) -> tuple[NameValue, ...]:
    new = (*(p for p in pairs if p.name != name), NameValue(name, value))
    return check(Loc(what), [p.to_dict() for p in new])


def _rm_pair(pairs: tuple[NameValue, ...], name: str, what: str) -> tuple[NameValue, ...]:
    if not any(p.name == name for p in pairs):
        raise Absent(f'{what} "{name}" not found')
    return tuple(p for p in pairs if p.name != name)


def label_add(m: ImageManifest, name: str, value: str) -> ImageManifest:
    return dataclasses.replace(m, labels=_add_pair(m.labels, name, value, parse_labels,
                                                   "labels"))


def label_rm(m: ImageManifest, name: str) -> ImageManifest:
    return dataclasses.replace(m, labels=_rm_pair(m.labels, name, "label"))


def annotation_add(m: ImageManifest, name: str, value: str) -> ImageManifest:
    return dataclasses.replace(m, annotations=_add_pair(m.annotations, name, value,
                                                        parse_annotations, "annotations"))


def annotation_rm(m: ImageManifest, name: str) -> ImageManifest:
    return dataclasses.replace(m, annotations=_rm_pair(m.annotations, name, "annotation"))


def environment_add(m: ImageManifest, name: str, value: str) -> ImageManifest:
    app = _app(m)
    return _with_app(m, environment=_add_pair(app.environment, name, value, parse_environment,
                                              "environment"))


def environment_rm(m: ImageManifest, name: str) -> ImageManifest:
    return _with_app(m, environment=_rm_pair(_app(m).environment, name,
                                             "environment variable"))


# --- dependencies ---------------------------------------------------------------------------

def parse_dep_labels(items: Sequence[str]) -> tuple[NameValue, ...]:
    """``--label k=v`` flags (repeatable) as the dependency's labels."""
    pairs = []
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise UsageError(f'invalid label "{item}"', hint="use --label NAME=VALUE")
        pairs.append({"name": k, "value": v})
    return parse_labels(Loc("dependency labels"), pairs)


def dep_add(m: ImageManifest, name: str, *, image_id: str = "",
            labels: Sequence[NameValue] = (), size: int = 0) -> ImageManifest:
    """``name`` may carry its version as ``name:version`` (a label of its own)."""
    name, version = split_version(name)
    labels = tuple(labels)
    if version is not None:
        if any(lb.name == "version" for lb in labels):
            raise UsageError(f'version given twice for "{name}"')
        labels = (*labels, NameValue("version", version))
    if size < 0:
        raise UsageError(f"invalid size {size}: must not be negative")
    dep = Dependency(image_name=ac_identifier(Loc("dependency name"), name),
                     image_id=image_hash(Loc("image ID"), image_id) if image_id else None,
                     labels=parse_labels(Loc("dependency labels"),
                                         [lb.to_dict() for lb in labels]),
                     size=size)
    kept = tuple(d for d in m.dependencies if d.image_name != name)
    return dataclasses.replace(m, dependencies=(*kept, dep))


def split_version(name: str) -> tuple[str, str | None]:
    """``example.com/base:1.0`` → (``example.com/base``, ``1.0``) as rkt reads image names."""
    base, colon, version = name.rpartition(":")
    if colon and base and "/" not in version:
        return base, version
    return name, None


def dep_rm(m: ImageManifest, name: str) -> ImageManifest:
    name = split_version(name)[0]
    if not any(d.image_name == name for d in m.dependencies):
        raise Absent(f'dependency "{name}" not found')
    return dataclasses.replace(m, dependencies=tuple(d for d in m.dependencies
                                                     if d.image_name != name))


# --- mount points, ports, isolators -----------------------------------------------------------

def mount_add(m: ImageManifest, name: str, path: str, *, read_only: bool = False) -> ImageManifest:
    mp = MountPoint.from_dict(Loc("mount point"), {"name": name, "path": path,
                                                   "readOnly": read_only})
    abs_path(Loc("mount point path"), path)
    app = _app(m)
    kept = tuple(x for x in app.mount_points if x.name != name)
    return _with_app(m, mount_points=(*kept, mp))


def mount_rm(m: ImageManifest, name_or_path: str) -> ImageManifest:
    app = _app(m)
    kept = tuple(x for x in app.mount_points if name_or_path not in (x.name, x.path))
    if len(kept) == len(app.mount_points):
        raise Absent(f'mount point "{name_or_path}" not found')
    return _with_app(m, mount_points=kept)


def port_add(m: ImageManifest, name: str, protocol: str, port: str, *, count: int = 1,
             socket_activated: bool = False) -> ImageManifest:
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f'port "{port}" is not a number') from None
    if protocol not in ("tcp", "udp"):
        raise UsageError(f'unknown protocol "{protocol}"', hint="use tcp or udp")
    if not 1 <= number <= 65535:
        raise UsageError(f"port {number} is out of range 1-65535")
    if count < 1 or number + count > 65536:
        raise UsageError(f"port range {number}+{count} ends beyond 65535")
    p = Port.from_dict(Loc("port"), {"name": name, "protocol": protocol, "port": number,
                                     "count": count, "socketActivated": socket_activated})
    app = _app(m)
    kept = tuple(x for x in app.ports if x.name != name)
    return _with_app(m, ports=(*kept, p))


def port_rm(m: ImageManifest, name_or_port: str) -> ImageManifest:
    app = _app(m)
    kept = tuple(x for x in app.ports if name_or_port not in (x.name, str(x.port)))
    if len(kept) == len(app.ports):
        raise Absent(f'port "{name_or_port}" not found')
    return _with_app(m, ports=kept)


def isolator_add(m: ImageManifest, name: str, value_json: str) -> ImageManifest:
    try:
        value = json.loads(value_json)
    except ValueError as e:
        raise UsageError(f'isolator "{name}": the value is not JSON: {e}') from None
    iso = Isolator.from_dict(Loc("isolator"), {"name": name, "value": value})
    app = _app(m)
    kept = tuple(x for x in app.isolators if x.name != name)
    check_all([x.to_dict() for x in (*kept, iso)])  # as rkt will read them
    return _with_app(m, isolators=(*kept, iso))


def isolator_rm(m: ImageManifest, name: str) -> ImageManifest:
    app = _app(m)
    kept = tuple(x for x in app.isolators if x.name != name)
    if len(kept) == len(app.isolators):
        raise Absent(f'isolator "{name}" not found')
    return _with_app(m, isolators=kept)


# --- history --------------------------------------------------------------------------------

def with_history(m: ImageManifest, command: Sequence[str], args: Sequence[str]) -> ImageManifest:
    """acbuild's build history: ``acbuild <command> "<arg>"...`` as the next
    ``coreos.com/acbuild/command-N`` annotation."""
    n = 1 + sum(1 for a in m.annotations if a.name.startswith(HISTORY_PREFIX))
    text = " ".join(["acbuild", *command, *(json.dumps(a) for a in args)])
    return dataclasses.replace(m, annotations=(*m.annotations,
                                               NameValue(f"{HISTORY_PREFIX}{n}", text)))
