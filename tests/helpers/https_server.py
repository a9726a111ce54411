"""A real HTTP(S) server on 127.0.0.1 for fetch tests: aiohttp in a background thread.

- ``make_certs(dir)``: a throw-away CA and a server certificate for 127.0.0.1/localhost, made
  with the ``openssl`` CLI (no extra Python dependency). Clients trust it through
  ``HttpOptions.ca_file`` or the ``SSL_CERT_FILE`` environment variable.
- ``serve(certs)`` (``certs=None`` for plain HTTP): a context manager yielding a ``Server``
  whose ``files`` (path -> bytes) are served with ETag, Last-Modified, Cache-Control and Range
  support; ``redirects``, ``statuses`` (canned answers), ``truncate`` (close the connection
  after N body bytes, once per entry), ``require_auth`` and a ``requests`` log of what came in.

All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"


@dataclass(frozen=True)
class CertFiles:
    ca_file: Path  # PEM of the CA clients must trust
    cert_file: Path  # server certificate chain
    key_file: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin"})


def make_certs(directory: Path, names: Sequence[str] = ()) -> CertFiles:
    """``names``: more DNS names the server certificate is for (e.g. example.com, which a
    test maps to 127.0.0.1 in the test bed's /etc/hosts)."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=rktd-less test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "server.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=" + ",".join(["IP:127.0.0.1", "DNS:localhost",
                                      *(f"DNS:{n}" for n in names)]) + "\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
             cwd=d)
    return CertFiles(d / "ca.pem", d / "server.pem", d / "server.key")


def discovery_html(aci: Sequence[tuple[str, str]] = (),
                   pubkeys: Sequence[tuple[str, str]] = (), *, extra_head: str = "",
                   body: str = "") -> bytes:
    """A discovery page: ``aci`` = [(prefix, template)], ``pubkeys`` = [(prefix, url)]."""
    tags = [f'<meta name="ac-discovery" content="{html.escape(p)} {html.escape(t)}">'
            for p, t in aci]
    tags += [f'<meta name="ac-discovery-pubkeys" content="{html.escape(p)} {html.escape(u)}">'
             for p, u in pubkeys]
    return ("<!DOCTYPE html>\n<html><head><title>discovery</title>\n" + "\n".join(tags)
            + extra_head + "\n</head><body>" + body + "</body></html>\n").encode()


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # header names lowercased


@dataclass
class Server:
    scheme: str
    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    cache_control: dict[str, str] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    statuses: dict[str, list[int]] = field(default_factory=dict)  # path -> answers, consumed
    truncate: dict[str, int] = field(default_factory=dict)  # path -> bytes, consumed once
    require_auth: dict[str, str] = field(default_factory=dict)  # path -> Authorization value
    no_etag: set[str] = field(default_factory=set)
    ranges: bool = True
    requests: list[SeenRequest] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    def etag(self, path: str) -> str:
        return '"' + hashlib.sha256(self.files[path]).hexdigest()[:16] + '"'

    def seen(self, path: str) -> list[SeenRequest]:
        return [r for r in self.requests if r.path == path]

    # --- the handler -------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append(SeenRequest(request.method, path, request.query_string,
                                         {k.lower(): v for k, v in request.headers.items()}))
        if path in self.redirects:
            raise web.HTTPFound(self.redirects[path])
        answers = self.statuses.get(path)
        if answers:
            status = answers.pop(0)
            return web.Response(status=status, headers={"Retry-After": "0"})
        want_auth = self.require_auth.get(path)
        if want_auth is not None and request.headers.get("Authorization") != want_auth:
            return web.Response(status=401, text="unauthorized")
        if path not in self.files:
            return web.Response(status=404, text="not found")
        body = self.files[path]
        headers = {"Last-Modified": LAST_MODIFIED,
                   "Content-Type": self.content_types.get(
                       path, "text/html" if path.endswith("/") or "." not in path
                       else "application/octet-stream")}
        etag = None if path in self.no_etag else self.etag(path)
        if etag:
            headers["ETag"] = etag
        if path in self.cache_control:
            headers["Cache-Control"] = self.cache_control[path]
        if etag and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        status, start = 200, 0
        rng = request.headers.get("Range", "")
        if self.ranges and rng.startswith("bytes=") and rng.endswith("-"):
            if_range = request.headers.get("If-Range")
            if if_range is None or if_range in (etag, LAST_MODIFIED):
                start = int(rng[6:-1])
                if start >= len(body):
                    return web.Response(status=416,
                                        headers={"Content-Range": f"bytes */{len(body)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        headers["Accept-Ranges"] = "bytes" if self.ranges else "none"
        payload = body[start:]
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(payload)
        await resp.prepare(request)
        cut = self.truncate.pop(path, None)
        if cut is not None:
            await resp.write(payload[:cut])
            await asyncio.sleep(0.05)  # let the bytes leave before the connection drops
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(payload)
        await resp.write_eof()
        return resp


@contextmanager
def serve(certs: CertFiles | None = None, port: int = 0) -> Iterator[Server]:
    """Run a Server on 127.0.0.1 (HTTPS with ``certs``, else plain HTTP) until the block ends.
    ``port`` 0 picks a free one; 443 (root, in the test bed's own network namespace) lets appc
    discovery of names like ``localhost/hello`` reach it."""
    server = Server("https" if certs else "http")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server.port = sock.getsockname()[1]
    ssl_ctx: ssl.SSLContext | None = None
    if certs is not None:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(certs.cert_file, certs.key_file)
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.SockSite(runner, sock, ssl_context=ssl_ctx)
        loop.run_until_complete(site.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name=f"test-server-{server.port}", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("test server did not start")
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        sock.close()
