"""Docker registry authentication, the pure part (reference §5): which dockerAuth credentials
belong to a registry, the ``WWW-Authenticate`` challenge, the token request URL of a ``Bearer``
challenge, the ``Basic`` header, and the errors a refused authentication becomes. The requests
themselves are made by the session in ``registry.py``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from urllib.parse import urlencode

from ..errors import FetchError
from .docker_ref import DEFAULT_REGISTRY, DockerRef

Credentials = tuple[str, str]  # (user, password)

HUB_AUTH_KEYS = (DEFAULT_REGISTRY, "index.docker.io", "docker.io", "https://index.docker.io/v1/")


def credentials_for(ref: DockerRef, docker_auth: Mapping[str, Credentials]) -> Credentials | None:
    """The dockerAuth credentials of ``ref``'s registry (Docker Hub under any of its names)."""
    keys = HUB_AUTH_KEYS if ref.registry == DEFAULT_REGISTRY else (ref.registry,)
    for key in keys:
        if key in docker_auth:
            return docker_auth[key]
    return None


def basic_authorization(creds: Credentials) -> str:
    user, password = creds
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def auth_error(ref: DockerRef, creds: Credentials | None, denied: bool = False) -> FetchError:
    """What a refused authentication tells the user: no credentials, denied, or rejected."""
    reg, hint = ref.registry, f'check the dockerAuth config for "{ref.registry}"'
    if creds is None:
        return FetchError(f'registry "{reg}" requires authentication for'
                          f' "{ref.repository}"',
                          hint=f'add credentials for "{reg}" to a dockerAuth config in'
                               " auth.d")
    if denied:
        return FetchError(f'registry "{reg}" denied user "{creds[0]}" access to'
                          f' "{ref.repository}"', hint=hint)
    return FetchError(f'registry "{reg}" rejected the dockerAuth credentials of user'
                      f' "{creds[0]}"', hint=hint)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="…"`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): re.sub(r"\\(.)", r"\1", quoted) or plain for k, quoted, plain in
              re.findall(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))', rest)}
    return scheme.lower(), params


def token_url(ref: DockerRef, params: dict[str, str]) -> str:
    """The URL that asks a bearer challenge's realm for a token (pull access to ``ref``'s
    repository unless the challenge names the scope)."""
    realm = params.get("realm")
    if not realm:
        raise FetchError(f'registry "{ref.registry}": bearer challenge without realm')
    query = [("service", params["service"])] if params.get("service") else []
    scope = params.get("scope") or f"repository:{ref.repository}:pull"
    query += [("scope", s) for s in scope.split()]
    return realm + ("&" if "?" in realm else "?") + urlencode(query)
