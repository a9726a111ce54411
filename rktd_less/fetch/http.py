"""HTTP(S) client for images, signatures, keys and discovery pages: the only aiohttp user.

Sync entry points (``asyncio.run`` inside) over one aiohttp session per call:

- ``get_bytes``: small bodies (discovery pages, public keys), size-capped.
- ``download``: an ACI or signature streamed to a file the caller chose, resumable across runs
  (HTTP Range + If-Range against a sidecar holding the resource's validator), conditional on a
  cached ETag (``If-None-Match`` -> 304), with rkt's progress bar on a terminal.

Async primitives for protocol clients (the docker registry client, ``registry.py``):
``client(opts)`` yields a ``Client`` (one session, parallel requests) whose ``send`` returns a
``Response`` (status, headers, ``read``/``chunks``; ``async with`` releases it). Headers given
as ``origin_headers`` (registry tokens) go to the first host only, never across a redirect.

Redirects are followed here, hop by hop, so that every hop is checked: plain ``http://`` only
with ``--insecure-options=http``, and auth.d headers only for the host they were configured for
(never carried to another host by a redirect). Certificates are checked against the system
store (``SSL_CERT_FILE``/``SSL_CERT_DIR`` read at call time) plus ``HttpOptions.ca_file``.

The aiohttp-free parts live beside it: ``http_options.py`` (options, TLS context, proxy,
auth.d and scheme policy) and ``resume.py`` (partial files and their ``.meta`` sidecars).
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urljoin

import aiohttp

from ..errors import FetchError
from .http_options import (
    HTTP_HINT,
    TLS_HINT,
    HttpOptions,
    as_options,
    auth_headers,
    check_scheme,
    host_of,
    options_for,
    options_from,
    parse_max_age,
    proxy_for,
    ssl_for,
)
from .progress import Progress
from .resume import content_range, discard_partial, read_sidecar, sidecar_path, write_sidecar

if TYPE_CHECKING:
    from .http_options import FetchConfig

# HttpOptions, options_from/options_for and host_of live in http_options.py; they are
# re-exported here for the modules that import them from this one.
__all__ = [
    "Client",
    "DownloadResult",
    "HttpOptions",
    "HttpStatusError",
    "Response",
    "client",
    "download",
    "get_bytes",
    "host_of",
    "options_for",
    "options_from",
]

MAX_REDIRECTS = 10
CHUNK = 1 << 18
MAX_DEFERRED_WAIT = 30.0
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class DownloadResult:
    status: int  # 200 (downloaded, possibly resumed) or 304 (not modified)
    etag: str | None
    max_age: int | None  # Cache-Control max-age in seconds; 0 for no-cache/no-store
    final_url: str
    path: Path
    size: int = 0
    resumed_from: int = 0  # bytes already on disk that the server let us continue from


@dataclass(frozen=True)
class _Deferred:
    """202 Accepted: rkt's deferred signature, not ready yet."""

    retry_after: float | None


class _TooBig(FetchError):
    """Over the caller's limit: not a partial worth keeping."""


class HttpStatusError(FetchError):
    """A non-2xx answer; ``status`` lets discovery walk up the name on 4xx."""

    def __init__(self, message: str, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


# --- session ---------------------------------------------------------------------------------
@asynccontextmanager
async def _session(opts: HttpOptions, limit: int = 4) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=ssl_for(opts), limit=limit)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=opts.connect_timeout,
                                    sock_read=opts.read_timeout)
    # trust_env=False: no ~/.netrc credentials sneaking onto requests; proxies come from
    # proxy_for instead.
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                     auto_decompress=False,
                                     headers={"User-Agent": opts.user_agent,
                                              "Accept-Encoding": "identity"}) as session:
        yield session


def _connect_error(url: str, opts: HttpOptions, e: Exception) -> FetchError:
    host = host_of(url)
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        cert = e.certificate_error
        why = getattr(cert, "verify_message", None) or getattr(cert, "reason", None) or str(cert)
        return FetchError(f"TLS certificate of {host} not accepted: {why}", hint=TLS_HINT)
    if isinstance(e, aiohttp.ClientSSLError | ssl.SSLError):
        reason = getattr(e, "reason", None) or getattr(getattr(e, "os_error", None), "reason",
                                                       None) or str(e)
        reason = str(reason).lower().replace("_", " ")
        hint = None if opts.insecure_tls else TLS_HINT
        if "wrong version number" in reason:
            hint = "the server may speak plain HTTP; " + HTTP_HINT
        return FetchError(f"TLS error talking to {host}: {reason}", hint=hint)
    if isinstance(e, aiohttp.ClientConnectorError):
        os_err = e.os_error
        why = os_err.strerror or str(os_err)
        return FetchError(f"cannot connect to {host}: {why}")
    if isinstance(e, TimeoutError):
        return FetchError(f"timed out talking to {host}")
    if isinstance(e, aiohttp.InvalidURL):
        return FetchError(f'invalid URL "{url}"')
    return FetchError(f"GET {url}: {e or type(e).__name__}")


def _status_error(url: str, resp: aiohttp.ClientResponse) -> HttpStatusError:
    hint = None
    if resp.status in (401, 403):
        hint = f'configure credentials for "{host_of(url)}" in auth.d'
    return HttpStatusError(f"{resp.method} {url}: {resp.status} {resp.reason or ''}".rstrip(),
                           resp.status, hint)


async def _open(session: aiohttp.ClientSession, url: str, opts: HttpOptions,
                headers: Mapping[str, str], *, method: str = "GET",
                origin_headers: Mapping[str, str] | None = None, auth_d: bool = True
                ) -> tuple[aiohttp.ClientResponse, str]:
    """``method url`` following redirects; each hop gets only its own host's auth headers
    (auth.d unless ``auth_d`` is false; ``origin_headers`` while still on the first host)."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        check_scheme(current, opts)
        hop = {**headers, **(auth_headers(current, opts) if auth_d else {})}
        if origin_headers and host_of(current) == host_of(url):
            hop.update(origin_headers)
        try:
            resp = await session.request(method, current, headers=hop, allow_redirects=False,
                                         proxy=proxy_for(current))
        except (aiohttp.ClientError, ssl.SSLError, TimeoutError) as e:
            raise _connect_error(current, opts, e) from None
        location = resp.headers.get("Location")
        if resp.status in _REDIRECTS and location:
            resp.release()
            current = urljoin(current, location)
            if resp.status == 303:
                method = "GET"
            continue
        return resp, current
    raise FetchError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")


def _body_error(url: str, e: Exception, got: int, partial: bool) -> FetchError:
    what = "connection closed" if isinstance(e, aiohttp.ClientPayloadError) else (
        "timed out" if isinstance(e, TimeoutError) else str(e) or type(e).__name__)
    return FetchError(f"GET {url}: {what} after {got} bytes",
                      hint="run the command again to resume the download" if partial else None)


# --- generic requests ------------------------------------------------------------------------
class Response:
    """One answer (any status; redirects already followed). ``async with`` releases it."""

    def __init__(self, resp: aiohttp.ClientResponse, url: str) -> None:
        self._resp = resp
        self.url = url  # after redirects
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers  # case-insensitive
        self.content_length = resp.content_length

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._resp.release()

    def status_error(self) -> HttpStatusError:
        return _status_error(self.url, self._resp)

    async def read(self, max_bytes: int) -> bytes:
        """The whole body, at most ``max_bytes``; a short body is a FetchError."""
        too_big = FetchError(f"{self._resp.method} {self.url}: body larger than {max_bytes}"
                             " bytes")
        if self.content_length is not None and self.content_length > max_bytes:
            raise too_big
        buf = bytearray()
        async for chunk in self.chunks(partial=False):
            buf += chunk
            if len(buf) > max_bytes:
                raise too_big
        if self.content_length is not None and len(buf) < self.content_length:
            raise FetchError(f"{self._resp.method} {self.url}: connection closed after"
                             f" {len(buf)} of {self.content_length} bytes")
        return bytes(buf)

    async def chunks(self, *, partial: bool = True, start: int = 0) -> AsyncIterator[bytes]:
        """The body in chunks; a broken connection is a FetchError (``partial``: with the hint
        that a rerun resumes; ``start``: bytes the caller already had, for the message)."""
        got = start
        try:
            async for chunk in self._resp.content.iter_chunked(CHUNK):
                got += len(chunk)
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as e:
            raise _body_error(self.url, e, got, partial) from None


class Client:
    """One session for many (also concurrent) requests, checked as ``_open`` checks them."""

    def __init__(self, session: aiohttp.ClientSession, opts: HttpOptions) -> None:
        self._session = session
        self.opts = opts

    async def send(self, method: str, url: str, headers: Mapping[str, str] | None = None, *,
                   origin_headers: Mapping[str, str] | None = None, auth_d: bool = True
                   ) -> Response:
        resp, final = await _open(self._session, url, self.opts, headers or {}, method=method,
                                  origin_headers=origin_headers, auth_d=auth_d)
        return Response(resp, final)


@asynccontextmanager
async def client(opts: HttpOptions, *, limit: int = 8) -> AsyncIterator[Client]:
    async with _session(opts, limit) as session:
        yield Client(session, opts)


# --- small bodies ----------------------------------------------------------------------------
async def _get_bytes(url: str, opts: HttpOptions, max_bytes: int) -> bytes:
    async with _session(opts) as session:
        resp, final = await _open(session, url, opts, {})
        async with Response(resp, final) as r:
            if not 200 <= r.status < 300:
                raise r.status_error()
            return await r.read(max_bytes)


def get_bytes(url: str, ctx: HttpOptions | FetchConfig, max_bytes: int) -> bytes:
    """The whole body of ``url`` (2xx only), at most ``max_bytes``.

    ``ctx`` is HttpOptions, or settings with insecure options and auth.d (a FetchConfig)."""
    return asyncio.run(_get_bytes(url, as_options(ctx), max_bytes))


# --- resumable downloads ---------------------------------------------------------------------
def _validator(resp: aiohttp.ClientResponse) -> str | None:
    # If-Range needs a strong validator: a strong ETag, else Last-Modified.
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return resp.headers.get("Last-Modified") or None


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    raw = resp.headers.get("Retry-After", "")
    return float(raw) if raw.strip().isdigit() else None


@dataclass
class _Request:
    url: str
    dest: Path
    opts: HttpOptions
    etag: str | None
    label: str
    max_bytes: int | None
    stream: TextIO


async def _download_once(session: aiohttp.ClientSession,
                         r: _Request) -> DownloadResult | _Deferred | None:
    """One attempt; ``None`` means "the partial was unusable and is gone, start over"."""
    have = r.dest.stat().st_size if r.dest.exists() else 0
    validator = read_sidecar(r.dest, r.url) if have else None
    if have and validator is None:
        discard_partial(r.dest)
        have = 0
    headers: dict[str, str] = {}
    if r.etag:
        headers["If-None-Match"] = r.etag
    if have and validator:
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = validator
    resp, final = await _open(session, r.url, r.opts, headers)
    async with resp:
        max_age = parse_max_age(resp.headers.get("Cache-Control"))
        etag = resp.headers.get("ETag")
        if resp.status == 304 and r.etag:
            discard_partial(r.dest)  # the cached blob is current; a partial is of no use
            return DownloadResult(304, etag or r.etag, max_age, final, r.dest)
        if resp.status == 202:
            return _Deferred(_retry_after(resp))
        if resp.status == 416 and have:
            discard_partial(r.dest)
            return None
        if resp.status == 206 and have:
            cr = content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != have:
                discard_partial(r.dest)
                return None
            start, total = have, cr[1]
        elif resp.status == 200:
            start, total = 0, resp.content_length
        else:
            raise _status_error(final, resp)
        if r.max_bytes is not None and total is not None and total > r.max_bytes:
            discard_partial(r.dest)
            raise _TooBig(f"GET {final}: {total} bytes is more than the limit of"
                          f" {r.max_bytes}")
        write_sidecar(r.dest, r.url, _validator(resp) or (validator if start else None))
        progress = Progress(r.label, total, r.stream, start=start) if r.opts.progress else None
        got = start
        try:
            with open(r.dest, "ab" if start else "wb") as f:
                try:
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        f.write(chunk)
                        got += len(chunk)
                        if r.max_bytes is not None and got > r.max_bytes:
                            raise _TooBig(f"GET {final}: body larger than the limit of"
                                          f" {r.max_bytes} bytes")
                        if progress is not None:
                            progress.update(len(chunk))
                except (aiohttp.ClientError, TimeoutError) as e:
                    raise _body_error(final, e, got, partial=True) from None
        except _TooBig:
            discard_partial(r.dest)
            raise
        finally:
            if progress is not None:
                progress.finish()
        if total is not None and got < total:
            raise FetchError(f"GET {final}: connection closed after {got} of {total} bytes",
                             hint="run the command again to resume the download")
        sidecar_path(r.dest).unlink(missing_ok=True)
        if etag is None and start and validator and validator.startswith('"'):
            etag = validator  # a 206 need not repeat the ETag the partial was started with
        return DownloadResult(200, etag, max_age, final, r.dest, size=got, resumed_from=start)


async def _download(r: _Request, deferred_retry: float | None) -> DownloadResult:
    async with _session(r.opts) as session:
        for _ in range(3):
            result = await _download_once(session, r)
            if result is None:
                continue  # partial discarded: one fresh GET
            if isinstance(result, _Deferred):
                if deferred_retry is None:
                    break
                wait = min(result.retry_after or deferred_retry, MAX_DEFERRED_WAIT)
                deferred_retry = None
                await asyncio.sleep(wait)
                continue
            return result
        else:
            raise FetchError(f"GET {r.url}: the server keeps rejecting the resumed download")
    raise FetchError(f"GET {r.url}: 202 Accepted: not ready yet", hint="try again later")


def download(url: str, dest: Path, opts: HttpOptions, *, etag: str | None = None,
             label: str = "Downloading ACI", max_bytes: int | None = None,
             deferred_retry: float | None = None, stream: TextIO | None = None
             ) -> DownloadResult:
    """Stream ``url`` into ``dest``, continuing a partial download left there by an earlier run.

    ``dest`` should be a stable per-URL temp path (see ``resume.partial_path``) so a later run finds
    the partial; on success the caller moves it away (its ``.meta`` sidecar is already gone).
    With ``etag``, a 304 answer downloads nothing. A 202 Accepted (rkt's deferred signature:
    fetch the ACI first, then the signature) is retried once after ``deferred_retry`` seconds
    (or the server's Retry-After, at most 30 s), else it is a FetchError. A truncated body
    raises FetchError and keeps the partial for the next run.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    req = _Request(url, dest, opts, etag, label, max_bytes,
                   stream if stream is not None else sys.stderr)
    return asyncio.run(_download(req, deferred_retry))
