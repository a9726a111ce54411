"""Docker Registry HTTP API v2 client: the fetch half of docker2aci (reference §5).

- ``parse_docker_ref`` / ``DockerRef`` (from ``docker_ref.py``): ``docker://NAME[:TAG|@DIGEST]``.
- ``pull``: manifest (Docker schema 2 or OCI; a manifest list / OCI index picks the platform),
  config and layers into ``dest_dir`` as content-addressed files ``sha256-<hex>``. Layers are
  downloaded in parallel, hashed while streaming and renamed into place only when the digest
  matches, so a blob present there is a verified one and is never downloaded again. A broken
  download leaves ``sha256-<hex>.part`` behind; the next pull continues it with a Range request.
- ``manifest_digest``: what a tag points at now (one HEAD), for caching by digest.

Registry auth as docker2aci does it: ``GET /v2/`` first (https; plain http only with
``--insecure-options=http``), then a ``Bearer`` challenge is answered with a token from the realm
(sending the dockerAuth credentials, if any) and a ``Basic`` one with the credentials themselves.
Tokens and credentials go to the registry's own host only, never across a redirect.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from ..errors import FetchError, RktError
from .docker_ref import (
    DEFAULT_REGISTRY,
    DIGEST_RE,
    DockerRef,
    parse_docker_ref,
    sanitize_ac_identifier,
)
from .http import Client, HttpOptions, Response, client, host_of
from .progress import Progress

_HUB_AUTH_KEYS = (DEFAULT_REGISTRY, "index.docker.io", "docker.io", "https://index.docker.io/v1/")

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
LIST_TYPES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))
CONFIG_TYPES = ("application/vnd.docker.container.image.v1+json",
                "application/vnd.oci.image.config.v1+json")
LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})
MAX_MANIFEST = 4 << 20  # what docker itself accepts
MAX_CONFIG = 64 << 20
MAX_TOKEN = 1 << 20
PARALLEL = 4

__all__ = ["DockerRef", "Layer", "PulledImage", "manifest_digest", "parse_docker_ref", "pull",
           "sanitize_ac_identifier", "select_manifest"]

# --- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    path: Path
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True)
class PulledImage:
    ref: DockerRef
    manifest_digest: str  # the image manifest converted (docker2aci's "manifesthash")
    manifest_media_type: str
    config: dict[str, Any]
    config_digest: str
    layers: tuple[Layer, ...]  # base layer first
    ref_digest: str  # what the reference resolved to: the list's digest for a multi-arch image
    downloaded: int = 0  # blobs transferred by this pull (0: all were already in dest_dir)


def blob_path(dest_dir: Path, digest: str) -> Path:
    return dest_dir / digest.replace(":", "-", 1)


def select_manifest(manifests: object, os_: str, arch: str,
                    variant: str | None = None) -> dict[str, Any] | None:
    """The entry of a manifest list / OCI index for ``os_/arch[/variant]``, as docker picks it:
    an exact variant match first; without a wanted variant, arm64 prefers ``v8``/none."""
    if not isinstance(manifests, list):
        return None
    found: list[dict[str, Any]] = []
    for m in manifests:
        p = m.get("platform") if isinstance(m, dict) else None
        if isinstance(p, dict) and p.get("os") == os_ and p.get("architecture") == arch:
            found.append(m)

    def var(m: dict[str, Any]) -> str:
        return str(m["platform"].get("variant") or "")

    preferred = [variant] if variant else [""]
    if arch == "arm64" and variant in (None, "", "v8"):
        preferred = ["v8", ""]  # docker treats arm64 and arm64/v8 as one platform
    for want in preferred:
        for m in found:
            if var(m) == want:
                return m
    return found[0] if found and not variant else None


def _platforms(manifests: object) -> str:
    out = []
    for m in manifests if isinstance(manifests, list) else ():
        p = m.get("platform") if isinstance(m, dict) else None
        if isinstance(p, dict):
            out.append("/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k)))
    return ", ".join(out) or "none"


def _descriptor(ref: DockerRef, d: object, what: str) -> tuple[str, int, str]:
    if not isinstance(d, dict):
        raise FetchError(f'docker image "{ref}": the manifest has no valid {what}')
    digest, size, media_type = d.get("digest"), d.get("size"), d.get("mediaType", "")
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise FetchError(f'docker image "{ref}": unsupported {what} digest {json.dumps(digest)}')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FetchError(f'docker image "{ref}": invalid size of {what} {digest}')
    return digest, size, str(media_type)


def _json_object(ref: DockerRef, body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise FetchError(f'docker image "{ref}": the {what} is not a JSON object')
    return doc


def _media_type(header: str, doc: dict[str, Any]) -> str:
    ct = header.partition(";")[0].strip().lower()
    if ct and ct not in ("application/json", "text/plain", "application/octet-stream"):
        return ct  # the registry's word, as docker takes it
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return "application/vnd.docker.distribution.manifest.v1+json"
    if doc.get("schemaVersion") == 2 and "manifests" in doc:
        return OCI_INDEX
    if doc.get("schemaVersion") == 2 and "config" in doc:
        return OCI_MANIFEST
    return ct or "(none)"


def _error_codes(body: bytes) -> list[tuple[str, str]]:
    """(code, message) pairs of a registry error body ``{"errors": [...]}``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    return [(str(e.get("code", "")), str(e.get("message", ""))) for e in errors
            if isinstance(e, dict)] if isinstance(errors, list) else []


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="…"`` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): re.sub(r"\\(.)", r"\1", quoted) or plain for k, quoted, plain in
              re.findall(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))', rest)}
    return scheme.lower(), params


# --- the session -------------------------------------------------------------------------------
class _Session:
    """One registry and repository: scheme, negotiated Authorization, requests."""

    def __init__(self, http: Client, ref: DockerRef, opts: HttpOptions) -> None:
        self.http, self.ref, self.opts = http, ref, opts
        self.base = f"https://{ref.registry}"
        self.authz: str | None = None
        self._auth_lock = asyncio.Lock()
        self.creds = self._creds()

    def _creds(self) -> tuple[str, str] | None:
        keys = _HUB_AUTH_KEYS if self.ref.registry == DEFAULT_REGISTRY else (self.ref.registry,)
        for key in keys:
            if key in self.opts.docker_auth:
                return self.opts.docker_auth[key]
        return None

    def _auth_error(self, denied: bool = False) -> FetchError:
        reg, hint = self.ref.registry, f'check the dockerAuth config for "{self.ref.registry}"'
        if self.creds is None:
            return FetchError(f'registry "{reg}" requires authentication for'
                              f' "{self.ref.repository}"',
                              hint=f'add credentials for "{reg}" to a dockerAuth config in'
                                   " auth.d")
        if denied:
            return FetchError(f'registry "{reg}" denied user "{self.creds[0]}" access to'
                              f' "{self.ref.repository}"', hint=hint)
        return FetchError(f'registry "{reg}" rejected the dockerAuth credentials of user'
                          f' "{self.creds[0]}"', hint=hint)

    def _basic(self) -> str:
        assert self.creds is not None
        user, password = self.creds
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    async def ping(self) -> None:
        """``GET /v2/`` over https, else (allow_http) http; learn the auth challenge."""
        failed: FetchError | None = None  # connecting failed
        answered: FetchError | None = None  # connected, but no registry answered
        for scheme in ("https", "http") if self.opts.allow_http else ("https",):
            base = f"{scheme}://{self.ref.registry}"
            try:
                resp = await self.http.send("GET", base + "/v2/", auth_d=False)
            except FetchError as e:
                failed = failed or e
                continue
            async with resp:
                challenge = resp.headers.get("WWW-Authenticate", "")
                if resp.status == 401 or 200 <= resp.status < 300:
                    self.base = base
                    if resp.status == 401:
                        await self._authenticate(challenge, None)
                    return
                answered = answered or FetchError(
                    f'"{self.ref.registry}" is not a docker registry: GET {resp.url} answered'
                    f" {resp.status}")
        error = answered or failed
        assert error is not None
        raise error

    async def _authenticate(self, challenge: str, sent: str | None) -> None:
        async with self._auth_lock:
            if self.authz != sent:
                return  # another request renegotiated meanwhile
            scheme, params = parse_challenge(challenge)
            if scheme == "basic":
                if self.creds is None or sent == self._basic():
                    raise self._auth_error()
                self.authz = self._basic()
            elif scheme == "bearer":
                self.authz = await self._token(params)
            else:
                raise FetchError(f'registry "{self.ref.registry}" asks for unsupported'
                                 f' authentication "{challenge or "(none)"}"')

    async def _token(self, params: dict[str, str]) -> str:
        realm = params.get("realm")
        if not realm:
            raise FetchError(f'registry "{self.ref.registry}": bearer challenge without realm')
        query = [("service", params["service"])] if params.get("service") else []
        scope = params.get("scope") or f"repository:{self.ref.repository}:pull"
        query += [("scope", s) for s in scope.split()]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        origin = {"Authorization": self._basic()} if self.creds else None
        async with await self.http.send("GET", url, origin_headers=origin, auth_d=False) as r:
            if r.status in (401, 403):
                raise self._auth_error()
            if not 200 <= r.status < 300:
                err = r.status_error()
                raise FetchError(f"getting a registry token from {host_of(url)}: {err}")
            doc = _json_object(self.ref, await r.read(MAX_TOKEN), "token answer")
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise FetchError(f"the token service {host_of(url)} sent no token")
        return "Bearer " + token

    async def send(self, method: str, path: str, headers: dict[str, str] | None = None
                   ) -> Response:
        """A request with the negotiated auth; one renegotiation on 401 (expired token)."""
        for attempt in range(2):
            origin = {"Authorization": self.authz} if self.authz else None
            resp = await self.http.send(method, self.base + path, headers, origin_headers=origin,
                                        auth_d=False)
            if resp.status not in (401, 403):
                return resp
            async with resp:
                challenge = resp.headers.get("WWW-Authenticate", "")
            if resp.status == 403 or attempt == 1 or not challenge:
                raise self._auth_error(denied=self.authz is not None)
            await self._authenticate(challenge, origin["Authorization"] if origin else None)
        raise AssertionError("unreachable")

    async def _fail(self, resp: Response, what: str, reference: str = "") -> FetchError:
        body = b""
        with contextlib.suppress(FetchError):
            body = await resp.read(64 << 10)
        codes = _error_codes(body)
        if resp.status == 404 or any(c in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN")
                                     for c, _ in codes):
            why = {"NAME_UNKNOWN": f'unknown repository "{self.ref.repository}"',
                   "MANIFEST_UNKNOWN": f"unknown manifest {reference}"
                   if reference.startswith("sha256:") else f'unknown tag "{reference}"'}
            detail = next((why[c] for c, _ in codes if c in why), "")
            if what == "manifest":
                return FetchError(f'docker image "{self.ref}" not found'
                                  + (f": {detail}" if detail else ""))
            return FetchError(f'{what} of docker image "{self.ref}" not found in the registry')
        msg = "; ".join(f"{c}: {m}" if m else c for c, m in codes)
        return FetchError(f"{resp.status_error()}" + (f" ({msg})" if msg else ""))

    async def manifest(self, reference: str) -> tuple[bytes, str, str]:
        """(body, media type, digest) of ``/v2/<repo>/manifests/<reference>``."""
        path = f"/v2/{self.ref.repository}/manifests/{reference}"
        async with await self.send("GET", path, {"Accept": ACCEPT}) as resp:
            if not 200 <= resp.status < 300:
                raise await self._fail(resp, "manifest", reference)
            body = await resp.read(MAX_MANIFEST)
            media_type = _media_type(resp.headers.get("Content-Type", ""),
                                     _json_object(self.ref, body, "manifest"))
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise FetchError(f'docker image "{self.ref}": the registry sent manifest {digest}'
                             f" for {reference}")
        return body, media_type, digest

    async def head_digest(self) -> str:
        path = f"/v2/{self.ref.repository}/manifests/{self.ref.reference}"
        async with await self.send("HEAD", path, {"Accept": ACCEPT}) as resp:
            if not 200 <= resp.status < 300:
                raise await self._fail(resp, "manifest", self.ref.reference)
            digest = resp.headers.get("Docker-Content-Digest", "")
        if DIGEST_RE.fullmatch(digest):
            return digest
        return (await self.manifest(self.ref.reference))[2]

    async def blob(self, digest: str, size: int, dest_dir: Path,
                   progress: Progress | None = None) -> tuple[Path, bool]:
        """The verified blob in ``dest_dir`` and whether it had to be downloaded."""
        final = blob_path(dest_dir, digest)
        if _present(final, size):
            return final, False
        part = final.with_name(final.name + ".part")
        with open(part, "a+b") as f:
            # Another pull of the same blob into the same directory: wait for it, reuse its work.
            await asyncio.to_thread(fcntl.flock, f.fileno(), fcntl.LOCK_EX)
            if _present(final, size):
                with contextlib.suppress(OSError):
                    if part.stat().st_ino == os.fstat(f.fileno()).st_ino:
                        part.unlink()
                return final, False
            await self._download(digest, size, f, part, progress)
            os.rename(part, final)
        return final, True

    async def _download(self, digest: str, size: int, f: BinaryIO, part: Path,
                        progress: Progress | None) -> None:
        """Fill ``f`` (opened for appending; may hold a partial of an earlier run) and check
        the digest; a mismatch removes the partial."""
        have = os.fstat(f.fileno()).st_size
        if have > size:
            f.truncate(0)
            have = 0
        hasher = hashlib.sha256()
        f.seek(0)
        while chunk := f.read(1 << 20):
            hasher.update(chunk)  # continuing a partial: its bytes count too
        got = have
        if have < size:
            headers = {"Range": f"bytes={have}-"} if have else {}
            async with await self.send("GET", f"/v2/{self.ref.repository}/blobs/{digest}",
                                       headers) as resp:
                if resp.status == 206 and have and resp.headers.get(
                        "Content-Range", "").startswith(f"bytes {have}-"):
                    pass  # continuing
                elif resp.status == 200:
                    f.truncate(0)
                    got, hasher = 0, hashlib.sha256()
                else:
                    part.unlink(missing_ok=True)
                    raise await self._fail(resp, f"blob {digest}")
                if progress is not None and got:
                    progress.update(got)
                async for chunk in resp.chunks(start=got):
                    got += len(chunk)
                    if got > size:
                        part.unlink(missing_ok=True)
                        raise FetchError(f'blob {digest} of docker image "{self.ref}" is larger'
                                         f" than the {size} bytes its manifest says")
                    hasher.update(chunk)
                    f.write(chunk)
                    if progress is not None:
                        progress.update(len(chunk))
            f.flush()
        if got < size:
            raise FetchError(f"blob {digest}: connection closed after {got} of {size} bytes",
                             hint="run the command again to resume the download")
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            part.unlink(missing_ok=True)
            raise FetchError(f'digest mismatch for blob {digest} of docker image "{self.ref}":'
                             f" the registry sent {actual}")


def _present(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            return _first_error(e)
        if isinstance(e, RktError):
            return e
    return group.exceptions[0]


# --- pull --------------------------------------------------------------------------------------
async def _pull(ref: DockerRef, dest: Path, opts: HttpOptions, os_: str, arch: str,
                variant: str | None) -> PulledImage:
    async with client(opts, limit=PARALLEL + 2) as http:
        s = _Session(http, ref, opts)
        await s.ping()
        body, media_type, ref_digest = await s.manifest(ref.reference)
        digest, doc = ref_digest, _json_object(ref, body, "manifest")
        if media_type in LIST_TYPES:
            entry = select_manifest(doc.get("manifests"), os_, arch, variant)
            if entry is None:
                want = "/".join(x for x in (os_, arch, variant) if x)
                raise FetchError(f'docker image "{ref}" has no {want} image (it has:'
                                 f" {_platforms(doc.get('manifests'))})")
            entry_digest = _descriptor(ref, entry, "platform manifest")[0]
            body, media_type, digest = await s.manifest(entry_digest)
            doc = _json_object(ref, body, "manifest")
        if media_type not in IMAGE_TYPES:
            raise FetchError(f'docker image "{ref}" has an unsupported manifest type'
                             f' "{media_type}"',
                             hint="only Docker schema 2 and OCI image manifests are supported")
        config_digest, config_size, config_type = _descriptor(ref, doc.get("config"), "config")
        if config_type and config_type not in CONFIG_TYPES:
            raise FetchError(f'docker image "{ref}" is not a container image (config type'
                             f' "{config_type}")')
        if config_size > MAX_CONFIG:
            raise FetchError(f'docker image "{ref}": config of {config_size} bytes is too big')
        raw_layers = doc.get("layers")
        if not isinstance(raw_layers, list):
            raise FetchError(f'docker image "{ref}": the manifest has no "layers" list')
        descs = [_descriptor(ref, d, "layer") for d in raw_layers]
        for _d, _size, layer_type in descs:
            if layer_type not in LAYER_TYPES:
                raise FetchError(f'docker image "{ref}" has a layer of unsupported type'
                                 f' "{layer_type}"')
        dest.mkdir(parents=True, exist_ok=True)
        config_path, config_new = await s.blob(config_digest, config_size, dest)
        config = _json_object(ref, config_path.read_bytes(), "image config")

        todo = {d: n for d, n, _ in descs if not _present(blob_path(dest, d), n)}
        progress = None
        if opts.progress and todo:
            label = f"Downloading {len(todo)} layer{'s' if len(todo) > 1 else ''}"
            progress = Progress(label, sum(todo.values()), sys.stderr)
        sem = asyncio.Semaphore(PARALLEL)
        tasks: list[asyncio.Task[bool]] = []

        async def one(d: str, n: int) -> bool:
            async with sem:
                return (await s.blob(d, n, dest, progress))[1]

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one(d, n)) for d, n in todo.items()]
        except BaseExceptionGroup as eg:
            raise _first_error(eg) from None
        finally:
            if progress is not None:
                progress.finish()
    layers = tuple(Layer(blob_path(dest, d), d, t, n) for d, n, t in descs)
    downloaded = sum(t.result() for t in tasks) + int(config_new)
    return PulledImage(ref, digest, media_type, config, config_digest, layers, ref_digest,
                       downloaded)


def pull(ref: DockerRef, dest_dir: Path, opts: HttpOptions, *, os: str = "linux",
         arch: str = "amd64", variant: str | None = None) -> PulledImage:
    """Download ``ref``'s manifest, config and layers into ``dest_dir`` (see the module doc).
    ``os``/``arch``/``variant`` are Docker platform names (amd64, arm64, arm + v7 ...)."""
    return asyncio.run(_pull(ref, dest_dir, opts, os, arch, variant))


async def _manifest_digest(ref: DockerRef, opts: HttpOptions) -> str:
    async with client(opts, limit=2) as http:
        s = _Session(http, ref, opts)
        await s.ping()
        return await s.head_digest()


def manifest_digest(ref: DockerRef, opts: HttpOptions) -> str:
    """The digest ``ref`` resolves to now (a multi-arch image: its list's digest, as
    ``PulledImage.ref_digest``); a digest reference is returned as is, without a request."""
    if ref.digest:
        return ref.digest
    return asyncio.run(_manifest_digest(ref, opts))
