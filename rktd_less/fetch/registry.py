"""Docker Registry HTTP API v2 client: the fetch half of docker2aci (reference §5).

- ``parse_docker_ref`` / ``DockerRef`` (from ``docker_ref.py``): ``docker://NAME[:TAG|@DIGEST]``;
  ``select_manifest`` (from ``docker_manifest.py``, the pure manifest side: media types, parsing,
  platform choice, validation).
- ``pull``: manifest (Docker schema 2 or OCI; a manifest list / OCI index picks the platform),
  config and layers into ``dest_dir`` as content-addressed files ``sha256-<hex>``. Layers are
  downloaded in parallel, hashed while streaming and renamed into place only when the digest
  matches, so a blob present there is a verified one and is never downloaded again. A broken
  download leaves ``sha256-<hex>.part`` behind; the next pull continues it with a Range request.
- ``manifest_digest``: what a tag points at now (one HEAD), for caching by digest.

Registry auth as docker2aci does it: ``GET /v2/`` first (https; plain http only with
``--insecure-options=http``), then a ``Bearer`` challenge is answered with a token from the realm
(sending the dockerAuth credentials, if any) and a ``Basic`` one with the credentials themselves.
Tokens and credentials go to the registry's own host only, never across a redirect. The pure
half (challenge parsing, token URL, credentials lookup, auth errors) is ``registry_auth.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import FetchError, RktError
from .docker_manifest import (
    ACCEPT,
    LIST_TYPES,
    MAX_MANIFEST,
    descriptor,
    image_descriptors,
    json_object,
    media_type_of,
    platforms,
    select_manifest,
)
from .docker_ref import DIGEST_RE, DockerRef, parse_docker_ref, sanitize_ac_identifier
from .http import Client, HttpOptions, Response, client, host_of
from .progress import Progress
from .registry_auth import (
    auth_error,
    basic_authorization,
    credentials_for,
    parse_challenge,
    token_url,
)

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


def _error_codes(body: bytes) -> list[tuple[str, str]]:
    """(code, message) pairs of a registry error body ``{"errors": [...]}``."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    return [(str(e.get("code", "")), str(e.get("message", ""))) for e in errors
            if isinstance(e, dict)] if isinstance(errors, list) else []


# --- the session -------------------------------------------------------------------------------
class _Session:
    """One registry and repository: scheme, negotiated Authorization, requests."""

    def __init__(self, http: Client, ref: DockerRef, opts: HttpOptions) -> None:
        self.http, self.ref, self.opts = http, ref, opts
        self.base = f"https://{ref.registry}"
        self.authz: str | None = None
        self._auth_lock = asyncio.Lock()
        self.creds = credentials_for(ref, opts.docker_auth)

    def _auth_error(self, denied: bool = False) -> FetchError:
        return auth_error(self.ref, self.creds, denied)

    def _basic(self) -> str:
        assert self.creds is not None
        return basic_authorization(self.creds)

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
        url = token_url(self.ref, params)
        origin = {"Authorization": self._basic()} if self.creds else None
        async with await self.http.send("GET", url, origin_headers=origin, auth_d=False) as r:
            if r.status in (401, 403):
                raise self._auth_error()
            if not 200 <= r.status < 300:
                err = r.status_error()
                raise FetchError(f"getting a registry token from {host_of(url)}: {err}")
            doc = json_object(self.ref, await r.read(MAX_TOKEN), "token answer")
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
            media_type = media_type_of(resp.headers.get("Content-Type", ""),
                                       json_object(self.ref, body, "manifest"))
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
        digest, doc = ref_digest, json_object(ref, body, "manifest")
        if media_type in LIST_TYPES:
            entry = select_manifest(doc.get("manifests"), os_, arch, variant)
            if entry is None:
                want = "/".join(x for x in (os_, arch, variant) if x)
                raise FetchError(f'docker image "{ref}" has no {want} image (it has:'
                                 f" {platforms(doc.get('manifests'))})")
            entry_digest = descriptor(ref, entry, "platform manifest")[0]
            body, media_type, digest = await s.manifest(entry_digest)
            doc = json_object(ref, body, "manifest")
        (config_digest, config_size, _), descs = image_descriptors(ref, doc, media_type)
        dest.mkdir(parents=True, exist_ok=True)
        config_path, config_new = await s.blob(config_digest, config_size, dest)
        config = json_object(ref, config_path.read_bytes(), "image config")

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
