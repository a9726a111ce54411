"""Docker/OCI image config → appc ImageManifest, by docker2aci's rules (pure, no I/O).

Follows ``appc/docker2aci`` v0.17.2 ``lib/internal/internal.go`` (``GenerateManifestV22``) for
the squashed image rkt stores:

* labels ``version`` (the tag), ``os`` and ``arch`` translated as appc's ``ToAppcOSArch``
  (amd64→amd64, 386→i386, arm64→aarch64, arm→armv6l, arm variant v7→armv7l); a platform appc
  does not know gets no os/arch labels (docker2aci then guesses the converting host's);
* app (only when the config has a ``config`` object): ``exec`` = Entrypoint ++ Cmd (left out
  when empty: the caller asks for ``--exec``); ``User`` "u:g" → u, g; "u" → u, u; "" → 0, 0;
  ``Env`` "K=V" (entries without "=" dropped, a later K replaces an earlier one in place);
  ``WorkingDir`` ("/" when unset); ``ExposedPorts`` "80/tcp" → port "80-tcp", sorted by name;
  ``Volumes`` "/var/lib/data" → mountPoint "volume-var-lib-data", a repeated name gets "-1",
  "-2"..., sorted by name;
* annotations ``author`` (docker2aci writes "author" on this path, not appc's "authors"),
  ``created`` (left out unless RFC 3339, which appc requires), ``docker-comment`` (Docker's
  ``comment``, as docker2aci's v1 path), and ``appc.io/docker/{originalname, registryurl,
  repository, tag, imageid, parentimageid, manifesthash, entrypoint, cmd}`` (entrypoint/cmd
  as JSON arrays).

Errors in the config are :class:`~rktd_less.errors.ManifestError` naming the field.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from ..appc.types import APPC_VERSION, is_ac_identifier, sanitize_ac_name
from ..errors import ManifestError

DOCKER_ANNOTATION_PREFIX = "appc.io/docker/"

# appc schema/types/labels.go ToAppcOSArch: (GOOS, GOARCH, variant) → (os, arch). Docker and
# OCI configs spell the arm variant "v7"; appc's table has "7".
_OS_ARCH: Mapping[tuple[str, str, str], tuple[str, str]] = {
    ("linux", "amd64", ""): ("linux", "amd64"),
    ("linux", "386", ""): ("linux", "i386"),
    ("linux", "arm64", ""): ("linux", "aarch64"),
    ("linux", "arm", ""): ("linux", "armv6l"),
    ("linux", "arm", "6"): ("linux", "armv6l"),
    ("linux", "arm", "7"): ("linux", "armv7l"),
    ("linux", "ppc64", ""): ("linux", "ppc64"),
    ("linux", "ppc64le", ""): ("linux", "ppc64le"),
    ("linux", "s390x", ""): ("linux", "s390x"),
    ("freebsd", "amd64", ""): ("freebsd", "amd64"),
    ("freebsd", "386", ""): ("freebsd", "i386"),
    ("freebsd", "arm", ""): ("freebsd", "arm"),
    ("freebsd", "arm", "5"): ("freebsd", "arm"),
    ("freebsd", "arm", "6"): ("freebsd", "arm"),
    ("freebsd", "arm", "7"): ("freebsd", "arm"),
    ("darwin", "amd64", ""): ("darwin", "x86_64"),
    ("darwin", "386", ""): ("darwin", "i386"),
}

_ID_INVALID = re.compile(r"[^a-z0-9._~/-]")
_ID_EDGES = re.compile(r"^[-._~/]+|[-._~/]+$")
_ID_SEP_RUNS = re.compile(r"([-._~/])[-._~/]+")
_PORT_RE = re.compile(r"^[0-9]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z_0-9.-]*$")  # appc schema/types/environment.go
# appc requires the "created" annotation to parse as RFC 3339 (Go accepts any fraction)
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _fail(field: str, detail: str) -> ManifestError:
    return ManifestError(f"docker image config: {json.dumps(field)} {detail}")


def _opt_str(d: Mapping[str, Any], key: str, field: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _fail(field, "must be a string")
    return v


def _str_list(d: Mapping[str, Any], key: str, field: str, *, slice_: bool = False) -> list[str]:
    v = d.get(key)
    if v is None:
        return []
    if slice_ and isinstance(v, str):  # Docker's strslice: a bare string is one argument
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _fail(field, "must be a list of strings")
    return list(v)


def _key_set(d: Mapping[str, Any], key: str, field: str) -> list[str]:
    """Docker's ``map[string]struct{}`` sets (ExposedPorts, Volumes): the keys, sorted."""
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, dict):
        raise _fail(field, "must be an object")
    return sorted(v)


def appc_image_name(registry: str, repository: str) -> str:
    """docker2aci's image name: ``<registry>/<repository>`` made an AC Identifier
    (``SanitizeACIdentifier``: lower case, invalid characters → "_", edges trimmed), with runs
    of separators squeezed so that names Docker allows ("a__b") stay valid."""
    s = _ID_INVALID.sub("_", f"{registry}/{repository}".lower())
    s = _ID_SEP_RUNS.sub(r"\1", _ID_EDGES.sub("", s))
    if not is_ac_identifier(s):
        raise ManifestError(f"cannot make an image name from {json.dumps(registry)} and "
                            f"{json.dumps(repository)}")
    return s


def appc_os_arch(os_: str, arch: str, variant: str = "") -> tuple[str, str] | None:
    """appc's (os, arch) for a Go/OCI platform, or None when appc has no name for it."""
    v = "" if arch == "arm64" else variant.lower().removeprefix("v")
    return _OS_ARCH.get((os_, arch, v))


def docker_user(user: str) -> tuple[str, str]:
    """docker2aci ``parseDockerUser``: "u:g" → (u, g), "u" → (u, u), "" → ("0", "0")."""
    if not user:
        return "0", "0"
    parts = user.split(":")
    u = parts[0] or "0"
    g = parts[1] if len(parts) > 1 else parts[0]
    return u, g or u


def environment(env: list[str]) -> list[dict[str, str]]:
    """``K=V`` strings → appc environment; a repeated name keeps its first place."""
    out: dict[str, str] = {}
    for item in env:
        name, sep, value = item.partition("=")
        if not sep:
            continue
        if not _ENV_NAME_RE.match(name):
            raise _fail("config.Env", f"has a name appc does not allow: {json.dumps(name)}")
        out[name] = value
    return [{"name": k, "value": v} for k, v in out.items()]


def ports(exposed: list[str]) -> list[dict[str, Any]]:
    """``"80/tcp"`` (or ``"80"``: tcp) → appc ports, sorted by name as docker2aci does."""
    out = []
    for spec in exposed:
        number, _, proto = spec.partition("/")
        proto = proto.split("/", 1)[0] or "tcp"
        if not _PORT_RE.match(number) or not 0 < int(number) < 65536:
            raise _fail("config.ExposedPorts", f"has an invalid port {json.dumps(spec)}")
        out.append({"name": sanitize_ac_name(spec), "protocol": proto, "port": int(number),
                    "count": 1, "socketActivated": False})
    return sorted(out, key=lambda p: str(p["name"]))


def mount_points(volumes: list[str]) -> list[dict[str, str]]:
    """``"/var/lib/data"`` → mountPoint ``volume-var-lib-data``; a name seen before gets
    ``-<n>`` (n = how many had it before), then sorted by name (``convertVolumesToMPs``)."""
    seen: dict[str, int] = {}
    out = []
    for path in volumes:
        if not path.startswith("/"):
            raise _fail("config.Volumes", f"has a relative path {json.dumps(path)}")
        name = sanitize_ac_name(posixpath.normpath(f"volume/{path}"))
        n = seen.get(name)
        seen[name] = (n or 0) + 1
        out.append({"name": f"{name}-{n}" if n else name, "path": path})
    return sorted(out, key=lambda m: m["name"])


def _app(inner: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    entrypoint = _str_list(inner, "Entrypoint", "config.Entrypoint", slice_=True)
    cmd = _str_list(inner, "Cmd", "config.Cmd", slice_=True)
    user, group = docker_user(_opt_str(inner, "User", "config.User"))
    wd = _opt_str(inner, "WorkingDir", "config.WorkingDir")
    app: dict[str, Any] = {}
    if entrypoint or cmd:
        app["exec"] = entrypoint + cmd
    app["user"], app["group"] = user, group
    app["workingDirectory"] = posixpath.normpath(posixpath.join("/", wd)) if wd else "/"
    env = environment(_str_list(inner, "Env", "config.Env"))
    if env:
        app["environment"] = env
    mps = mount_points(_key_set(inner, "Volumes", "config.Volumes"))
    if mps:
        app["mountPoints"] = mps
    prts = ports(_key_set(inner, "ExposedPorts", "config.ExposedPorts"))
    if prts:
        app["ports"] = prts
    return app, entrypoint, cmd


def _go_json(argv: list[str]) -> str:
    return json.dumps(argv, separators=(",", ":"), ensure_ascii=False)  # as Go's json.Marshal


def aci_manifest(config: Mapping[str, Any], *, appc_name: str, tag: str, registry: str,
                 repository: str, original_name: str, manifest_digest: str, image_id: str,
                 parent_id: str | None = None) -> dict[str, Any]:
    """The appc ImageManifest (as JSON-ready dict) of a squashed Docker/OCI image.

    ``config`` is the image config blob (``{"architecture", "os", "config": {...}, ...}``);
    ``appc_name`` the image name (see :func:`appc_image_name`); ``tag`` the label
    ``version`` ("" for none); ``image_id`` and ``parent_id`` go to the ``imageid`` and
    ``parentimageid`` annotations, ``manifest_digest`` to ``manifesthash``.
    """
    if not is_ac_identifier(appc_name):
        raise ManifestError(f"image name {json.dumps(appc_name)} is not a valid AC Identifier")
    labels: dict[str, str] = {}
    if tag:
        labels["version"] = tag
    platform = appc_os_arch(_opt_str(config, "os", "os"),
                            _opt_str(config, "architecture", "architecture"),
                            _opt_str(config, "variant", "variant"))
    if platform is not None:
        labels["os"], labels["arch"] = platform

    annotations: dict[str, str] = {}

    def annotate(name: str, value: str | None) -> None:
        if value:  # docker2aci's setAnnotation skips empty values
            annotations[name] = value

    annotate("author", _opt_str(config, "author", "author"))
    created = _opt_str(config, "created", "created")
    annotate("created", created if _RFC3339_RE.match(created) else None)
    annotate("docker-comment", _opt_str(config, "comment", "comment"))
    for key, value in (("originalname", original_name), ("registryurl", registry),
                       ("repository", repository), ("tag", tag), ("imageid", image_id),
                       ("parentimageid", parent_id), ("manifesthash", manifest_digest)):
        annotate(DOCKER_ANNOTATION_PREFIX + key, value)

    manifest: dict[str, Any] = {"acKind": "ImageManifest", "acVersion": APPC_VERSION,
                                "name": appc_name,
                                "labels": [{"name": k, "value": v}
                                           for k, v in sorted(labels.items())]}
    inner = config.get("config")
    if inner is not None:
        if not isinstance(inner, dict):
            raise _fail("config", "must be an object")
        manifest["app"], entrypoint, cmd = _app(inner)
        if entrypoint:
            annotate(DOCKER_ANNOTATION_PREFIX + "entrypoint", _go_json(entrypoint))
        if cmd:
            annotate(DOCKER_ANNOTATION_PREFIX + "cmd", _go_json(cmd))
    manifest["annotations"] = [{"name": k, "value": v} for k, v in annotations.items()]
    return manifest
