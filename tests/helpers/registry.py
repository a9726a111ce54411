"""A real Docker registry on 127.0.0.1 and an OCI image builder, for the docker:// fetch tests.

- ``Image`` / ``Layer`` and the entry helpers (``file``, ``directory``, ``symlink``, ``hardlink``,
  ``whiteout``, ``opaque``): image specs written in Python as an OCI image layout (``oci-layout``,
  ``index.json``, ``blobs/sha256/*``) by ``write_layout``; a ``list[Image]`` is written as a
  multi-arch index. Layers are gzip (default), uncompressed, or zstd (needs the ``zstd`` CLI).
- ``run_registry(tmp, tls=..., htpasswd=..., token=...)``: the Debian ``docker-registry`` (CNCF
  distribution 2.8) with filesystem storage under ``tmp``, optional TLS (certificates from
  ``https_server.make_certs``), optional basic auth (a bcrypt htpasswd file made by ``htpasswd -B``
  from apache2-utils) or token auth (``TokenServer``: a tiny aiohttp realm issuing RS256 JWTs
  signed by ``openssl dgst``, trusted by the registry through ``rootcertbundle``).
- ``Registry.push(image_or_list, repo, tag)``: ``skopeo copy`` from a fresh layout; returns the
  manifest digest the registry now serves for the tag. skopeo gzips uncompressed layers on the
  way (gzip and zstd ones arrive as they are). ``Registry.requests()`` parses the
  registry's access log, so tests can tell which blobs were downloaded.

All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.helpers.https_server import CertFiles, make_certs

if TYPE_CHECKING:
    from aiohttp import web

REGISTRY_BIN = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_LAYER_TYPES = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
                "none": "application/vnd.oci.image.layer.v1.tar",
                "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


# --- image specs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One tar member: kind is file, dir, symlink or hardlink (``target`` for the links)."""

    path: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000


def file(path: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0,
         gid: int = 0) -> Entry:
    return Entry(path, "file", data.encode() if isinstance(data, str) else data, mode=mode,
                 uid=uid, gid=gid)


def directory(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, "symlink", target=target, mode=0o777)


def hardlink(path: str, target: str) -> Entry:
    return Entry(path, "hardlink", target=target)


def whiteout(path: str) -> Entry:
    """Deletes ``path`` of a lower layer (``dir/.wh.name``)."""
    head, _, name = path.rstrip("/").rpartition("/")
    return file(f"{head}/.wh.{name}" if head else f".wh.{name}")


def opaque(dirpath: str) -> Entry:
    """Hides everything lower layers put in ``dirpath`` (``dir/.wh..wh..opq``)."""
    return file(dirpath.rstrip("/") + "/.wh..wh..opq")


@dataclass(frozen=True)
class Layer:
    entries: Sequence[Entry]
    compression: str = "gzip"  # gzip | none | zstd

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for e in self.entries:
                info = tarfile.TarInfo(e.path.lstrip("/"))
                info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, e.mtime
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                elif e.kind == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, e.target
                elif e.kind == "hardlink":
                    info.type, info.linkname = tarfile.LNKTYPE, e.target.lstrip("/")
                else:
                    info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
        return buf.getvalue()

    def blob(self) -> tuple[bytes, bytes]:
        """(uncompressed tar, blob as stored)."""
        raw = self.tar()
        if self.compression == "gzip":
            return raw, gzip.compress(raw, mtime=0)
        if self.compression == "zstd":
            out = subprocess.run(["zstd", "-q", "-c"], input=raw, check=True,
                                 capture_output=True, env=_ENV).stdout
            return raw, out
        return raw, raw


@dataclass(frozen=True)
class Image:
    layers: Sequence[Layer]
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    user: str = ""
    working_dir: str = ""
    exposed_ports: Sequence[str] = ()
    volumes: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    os: str = "linux"
    arch: str = "amd64"
    variant: str | None = None
    created: str = "2024-01-02T03:04:05Z"

    def config(self, diff_ids: Sequence[str]) -> dict[str, object]:
        cfg: dict[str, object] = {"Env": list(self.env)}
        if self.entrypoint is not None:
            cfg["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            cfg["Cmd"] = list(self.cmd)
        if self.user:
            cfg["User"] = self.user
        if self.working_dir:
            cfg["WorkingDir"] = self.working_dir
        if self.exposed_ports:
            cfg["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.volumes:
            cfg["Volumes"] = {v: {} for v in self.volumes}
        if self.labels:
            cfg["Labels"] = dict(self.labels)
        doc: dict[str, object] = {
            "created": self.created, "architecture": self.arch, "os": self.os, "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
            "history": [{"created": self.created, "created_by": f"layer {i}"}
                        for i in range(len(diff_ids))]}
        if self.variant:
            doc["variant"] = self.variant
        return doc

    def platform(self) -> dict[str, str]:
        p = {"architecture": self.arch, "os": self.os}
        if self.variant:
            p["variant"] = self.variant
        return p


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(layout: Path, data: bytes, media_type: str) -> dict[str, object]:
    digest = _digest(data)
    (layout / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _write_image(layout: Path, image: Image) -> dict[str, object]:
    layer_descs, diff_ids = [], []
    for layer in image.layers:
        raw, blob = layer.blob()
        diff_ids.append(_digest(raw))
        layer_descs.append(_put_blob(layout, blob, _LAYER_TYPES[layer.compression]))
    config = json.dumps(image.config(diff_ids), sort_keys=True).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": _put_blob(layout, config, OCI_CONFIG), "layers": layer_descs}
    desc = _put_blob(layout, json.dumps(manifest, sort_keys=True).encode(), OCI_MANIFEST)
    desc["platform"] = image.platform()
    return desc


def write_layout(layout: Path, image: Image | Sequence[Image], tag: str) -> dict[str, object]:
    """Write ``image`` (or a multi-arch list of images) as an OCI layout; returns the descriptor
    ``index.json`` names ``tag`` with."""
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    if isinstance(image, Image):
        desc = _write_image(layout, image)
    else:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                 "manifests": [_write_image(layout, i) for i in image]}
        desc = _put_blob(layout, json.dumps(index, sort_keys=True).encode(), OCI_INDEX)
    desc = {**desc, "annotations": {"org.opencontainers.image.ref.name": tag}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return desc


# --- token auth ----------------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A registry token realm (docker token auth spec): GET /token?service=&scope=, basic auth.

    Authenticated users get pull+push on the requested repositories, anonymous ones nothing."""

    ISSUER = "rktd-less-test-issuer"
    SERVICE = "rktd-less-test-registry"

    def __init__(self, directory: Path, certs: CertFiles, users: Mapping[str, str]) -> None:
        self.dir = directory
        self.users = dict(users)
        self.certs = certs
        self.issued: list[tuple[str, str]] = []  # (user or "", scope)
        directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", "sign.key", "-out", "sign.pem", "-days", "2",
                        "-subj", "/CN=rktd-less token signer"], cwd=directory, check=True,
                       capture_output=True, env=_ENV)
        der = subprocess.run(["openssl", "x509", "-in", "sign.pem", "-outform", "DER"],
                             cwd=directory, check=True, capture_output=True, env=_ENV).stdout
        self.bundle = directory / "sign.pem"
        self._x5c = base64.b64encode(der).decode()
        self.port = 0

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self.port}/token"

    def sign(self, user: str, scopes: Sequence[str]) -> str:
        access = []
        for scope in scopes if user else ():
            kind, _, rest = scope.partition(":")
            name, _, _actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": ["pull", "push"]})
        now = int(time.time())
        claims = {"iss": self.ISSUER, "sub": user, "aud": self.SERVICE, "exp": now + 600,
                  "nbf": now - 60, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.dir / "sign.key")],
                             input=signing_input.encode(), check=True, capture_output=True,
                             env=_ENV).stdout
        return signing_input + "." + _b64url(sig)

    @contextmanager
    def serve(self) -> Iterator[TokenServer]:
        from aiohttp import web

        async def token(request: web.Request) -> web.Response:
            user = ""
            header = request.headers.get("Authorization", "")
            if header.startswith("Basic "):
                u, _, p = base64.b64decode(header[6:]).decode().partition(":")
                if self.users.get(u) != p:
                    return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]},
                                             status=401)
                user = u
            scopes = request.query.getall("scope", [])
            self.issued.extend((user, s) for s in scopes)
            tok = self.sign(user, scopes)
            return web.json_response({"token": tok, "access_token": tok, "expires_in": 600})

        app = web.Application()
        app.router.add_get("/token", token)
        with serve_app(app, self.certs) as port:
            self.port = port
            yield self


@contextmanager
def serve_app(app: web.Application, certs: CertFiles | None) -> Iterator[int]:
    """Serve ``app`` (HTTPS with ``certs``, else HTTP) on a free 127.0.0.1 port from a
    background thread; yields the port."""
    import asyncio
    import ssl

    from aiohttp import web

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    ctx = None
    if certs is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certs.cert_file, certs.key_file)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock, ssl_context=ctx).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="aiohttp-app", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("test server did not start")
    try:
        yield int(sock.getsockname()[1])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        sock.close()


# --- the registry --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    status: int


@dataclass
class Registry:
    port: int
    root: Path  # storage root directory
    log: Path
    certs: CertFiles | None
    creds: tuple[str, str] | None = None  # what pushes use
    token: TokenServer | None = None
    workdir: Path = field(default_factory=Path)
    _pushes: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.certs else "http"

    def ref(self, repo: str, tag: str = "latest") -> str:
        return f"docker://{self.host}/{repo}:{tag}"

    def _skopeo(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        env = {**_ENV, "HOME": str(self.workdir), "XDG_RUNTIME_DIR": str(self.workdir)}
        proc = subprocess.run(["skopeo", "--insecure-policy", *args], env=env,
                              capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"skopeo {' '.join(args)}: {proc.stderr.decode()}")
        return proc

    def push(self, image: Image | Sequence[Image], repo: str, tag: str = "latest", *,
             fmt: str | None = None) -> str:
        """Push with skopeo (``fmt`` "v2s2" converts to Docker media types); returns the digest
        of the manifest (or manifest list) the registry serves for ``repo:tag``."""
        self._pushes += 1
        layout = self.workdir / f"layout-{self._pushes}"
        write_layout(layout, image, tag)
        digestfile = self.workdir / f"digest-{self._pushes}"
        args = ["copy", "--quiet", "--dest-tls-verify=false", "--digestfile", str(digestfile)]
        if not isinstance(image, Image):
            args.append("--all")
        if fmt:
            args += ["--format", fmt]
        if self.creds:
            args += ["--dest-creds", ":".join(self.creds)]
        self._skopeo(*args, f"oci:{layout}:{tag}", f"docker://{self.host}/{repo}:{tag}")
        return digestfile.read_text().strip()

    def requests(self) -> list[LoggedRequest]:
        """Every request the registry answered so far (from its combined-format access log)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            _, sep, rest = line.partition('] "')
            if not sep:
                continue
            request, _, tail = rest.partition('" ')
            parts = request.split()
            status = tail.split()[0] if tail.split() else ""
            if len(parts) >= 2 and status.isdigit():
                out.append(LoggedRequest(parts[0], parts[1], int(status)))
        return out

    def blob_downloads(self) -> list[LoggedRequest]:
        """GETs of blobs (pushes only HEAD them)."""
        return [r for r in self.requests() if "/blobs/sha256:" in r.path and r.method == "GET"]

    def blob_data(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(reg: Registry, htpasswd: Path | None) -> str:
    lines = ["version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: false",
             "storage:", "  filesystem:", f"    rootdirectory: {reg.root}",
             "  delete:", "    enabled: true", "http:", f"  addr: 127.0.0.1:{reg.port}",
             "  secret: rktd-less-test-secret"]
    if reg.certs:
        lines += ["  tls:", f"    certificate: {reg.certs.cert_file}",
                  f"    key: {reg.certs.key_file}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: rktd-less-test", f"    path: {htpasswd}"]
    elif reg.token:
        lines += ["auth:", "  token:", f"    realm: {reg.token.realm}",
                  f"    service: {reg.token.SERVICE}", f"    issuer: {reg.token.ISSUER}",
                  f"    rootcertbundle: {reg.token.bundle}"]
    return "\n".join(lines) + "\n"


def _wait_ready(reg: Registry, proc: subprocess.Popen[bytes]) -> bool:
    import ssl

    ctx = ssl.create_default_context(cafile=str(reg.certs.ca_file)) if reg.certs else None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{reg.scheme}://{reg.host}/v2/", context=ctx,
                                        timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # 401: up, and asking for credentials
        except OSError:
            time.sleep(0.05)
    return False


def htpasswd_available() -> bool:
    return shutil.which("htpasswd") is not None


@contextmanager
def run_registry(tmp: Path, *, tls: bool = False, htpasswd: tuple[str, str] | None = None,
                 token: Mapping[str, str] | None = None) -> Iterator[Registry]:
    """Run ``docker-registry`` until the block ends. ``htpasswd`` = (user, password) for basic
    auth; ``token`` = {user: password} for token auth (implies TLS for the realm)."""
    tmp.mkdir(parents=True, exist_ok=True)
    certs = make_certs(tmp / "certs") if tls or token else None
    with ExitStack() as stack:
        token_server = None
        if token is not None:
            assert certs is not None
            token_server = stack.enter_context(
                TokenServer(tmp / "token", certs, token).serve())
        pw_file = None
        if htpasswd:
            pw_file = tmp / "htpasswd"
            out = subprocess.run(["htpasswd", "-Bbn", *htpasswd], check=True,
                                 capture_output=True, env=_ENV).stdout
            pw_file.write_bytes(out)
        creds = htpasswd or (next(iter(token.items())) if token else None)
        for _attempt in range(5):
            reg = Registry(_free_port(), tmp / "storage", tmp / "registry.log", certs,
                           creds, token_server, tmp / "work")
            reg.workdir.mkdir(exist_ok=True)
            conf = tmp / "config.yml"
            conf.write_text(_config(reg, pw_file))
            with open(reg.log, "wb") as log:
                proc = subprocess.Popen([REGISTRY_BIN, "serve", str(conf)], stdout=log,
                                        stderr=subprocess.STDOUT, env=_ENV)
            try:
                if _wait_ready(reg, proc):
                    yield reg
                    return
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        raise RuntimeError(f"docker-registry did not start: {reg.log.read_text()[-2000:]}")
