"""appc primitive types (spec v0.8.11, ``schema/types``): names, labels and small records.

Parsing is strict and every failure is a :class:`ManifestError` with a one-line message that
names the document and the field, e.g. ``image manifest: "name" "Foo" is not a valid AC
Identifier``. Unknown JSON fields are ignored, as Go's decoder does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ..errors import ManifestError

APPC_VERSION = "0.8.11"

AC_IDENTIFIER_RE = re.compile(r"^[a-z0-9]+([-._~/][a-z0-9]+)*$")
AC_NAME_RE = re.compile(r"^[a-z0-9]+([-][a-z0-9]+)*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z_0-9.-]*$")
_HASH_RE = re.compile(r"^sha512-[0-9a-f]+$")
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)

# schema/types/labels.go ValidOSArch
VALID_OS_ARCH: Mapping[str, tuple[str, ...]] = {
    "linux": ("amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l", "armv7b", "ppc64",
              "ppc64le", "s390x"),
    "freebsd": ("amd64", "i386", "arm"),
    "darwin": ("x86_64", "i386"),
}

EVENT_HANDLER_NAMES = ("pre-start", "post-stop")
VOLUME_KINDS = ("host", "empty")


def q(value: object) -> str:
    """Quote a value for a one-line message (JSON escapes keep control characters out)."""
    return json.dumps(value)


def is_ac_identifier(text: str) -> bool:
    return bool(AC_IDENTIFIER_RE.match(text))


def is_ac_name(text: str) -> bool:
    return bool(AC_NAME_RE.match(text))


def sanitize_ac_name(text: str) -> str:
    """Lower-case, turn every run of invalid characters into one ``-``, trim the edges."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not out:
        raise ManifestError(f"cannot make an AC Name from {q(text)}: no valid character")
    return out


def app_name_from_image_name(image_name: str) -> str:
    """rkt's default app name: the image name's last path component as an AC Name."""
    return sanitize_ac_name(image_name.rstrip("/").rsplit("/", 1)[-1])


def os_arch_error(os_: str | None, arch: str | None) -> str | None:
    """Why an ``os``/``arch`` label pair is invalid, or None (arch only matters with os)."""
    if os_ is None:
        return None
    archs = VALID_OS_ARCH.get(os_)
    if archs is None:
        return f"bad os {q(os_)} (must be one of: {', '.join(sorted(VALID_OS_ARCH))})"
    if arch is not None and arch not in archs:
        return f"bad arch {q(arch)} for {os_} (must be one of: {', '.join(archs)})"
    return None


# --- parsing helpers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Loc:
    """Where a value sits: the document ("image manifest") and the field path inside it."""

    doc: str
    path: str = ""

    def at(self, key: str | int) -> Loc:
        if isinstance(key, int):
            return Loc(self.doc, f"{self.path}[{key}]")
        return Loc(self.doc, f"{self.path}.{key}" if self.path else key)

    def fail(self, detail: str) -> NoReturn:
        if self.path:
            raise ManifestError(f"{self.doc}: {q(self.path)} {detail}")
        raise ManifestError(f"{self.doc}: {detail}")


def obj(loc: Loc, v: object) -> dict[str, Any]:
    if not isinstance(v, dict):
        loc.fail("must be a JSON object")
    return v


def req(loc: Loc, d: Mapping[str, Any], key: str) -> Any:
    v = d.get(key)
    if v is None:
        loc.at(key).fail("is required")
    return v


def string(loc: Loc, v: object, *, empty_ok: bool = True) -> str:
    if not isinstance(v, str):
        loc.fail("must be a string")
    if not v and not empty_ok:
        loc.fail("must not be empty")
    return v


def opt_str(loc: Loc, d: Mapping[str, Any], key: str) -> str | None:
    v = d.get(key)
    return None if v is None else string(loc.at(key), v)


def boolean(loc: Loc, d: Mapping[str, Any], key: str, default: bool = False) -> bool:
    v = d.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        loc.at(key).fail("must be true or false")
    return v


def integer(loc: Loc, v: object, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        loc.fail("must be an integer")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        loc.fail(f"{v} is out of range {lo}..{hi}" if hi is not None else f"must be >= {lo}")
    return v


def array(loc: Loc, d: Mapping[str, Any], key: str) -> list[Any]:
    """An optional list field (absent or null → empty)."""
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        loc.at(key).fail("must be a list")
    return v


def strings(loc: Loc, v: object) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        loc.fail("must be a list of strings")
    return tuple(v)


def ac_identifier(loc: Loc, v: object) -> str:
    s = string(loc, v)
    if not is_ac_identifier(s):
        loc.fail(f"{q(s)} is not a valid AC Identifier")
    return s


def ac_name(loc: Loc, v: object) -> str:
    s = string(loc, v)
    if not is_ac_name(s):
        loc.fail(f"{q(s)} is not a valid AC Name")
    return s


def image_hash(loc: Loc, v: object) -> str:
    s = string(loc, v)
    if not _HASH_RE.match(s):
        loc.fail(f"{q(s)} is not a valid image ID (sha512-<hex>)")
    return s


def semver(loc: Loc, v: object) -> str:
    s = string(loc, v)
    if not _SEMVER_RE.match(s):
        loc.fail(f"{q(s)} is not a valid semantic version")
    if s.split("-")[0].split("+")[0] == "0.0.0":
        loc.fail("must not be 0.0.0")
    return s


def abs_path(loc: Loc, v: object) -> str:
    s = string(loc, v, empty_ok=False)
    if not s.startswith("/"):
        loc.fail(f"{q(s)} must be an absolute path")
    return s


def str_map(loc: Loc, d: Mapping[str, Any], key: str) -> tuple[tuple[str, str], ...]:
    """userAnnotations / userLabels: a JSON object of strings, kept in document order."""
    v = d.get(key)
    if v is None:
        return ()
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        loc.at(key).fail("must be an object of strings")
    return tuple(v.items())


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameValue:
    """A ``{"name": ..., "value": ...}`` pair: labels, annotations, environment variables."""

    name: str
    value: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}


def _pairs(loc: Loc, items: Sequence[Any], what: str, name_ok: str) -> tuple[NameValue, ...]:
    out: list[NameValue] = []
    seen: set[str] = set()
    for i, raw in enumerate(items):
        at = loc.at(i)
        d = obj(at, raw)
        if name_ok == "identifier":
            name = ac_identifier(at.at("name"), req(at, d, "name"))
        else:
            name = string(at.at("name"), req(at, d, "name"), empty_ok=False)
            if not _ENV_NAME_RE.match(name):
                at.at("name").fail(f"{q(name)} is not a valid environment variable name")
        value = string(at.at("value"), d.get("value", ""))
        if name in seen:
            loc.fail(f"has duplicate {what} {q(name)}")
        seen.add(name)
        out.append(NameValue(name, value))
    return tuple(out)


def parse_labels(loc: Loc, items: Sequence[Any]) -> tuple[NameValue, ...]:
    labels = _pairs(loc, items, "label", "identifier")
    values = {lb.name: lb.value for lb in labels}
    if "name" in values:
        loc.fail('must not contain a label called "name"')
    err = os_arch_error(values.get("os"), values.get("arch"))
    if err:
        loc.fail(err)
    return labels


def parse_annotations(loc: Loc, items: Sequence[Any]) -> tuple[NameValue, ...]:
    return _pairs(loc, items, "annotation", "identifier")


def parse_environment(loc: Loc, items: Sequence[Any]) -> tuple[NameValue, ...]:
    return _pairs(loc, items, "environment variable", "env")


def get_value(pairs: Sequence[NameValue], name: str) -> str | None:
    for p in pairs:
        if p.name == name:
            return p.value
    return None


@dataclass(frozen=True)
class Isolator:
    """An isolator; its value stays raw JSON (stage1 interprets the ones it knows)."""

    name: str
    value: Any

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> Isolator:
        d = obj(loc, raw)
        name = ac_identifier(loc.at("name"), req(loc, d, "name"))
        if "value" not in d:
            loc.at("value").fail("is required")
        return cls(name, d["value"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}


@dataclass(frozen=True)
class EventHandler:
    name: str  # pre-start | post-stop
    exec: tuple[str, ...]

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> EventHandler:
        d = obj(loc, raw)
        name = string(loc.at("name"), req(loc, d, "name"))
        if name not in EVENT_HANDLER_NAMES:
            loc.at("name").fail(f"{q(name)} must be one of: {', '.join(EVENT_HANDLER_NAMES)}")
        return cls(name, strings(loc.at("exec"), d.get("exec")))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "exec": list(self.exec)}


@dataclass(frozen=True)
class MountPoint:
    name: str
    path: str
    read_only: bool = False

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> MountPoint:
        d = obj(loc, raw)
        return cls(ac_name(loc.at("name"), req(loc, d, "name")),
                   string(loc.at("path"), req(loc, d, "path"), empty_ok=False),
                   boolean(loc, d, "readOnly"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "path": self.path}
        if self.read_only:
            out["readOnly"] = True
        return out


@dataclass(frozen=True)
class Port:
    name: str
    protocol: str
    port: int
    count: int = 1
    socket_activated: bool = False

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> Port:
        d = obj(loc, raw)
        port = integer(loc.at("port"), req(loc, d, "port"), 1, 65535)
        count = integer(loc.at("count"), d.get("count") or 1, 1, 65535)
        if port + count > 65536:
            loc.at("count").fail("makes the port range end beyond 65535")
        return cls(ac_name(loc.at("name"), req(loc, d, "name")),
                   string(loc.at("protocol"), d.get("protocol", "")), port, count,
                   boolean(loc, d, "socketActivated"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "protocol": self.protocol, "port": self.port,
                "count": self.count, "socketActivated": self.socket_activated}


@dataclass(frozen=True)
class ExposedPort:
    """A pod-level port forward (``rkt run --port``)."""

    name: str
    host_port: int
    host_ip: str | None = None
    pod_port: Port | None = None

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> ExposedPort:
        import ipaddress  # only pod manifests with ports need it

        d = obj(loc, raw)
        host_ip = opt_str(loc, d, "hostIP")
        if host_ip is not None:
            try:
                ipaddress.ip_address(host_ip)
            except ValueError:
                loc.at("hostIP").fail(f"{q(host_ip)} is not an IP address")
        pod_port = d.get("podPort")
        return cls(ac_name(loc.at("name"), req(loc, d, "name")),
                   integer(loc.at("hostPort"), req(loc, d, "hostPort"), 0, 65535), host_ip,
                   None if pod_port is None else Port.from_dict(loc.at("podPort"), pod_port))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "hostPort": self.host_port}
        if self.host_ip is not None:
            out["hostIP"] = self.host_ip
        if self.pod_port is not None:
            out["podPort"] = self.pod_port.to_dict()
        return out


@dataclass(frozen=True)
class Volume:
    """A pod volume; ``empty`` volumes get appc's defaults (mode 0755, uid 0, gid 0)."""

    name: str
    kind: str  # host | empty
    source: str = ""
    read_only: bool | None = None
    recursive: bool | None = None
    mode: str | None = None
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> Volume:
        d = obj(loc, raw)
        name = ac_name(loc.at("name"), req(loc, d, "name"))
        kind = string(loc.at("kind"), req(loc, d, "kind"))
        if kind not in VOLUME_KINDS:
            loc.at("kind").fail(f"{q(kind)} must be one of: {', '.join(VOLUME_KINDS)}")
        source = opt_str(loc, d, "source") or ""
        ro = None if d.get("readOnly") is None else boolean(loc, d, "readOnly")
        rec = None if d.get("recursive") is None else boolean(loc, d, "recursive")
        mode = opt_str(loc, d, "mode")
        uid = None if d.get("uid") is None else integer(loc.at("uid"), d["uid"], 0)
        gid = None if d.get("gid") is None else integer(loc.at("gid"), d["gid"], 0)
        if kind == "host":
            if not source.startswith("/"):
                loc.at("source").fail("must be an absolute path for a host volume")
            for key, val in (("mode", mode), ("uid", uid), ("gid", gid)):
                if val is not None:
                    loc.at(key).fail("cannot be set for a host volume")
        else:
            if source:
                loc.at("source").fail("must be empty for an empty volume")
            mode = "0755" if mode is None else mode
            if not re.match(r"^0?[0-7]{3,4}$", mode):
                loc.at("mode").fail(f"{q(mode)} is not an octal file mode")
            uid = 0 if uid is None else uid
            gid = 0 if gid is None else gid
        return cls(name, kind, source, ro, rec, mode, uid, gid)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.source:
            out["source"] = self.source
        for key, val in (("readOnly", self.read_only), ("recursive", self.recursive),
                         ("mode", self.mode), ("uid", self.uid), ("gid", self.gid)):
            if val is not None:
                out[key] = val
        return out
