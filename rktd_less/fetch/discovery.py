"""appc meta discovery over HTTPS (reference §4.5): from an image name to the URLs of its ACI,
signature and public keys.

For each candidate (``a/b/c``, then ``a/b``, then ``a``) GET ``https://{candidate}?ac-discovery=1``
(then ``http://`` if ``--insecure-options=http``), following redirects; a page that answers with
an error status or has no applicable tag sends the walk one level up. Errors about the host
itself (TLS, connection) stop the walk: every candidate lives on the same host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..appc import discovery as meta
from ..errors import FetchError, UsageError
from .http import HttpOptions, HttpStatusError, get_bytes, options_for

if TYPE_CHECKING:
    from .http_options import FetchConfig

MAX_PAGE = 1 << 20
_HINT = "check the name, or fetch the image by URL or from a file"
T = TypeVar("T")


@dataclass(frozen=True)
class Endpoints:
    aci_url: str
    sig_url: str
    pubkeys: list[str]


def discovery_url(candidate: str, scheme: str = "https", port: int | None = None) -> str:
    host, slash, path = candidate.partition("/")
    if port is not None:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{slash}{path}?ac-discovery=1"


def _fetch_page(candidate: str, opts: HttpOptions) -> tuple[bytes | None, str, str]:
    """(page or None, URL tried, why not). Raises FetchError when the host itself failed."""
    schemes = ("https", "http") if opts.allow_http else ("https",)
    host_error: FetchError | None = None
    reasons: list[str] = []
    url = ""
    page_level = False
    for scheme in schemes:
        url = discovery_url(candidate, scheme, opts.discovery_port)
        try:
            return get_bytes(url, opts, MAX_PAGE), url, ""
        except HttpStatusError as e:
            page_level = True
            reasons.append(e.message)
        except FetchError as e:
            # rkt falls back to plain HTTP on any HTTPS failure when that is allowed.
            host_error = host_error or e
            reasons.append(e.message)
    if host_error is not None and not page_level:
        raise host_error
    return None, url, "; ".join(reasons)


def _walk(name: str, opts: HttpOptions, what: str,
          pick: Callable[[list[meta.MetaTag], str], T | None],
          explain: Callable[[list[meta.MetaTag]], str]) -> T:
    cands = meta.candidates(name)
    if not cands:
        raise UsageError(f'discovery failed for "{name}": empty name')
    tried: list[str] = []
    for cand in cands:
        try:
            page, url, why = _fetch_page(cand, opts)
        except FetchError as e:
            raise FetchError(f'discovery failed for "{name}": {e.message}', hint=e.hint) from None
        if page is None:
            tried.append(why)
            continue
        tags = meta.parse_meta(page)
        found = pick(tags, url)
        if found is not None:
            return found
        tried.append(f"{url}: {explain(tags)}")
    raise FetchError(f'discovery failed for "{name}": no {what} meta tag found; tried '
                     + ", ".join(tried), hint=_HINT)


def discover(name: str, labels: Mapping[str, str], opts: HttpOptions) -> Endpoints:
    """The first applicable ``ac-discovery`` template, rendered for ``name`` and ``labels``
    (the caller supplies ``os``/``arch``; ``version`` defaults to ``latest``)."""

    def pick(tags: list[meta.MetaTag], _url: str) -> Endpoints | None:
        eps = meta.aci_endpoints(tags, name, labels)
        if not eps:
            return None
        return Endpoints(eps[0].aci_url, eps[0].sig_url, meta.pubkey_urls(tags, name))

    def explain(tags: list[meta.MetaTag]) -> str:
        missing = meta.missing_vars(tags, name, labels)
        if missing:
            return "templates need labels " + " ".join("{" + m + "}" for m in missing)
        return "no tag for this name"

    return _walk(name, opts, meta.ACI_DISCOVERY, pick, explain)


def discover_pubkeys_with(prefix: str, opts: HttpOptions) -> list[str]:
    """Key URLs from ``ac-discovery-pubkeys`` tags applying to ``prefix``."""

    def pick(tags: list[meta.MetaTag], _url: str) -> list[str] | None:
        return meta.pubkey_urls(tags, prefix) or None

    return _walk(prefix, opts, meta.PUBKEYS_DISCOVERY, pick, lambda _t: "no tag for this name")


def discover_pubkeys(prefix: str, ctx: FetchConfig) -> list[str]:
    """``rkt trust --prefix P`` without key arguments: the keys P's discovery page names."""
    return discover_pubkeys_with(prefix, options_for(ctx))
