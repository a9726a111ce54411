"""Layered configuration and the insecure options (reference §1.2, §1.5)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
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


def _auth_error(path: Path, msg: str) -> UsageError:
    return UsageError(f'invalid config file "{path}": {msg}')


def _str_field(path: Path, obj: Mapping[str, Any], key: str, where: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v:
        raise _auth_error(path, f'{where} needs a non-empty string "{key}"')
    return v


def _domains(path: Path, doc: Mapping[str, Any], key: str) -> list[str]:
    raw = doc.get(key)
    if not isinstance(raw, list) or not raw or not all(isinstance(d, str) and d for d in raw):
        raise _auth_error(path, f'"{key}" must be a non-empty list of names')
    return [str(d) for d in raw]


def _auth_header(path: Path, doc: Mapping[str, Any]) -> tuple[str, dict[str, str] | None]:
    kind = doc.get("type")
    if kind not in AUTH_TYPES:
        raise _auth_error(path, f'unknown auth type {json.dumps(kind)}'
                                f' (expected one of {", ".join(AUTH_TYPES)})')
    creds = doc.get("credentials")
    if not isinstance(creds, dict):
        raise _auth_error(path, '"credentials" must be an object')
    if kind == "basic":
        user = _str_field(path, creds, "user", "basic auth")
        password = creds.get("password", "")
        if not isinstance(password, str):
            raise _auth_error(path, 'basic auth "password" must be a string')
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return kind, {"Authorization": f"Basic {token}"}
    if kind == "oauth":
        return kind, {"Authorization": f"Bearer {_str_field(path, creds, 'token', 'oauth')}"}
    _str_field(path, creds, "accessKeyID", "aws auth")
    _str_field(path, creds, "secretAccessKey", "aws auth")
    return kind, None


def _auth_files(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def load_auth(config: ConfigDirs) -> AuthConfig:
    headers: dict[str, Mapping[str, str]] = {}
    unsupported: dict[str, str] = {}
    docker: dict[str, tuple[str, str]] = {}
    for base in (config.system, config.local, config.user):
        if base is None:
            continue
        seen: set[tuple[str, str]] = set()
        for path in _auth_files(base / "auth.d"):
            try:
                text = path.read_text(encoding="utf-8")
            except PermissionError:
                continue
            except (OSError, UnicodeDecodeError) as e:
                raise _auth_error(path, str(e)) from None
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as e:
                raise _auth_error(path, f"not JSON: {e}") from None
            if not isinstance(doc, dict):
                raise _auth_error(path, "expected a JSON object")
            kind, version = doc.get("rktKind"), doc.get("rktVersion")
            if version != "v1":
                raise _auth_error(path, f"unsupported rktVersion {json.dumps(version)}")
            if kind == "auth":
                typ, hdrs = _auth_header(path, doc)
                for d in _domains(path, doc, "domains"):
                    if ("auth", d) in seen:
                        raise _auth_error(path, f'auth for domain "{d}" is already specified')
                    seen.add(("auth", d))
                    headers.pop(d, None)
                    unsupported.pop(d, None)
                    if hdrs is None:
                        unsupported[d] = typ
                    else:
                        headers[d] = dict(hdrs)
            elif kind == "dockerAuth":
                creds = doc.get("credentials")
                if not isinstance(creds, dict):
                    raise _auth_error(path, '"credentials" must be an object')
                user = _str_field(path, creds, "user", "dockerAuth")
                password = creds.get("password", "")
                if not isinstance(password, str):
                    raise _auth_error(path, 'dockerAuth "password" must be a string')
                for r in _domains(path, doc, "registries"):
                    if ("docker", r) in seen:
                        raise _auth_error(path, f'credentials for registry "{r}" are already'
                                                f" specified")
                    seen.add(("docker", r))
                    docker[r] = (user, password)
            else:
                raise _auth_error(path, f"unknown rktKind {json.dumps(kind)} in auth.d"
                                        f' (expected "auth" or "dockerAuth")')
    return AuthConfig(headers, unsupported, docker)
