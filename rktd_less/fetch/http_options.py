"""HTTP client options and the pure, per-request policy checks the client applies.

``HttpOptions`` (from CLI flags and auth.d via ``options_from``/``options_for``), the TLS
context they imply (system store read at call time, plus ``ca_file``), which proxy a URL
goes through, which auth.d headers a host gets, which URL schemes are allowed, and the
Cache-Control ``max-age`` reading. No network I/O here; ``http.py`` does the requests.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import ssl
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from .. import __version__
from ..config import ConfigDirs, Insecure, load_auth
from ..errors import FetchError


class FetchConfig(Protocol):
    """What fetching needs of the caller's settings (the CLI's Context has it): the insecure
    options and the configuration directories (auth.d)."""

    @property
    def insecure(self) -> Insecure: ...

    @property
    def config(self) -> ConfigDirs: ...

TLS_HINT = "pass --insecure-options=tls to accept any certificate"
HTTP_HINT = "pass --insecure-options=http to allow plain HTTP"


@dataclass(frozen=True)
class HttpOptions:
    insecure_tls: bool = False
    allow_http: bool = False
    # auth.d: request headers per host ("host" or "host:port"), see config.load_auth.
    auth: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    progress: bool = False
    user_agent: str = f"rktd-less/{__version__}"
    # An extra CA bundle trusted on top of the system store.
    ca_file: str | None = None
    # Hosts configured with an auth type this engine cannot produce (aws): host -> type.
    unsupported_auth: Mapping[str, str] = field(default_factory=dict)
    # Appended to the host of discovery URLs (rkt's discovery "port" knob, for tests).
    discovery_port: int | None = None
    connect_timeout: float = 30.0
    read_timeout: float = 120.0
    # dockerAuth: registry ("host" or "host:port") -> (user, password), see config.load_auth.
    docker_auth: Mapping[str, tuple[str, str]] = field(default_factory=dict)


def options_from(ctx_insecure: Insecure, config: ConfigDirs,
                 progress: bool | None = None) -> HttpOptions:
    auth = load_auth(config)
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    return HttpOptions(insecure_tls="tls" in ctx_insecure.options,
                       allow_http="http" in ctx_insecure.options,
                       auth=auth.headers, unsupported_auth=auth.unsupported, progress=progress,
                       docker_auth=auth.docker)


def options_for(ctx: FetchConfig) -> HttpOptions:
    return options_from(ctx.insecure, ctx.config)


def as_options(o: HttpOptions | FetchConfig) -> HttpOptions:
    return o if isinstance(o, HttpOptions) else options_for(o)


def parse_max_age(cache_control: str | None) -> int | None:
    """Cache-Control max-age as rkt reads it (``getMaxAge``): no-cache/no-store -> 0."""
    if cache_control is None:
        return None
    result: int | None = None
    for part in cache_control.split(","):
        attr, _, val = part.strip().partition("=")
        attr = attr.strip().lower()
        if attr in ("no-store", "no-cache"):
            return 0
        if attr == "max-age":
            val = val.strip().strip('"')
            if val.isdigit() and int(val) > 0:
                result = int(val)
    return result


def host_of(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


@functools.lru_cache(maxsize=8)
def _ssl_context(insecure: bool, ca_file: str | None, env: tuple[str | None, str | None]
                 ) -> ssl.SSLContext:
    del env  # part of the cache key only: the default paths are read from it at creation
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise FetchError(f'cannot load CA file "{ca_file}": {e}') from None
    return ctx


def ssl_for(opts: HttpOptions) -> ssl.SSLContext:
    env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    return _ssl_context(opts.insecure_tls, opts.ca_file, env)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def proxy_for(url: str) -> str | None:
    """Proxy from the environment, like Go's ProxyFromEnvironment (loopback never proxied)."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not proxies or _is_loopback(host) or urllib.request.proxy_bypass(host):
        return None
    return proxies.get(parts.scheme)


def auth_headers(url: str, opts: HttpOptions) -> Mapping[str, str]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for key in (host_of(url).lower(), host):
        if key in opts.unsupported_auth:
            raise FetchError(f'auth type "{opts.unsupported_auth[key]}" configured for "{key}"'
                             " is not supported")
        if key in opts.auth:
            return opts.auth[key]
    return {}


def check_scheme(url: str, opts: HttpOptions) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https":
        return
    if scheme == "http":
        if opts.allow_http:
            return
        raise FetchError(f"refusing plain HTTP for {url}", hint=HTTP_HINT)
    raise FetchError(f'unsupported URL scheme in "{url}"', hint="use an https:// URL")
