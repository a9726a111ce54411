"""Layered configuration and the insecure options (reference §1.2, §1.5)."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

INSECURE_VALUES = ("none", "image", "tls", "http", "pubkey", "capabilities", "paths", "seccomp",
                   "ondisk", "all-fetch", "all-run", "all")
_GROUPS = {
    "all-fetch": ("image", "tls", "http", "pubkey"),
    "all-run": ("capabilities", "paths", "seccomp"),
}
_GROUPS["all"] = _GROUPS["all-fetch"] + _GROUPS["all-run"]


@dataclass(frozen=True)
class Insecure:
    options: frozenset[str]

    @classmethod
    def parse(cls, items: Iterable[str]) -> Insecure:
        opts: set[str] = set()
        for raw in items:
            for item in raw.split(","):
                o = item.strip().lower()
                if not o:
                    continue
                if o not in INSECURE_VALUES:
                    raise UsageError(f'unknown insecure option "{o}"',
                                     hint="permissible values: " + ", ".join(INSECURE_VALUES))
                opts.update(_GROUPS.get(o, (o,)))
        opts.discard("none")
        opts.discard("ondisk")
        return cls(frozenset(opts))

    def skip_image(self) -> bool:
        return "image" in self.options


@dataclass(frozen=True)
class ConfigDirs:
    system: Path
    local: Path
    user: Path | None


# --- auth.d (reference §1.5) ---------------------------------------------------------------
# ``<system|local|user>/auth.d/*.json`` (non-recursive, lexical order). A domain given twice in
# one directory is an error (as in rkt); a later layer overrides an earlier one per domain.
# Unreadable files are skipped: a non-root member of group rkt must still be able to fetch when
# root keeps its own credentials in a 0600 file.

AUTH_TYPES = ("basic", "oauth", "aws")


@dataclass(frozen=True)
class AuthConfig:
    """HTTP headers per host (``auth``) and registry credentials (``dockerAuth``)."""

    headers: Mapping[str, Mapping[str, str]]
    # Domains whose configured type this engine cannot sign for (``aws``): domain -> type.
    unsupported: Mapping[str, str]
    docker: Mapping[str, tuple[str, str]]  # registry -> (user, password)
    # domain -> (type, credentials as configured): what `rkt config` prints
    configured: Mapping[str, tuple[str, Mapping[str, str]]] = dataclasses.field(
        default_factory=dict)


def _config_error(path: Path, msg: str) -> UsageError:
    return UsageError(f'invalid config file "{path}": {msg}')


def _str_field(path: Path, obj: Mapping[str, Any], key: str, where: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v:
        raise _config_error(path, f'{where} needs a non-empty string "{key}"')
    return v


def _domains(path: Path, doc: Mapping[str, Any], key: str) -> list[str]:
    raw = doc.get(key)
    if not isinstance(raw, list) or not raw or not all(isinstance(d, str) and d for d in raw):
        raise _config_error(path, f'"{key}" must be a non-empty list of names')
    return [str(d) for d in raw]


def _auth_header(path: Path, doc: Mapping[str, Any]) -> tuple[str, dict[str, str] | None]:
    kind = doc.get("type")
    if kind not in AUTH_TYPES:
        raise _config_error(path, f'unknown auth type {json.dumps(kind)}'
                                f' (expected one of {", ".join(AUTH_TYPES)})')
    creds = doc.get("credentials")
    if not isinstance(creds, dict):
        raise _config_error(path, '"credentials" must be an object')
    if kind == "basic":
        user = _str_field(path, creds, "user", "basic auth")
        password = creds.get("password", "")
        if not isinstance(password, str):
            raise _config_error(path, 'basic auth "password" must be a string')
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return kind, {"Authorization": f"Basic {token}"}
    if kind == "oauth":
        return kind, {"Authorization": f"Bearer {_str_field(path, creds, 'token', 'oauth')}"}
    _str_field(path, creds, "accessKeyID", "aws auth")
    _str_field(path, creds, "secretAccessKey", "aws auth")
    return kind, None


# the credential fields of each auth type, in rkt's order (what `rkt config` prints)
_CREDENTIAL_KEYS = {"basic": ("user", "password"), "oauth": ("token",),
                    "aws": ("accessKeyID", "secretAccessKey", "awsRegion")}


def _json_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _documents(config: ConfigDirs, subdir: str, kinds: tuple[str, ...]
               ) -> Iterator[tuple[int, Path, str, dict[str, Any]]]:
    """(layer, path, rktKind, document) of every ``<dir>/<subdir>/*.json`` in layer order
    (system, local, user), checked as rkt checks them: a JSON object with ``rktVersion`` v1 and
    one of the ``kinds`` this directory takes. Unreadable files are skipped: a non-root member
    of group rkt must still be able to work when root keeps a 0600 file there."""
    for layer, base in enumerate((config.system, config.local, config.user)):
        if base is None:
            continue
        for path in _json_files(base / subdir):
            try:
                text = path.read_text(encoding="utf-8")
            except PermissionError:
                continue
            except (OSError, UnicodeDecodeError) as e:
                raise _config_error(path, str(e)) from None
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as e:
                raise _config_error(path, f"not JSON: {e}") from None
            if not isinstance(doc, dict):
                raise _config_error(path, "expected a JSON object")
            kind, version = doc.get("rktKind"), doc.get("rktVersion")
            if not kind:
                raise _config_error(path, "no rktKind specified")
            if version != "v1":
                raise _config_error(path, f"unsupported rktVersion {json.dumps(version)}")
            if kind not in kinds:
                raise _config_error(path, f"unknown rktKind {json.dumps(kind)} in {subdir}"
                                        f" (expected {' or '.join(map(json.dumps, kinds))})")
            yield layer, path, str(kind), doc


def _once(seen: set[tuple[int, str]], layer: int, key: str, path: Path, message: str) -> None:
    """A value given twice within one configuration directory is an error, as in rkt; a later
    layer (local over system, user over local) may give it again."""
    if (layer, key) in seen:
        raise _config_error(path, message)
    seen.add((layer, key))


def load_auth(config: ConfigDirs) -> AuthConfig:
    headers: dict[str, Mapping[str, str]] = {}
    unsupported: dict[str, str] = {}
    docker: dict[str, tuple[str, str]] = {}
    configured: dict[str, tuple[str, Mapping[str, str]]] = {}
    seen: set[tuple[int, str]] = set()
    for layer, path, kind, doc in _documents(config, "auth.d", ("auth", "dockerAuth")):
        if kind == "auth":
            typ, hdrs = _auth_header(path, doc)
            given = {k: str(doc["credentials"][k]) for k in _CREDENTIAL_KEYS[typ]
                     if k in doc["credentials"]}
            for d in _domains(path, doc, "domains"):
                _once(seen, layer, f"auth {d}", path, f'auth for domain "{d}" is already specified')
                headers.pop(d, None)
                unsupported.pop(d, None)
                configured[d] = (typ, given)
                if hdrs is None:
                    unsupported[d] = typ
                else:
                    headers[d] = dict(hdrs)
        else:  # dockerAuth
            creds = doc.get("credentials")
            if not isinstance(creds, dict):
                raise _config_error(path, '"credentials" must be an object')
            user = _str_field(path, creds, "user", "dockerAuth")
            password = creds.get("password", "")
            if not isinstance(password, str):
                raise _config_error(path, 'dockerAuth "password" must be a string')
            for r in _domains(path, doc, "registries"):
                _once(seen, layer, f"docker {r}", path,
                      f'credentials for registry "{r}" are already specified')
                docker[r] = (user, password)
    return AuthConfig(headers, unsupported, docker, configured)


# --- paths.d and stage1.d (reference §1.5, rkt/config/paths.go, stage1.go) ---------------------
# Within one directory a value may be given once; a later layer (local over system, user over
# local) overrides an earlier one per value.


@dataclass(frozen=True)
class PathsConfig:
    data: str = ""
    stage1_images: str = ""


@dataclass(frozen=True)
class Stage1Config:
    """The default stage1: ``name`` and ``version`` go together; ``location`` is an absolute
    path or a file/http/https/docker URL."""

    name: str = ""
    version: str = ""
    location: str = ""


_STAGE1_SCHEMES = ("docker", "file", "http", "https")


def _opt_str(path: Path, doc: Mapping[str, Any], key: str) -> str:
    v = doc.get(key, "")
    if not isinstance(v, str):
        raise _config_error(path, f'"{key}" must be a string')
    return v


def _absolute(path: Path, value: str, what: str) -> str:
    if value and not value.startswith("/"):
        raise _config_error(path, f"{what} must be an absolute path")
    return value


def load_paths(config: ConfigDirs) -> PathsConfig:
    merged = {"data": "", "stage1-images": ""}
    seen: set[tuple[int, str]] = set()
    names = {"data": "data directory", "stage1-images": "stage1 images directory"}
    for layer, path, _kind, doc in _documents(config, "paths.d", ("paths",)):
        for key, what in names.items():
            value = _absolute(path, _opt_str(path, doc, key), what)
            if not value:
                continue
            _once(seen, layer, key, path, f"{what} is already specified")
            merged[key] = value
    return PathsConfig(data=merged["data"], stage1_images=merged["stage1-images"])


def _check_location(path: Path, location: str) -> None:
    if not location or location.startswith("/"):
        return
    scheme, sep, _rest = location.partition("://")
    if not sep and location.startswith("docker:"):
        scheme, sep = "docker", ":"
    if not sep or not scheme:
        raise _config_error(path, "invalid stage1 configuration: default stage1 image location is"
                                " either a relative path or a URL without scheme")
    if scheme not in _STAGE1_SCHEMES:
        raise _config_error(path, f"invalid stage1 configuration: default stage1 image location "
                                f'URL has invalid scheme "{scheme}", allowed schemes are '
                                f'"{", ".join(_STAGE1_SCHEMES)}"')


def load_stage1(config: ConfigDirs) -> Stage1Config:
    name = version = location = ""
    seen: set[tuple[int, str]] = set()
    for layer, path, _kind, doc in _documents(config, "stage1.d", ("stage1",)):
        n, v, loc = (_opt_str(path, doc, k) for k in ("name", "version", "location"))
        if v and not n:
            raise _config_error(path, "invalid stage1 configuration: default stage1 image version "
                                    "specified, but name is missing")
        if n and not v:
            raise _config_error(path, "invalid stage1 configuration: default stage1 image name "
                                    "specified, but version is missing")
        _check_location(path, loc)
        if n:
            _once(seen, layer, "name", path,
                  "name and version of a default stage1 image are already specified")
            name, version = n, v
        if loc:
            _once(seen, layer, "location", path,
                  "location of a default stage1 image is already specified")
            location = loc
    return Stage1Config(name=name, version=version, location=location)


def merged_json(config: ConfigDirs) -> dict[str, Any]:
    """`rkt config`: the merged configuration as rkt prints it (rkt/config/config.go
    MarshalJSON): one entry per auth domain and docker registry, then paths and stage1."""
    auth = load_auth(config)
    stage0: list[dict[str, Any]] = []
    for domain, (typ, creds) in sorted(auth.configured.items()):
        stage0.append({"rktVersion": "v1", "rktKind": "auth", "domains": [domain],
                       "type": typ, "credentials": dict(creds)})
    for registry, (user, password) in sorted(auth.docker.items()):
        stage0.append({"rktVersion": "v1", "rktKind": "dockerAuth", "registries": [registry],
                       "credentials": {"user": user, "password": password}})
    paths = load_paths(config)
    stage0.append({"rktVersion": "v1", "rktKind": "paths", "data": paths.data,
                   "stage1-images": paths.stage1_images})
    s1 = load_stage1(config)
    stage0.append({"rktVersion": "v1", "rktKind": "stage1", "name": s1.name,
                   "version": s1.version, "location": s1.location})
    return {"stage0": stage0}
