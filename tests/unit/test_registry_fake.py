"""docker:// pulls against a scripted registry (aiohttp on 127.0.0.1) for what a real registry
will not serve on demand: old or foreign manifest types, broken connections, lying sizes,
redirects to blob storage on another host, auth realms over plain HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rktd_less.errors import FetchError
from rktd_less.fetch.docker_manifest import DOCKER_MANIFEST, OCI_INDEX
from rktd_less.fetch.http import HttpOptions
from rktd_less.fetch.registry import blob_path, parse_docker_ref, pull
from tests.helpers.https_server import CertFiles, make_certs
from tests.helpers.registry import serve_app

LAYER = bytes(range(256)) * 2048  # 512 KiB; the client does not look inside
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"]}}).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(config_type: str = "application/vnd.docker.container.image.v1+json",
              layer_type: str = "application/vnd.docker.image.rootfs.diff.tar.gzip",
              layer_size: int | None = None) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": config_type, "digest": _digest(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": layer_type, "digest": _digest(LAYER),
                    "size": len(LAYER) if layer_size is None else layer_size}]}).encode()


@dataclass
class Fake:
    """``manifests``: "repo:ref" -> (body, content type); blobs by digest, with Range."""

    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=lambda: {_digest(CONFIG): CONFIG,
                                                             _digest(LAYER): LAYER})
    truncate: dict[str, int] = field(default_factory=dict)  # digest -> bytes, once
    challenge: str | None = None  # WWW-Authenticate when no Authorization was sent
    password: str | None = None  # Basic alice:<password> accepted
    blob_redirect: str | None = None  # base URL blobs are redirected to
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path, dict(request.headers)))
        auth = request.headers.get("Authorization")
        if request.path.startswith("/storage/"):
            return self._blob(request, request.path.rsplit("/", 1)[-1])
        if self.challenge and (auth is None or auth != self._good()):
            return web.Response(status=401, headers={"WWW-Authenticate": self.challenge})
        if request.path == "/v2/":
            return web.json_response({})
        _, _, rest = request.path.partition("/v2/")
        repo, kind, ref = rest.rsplit("/", 2)
        if kind == "manifests" and f"{repo}:{ref}" in self.manifests:
            body, ctype = self.manifests[f"{repo}:{ref}"]
            return web.Response(body=body, headers={"Content-Type": ctype})
        if kind == "blobs" and ref in self.blobs:
            if self.blob_redirect:
                raise web.HTTPTemporaryRedirect(f"{self.blob_redirect}/storage/{ref}")
            return self._blob(request, ref)
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)

    def _good(self) -> str | None:
        if self.password is None:
            return None
        return "Basic " + base64.b64encode(f"alice:{self.password}".encode()).decode()

    def _blob(self, request: web.Request, digest: str) -> web.StreamResponse:
        data = self.blobs[digest]
        rng = request.headers.get("Range", "")
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            return web.Response(status=206, body=data[start:], headers={
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        cut = self.truncate.pop(digest, None)
        if cut is not None:
            return _Truncated(data, cut)
        return web.Response(body=data)


class _Truncated(web.StreamResponse):
    """Announces the full length, sends ``cut`` bytes, drops the connection."""

    def __init__(self, data: bytes, cut: int) -> None:
        super().__init__(status=200)
        self.content_length = len(data)
        self._data, self._cut = data, cut

    async def prepare(self, request: web.BaseRequest) -> Any:
        writer = await super().prepare(request)
        await self.write(self._data[:self._cut])
        assert request.transport is not None
        request.transport.close()
        return writer


@pytest.fixture
def fake() -> Iterator[Fake]:
    f = Fake()
    f.manifests["app:1"] = (_manifest(), DOCKER_MANIFEST)
    with serve_app(f.app(), None) as port:
        f.port = port
        yield f


HTTP = HttpOptions(allow_http=True)


def _ref(fake: Fake, name: str = "app:1") -> Any:
    return parse_docker_ref(f"docker://127.0.0.1:{fake.port}/{name}")


def test_the_fake_serves_a_good_image(fake: Fake, tmp_path: Path) -> None:
    p = pull(_ref(fake), tmp_path, HTTP)
    assert p.layers[0].path.read_bytes() == LAYER and p.config["config"]["Cmd"] == ["/x"]


@pytest.mark.parametrize(("ctype", "body"), [
    ("application/vnd.docker.distribution.manifest.v1+prettyjws",
     b'{"schemaVersion": 1, "name": "app", "tag": "1", "fsLayers": []}'),
    ("application/json", b'{"schemaVersion": 1, "name": "app", "fsLayers": []}'),
    ("application/vnd.example.other+json", b'{"schemaVersion": 2}'),
])
def test_unsupported_manifest_types(fake: Fake, tmp_path: Path, ctype: str,
                                    body: bytes) -> None:
    fake.manifests["app:old"] = (body, ctype)
    with pytest.raises(FetchError) as e:
        pull(_ref(fake, "app:old"), tmp_path, HTTP)
    want = ctype if ctype != "application/json" else (
        "application/vnd.docker.distribution.manifest.v1+json")
    assert e.value.message == (f'docker image "127.0.0.1:{fake.port}/app:old" has an'
                               f' unsupported manifest type "{want}"')


def test_oci_index_without_content_type(fake: Fake, tmp_path: Path) -> None:
    """Media type from the body when the registry says only application/json."""
    man = _manifest()
    fake.manifests[f"app:{_digest(man)}"] = (man, "application/json")
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": _digest(man), "size": len(man),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    fake.manifests["app:idx"] = (index, "application/json")
    p = pull(_ref(fake, "app:idx"), tmp_path, HTTP)
    assert p.manifest_digest == _digest(man) and p.ref_digest == _digest(index)
    assert p.manifest_media_type == DOCKER_MANIFEST
    fake.manifests["app:nested"] = (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                "manifests": [{
        "mediaType": OCI_INDEX, "digest": _digest(index), "size": len(index),
        "platform": {"os": "linux", "architecture": "amd64"}}]}).encode(), OCI_INDEX)
    fake.manifests[f"app:{_digest(index)}"] = (index, OCI_INDEX)
    with pytest.raises(FetchError, match="unsupported manifest type"):
        pull(_ref(fake, "app:nested"), tmp_path, HTTP)


def test_not_a_container_image(fake: Fake, tmp_path: Path) -> None:
    fake.manifests["app:helm"] = (_manifest(config_type="application/vnd.cncf.helm.config.v1"
                                                        "+json"), DOCKER_MANIFEST)
    with pytest.raises(FetchError, match=r'is not a container image \(config type'
                                         r' "application/vnd.cncf.helm.config.v1\+json"\)'):
        pull(_ref(fake, "app:helm"), tmp_path, HTTP)
    fake.manifests["app:enc"] = (_manifest(layer_type="application/vnd.oci.image.layer.v1"
                                                      ".tar+gzip+encrypted"), DOCKER_MANIFEST)
    with pytest.raises(FetchError, match=r'layer of unsupported type ".*\+encrypted"'):
        pull(_ref(fake, "app:enc"), tmp_path, HTTP)


def test_bad_descriptors(fake: Fake, tmp_path: Path) -> None:
    doc = json.loads(_manifest())
    doc["layers"][0]["digest"] = "sha256:../../etc/passwd"
    fake.manifests["app:evil"] = (json.dumps(doc).encode(), DOCKER_MANIFEST)
    with pytest.raises(FetchError, match="unsupported layer digest"):
        pull(_ref(fake, "app:evil"), tmp_path, HTTP)
    doc["layers"][0]["digest"] = _digest(LAYER)
    doc["layers"][0]["size"] = -1
    fake.manifests["app:evil"] = (json.dumps(doc).encode(), DOCKER_MANIFEST)
    with pytest.raises(FetchError, match="invalid size of layer"):
        pull(_ref(fake, "app:evil"), tmp_path, HTTP)
    fake.manifests["app:junk"] = (b"not json", DOCKER_MANIFEST)
    with pytest.raises(FetchError, match="the manifest is not a JSON object"):
        pull(_ref(fake, "app:junk"), tmp_path, HTTP)


def test_blob_larger_than_its_descriptor(fake: Fake, tmp_path: Path) -> None:
    fake.manifests["app:small"] = (_manifest(layer_size=1000), DOCKER_MANIFEST)
    with pytest.raises(FetchError, match="is larger than the 1000 bytes its manifest says"):
        pull(_ref(fake, "app:small"), tmp_path, HTTP)
    assert not any(f.name.endswith(".part") for f in tmp_path.iterdir())


def test_truncated_layer_resumes(fake: Fake, tmp_path: Path) -> None:
    fake.truncate[_digest(LAYER)] = 100_000
    with pytest.raises(FetchError) as e:
        pull(_ref(fake, "app:1"), tmp_path, HTTP)
    assert e.value.hint == "run the command again to resume the download"
    part = blob_path(tmp_path, _digest(LAYER)).with_name(
        "sha256-" + _digest(LAYER)[7:] + ".part")
    assert part.exists() and not blob_path(tmp_path, _digest(LAYER)).exists()
    have = part.stat().st_size
    assert 0 < have < len(LAYER)
    p = pull(_ref(fake, "app:1"), tmp_path, HTTP)
    assert p.layers[0].path.read_bytes() == LAYER and not part.exists()
    ranges = [h.get("Range") for m, path, h in fake.seen if path.endswith(_digest(LAYER))]
    assert ranges[-1] == f"bytes={have}-"


def test_corrupt_partial_is_detected_and_removed(fake: Fake, tmp_path: Path) -> None:
    part = tmp_path / ("sha256-" + _digest(LAYER)[7:] + ".part")
    part.write_bytes(b"\0" * 1000)  # not the layer's first bytes
    with pytest.raises(FetchError, match="digest mismatch"):
        pull(_ref(fake, "app:1"), tmp_path, HTTP)
    assert not part.exists()
    assert pull(_ref(fake, "app:1"), tmp_path, HTTP).layers[0].path.read_bytes() == LAYER


def test_credentials_do_not_follow_a_redirect(tmp_path: Path) -> None:
    storage = Fake()
    with serve_app(storage.app(), None) as sport:
        fake = Fake(challenge='Basic realm="fake"', password="pw",
                    blob_redirect=f"http://127.0.0.1:{sport}")
        fake.manifests["app:1"] = (_manifest(), DOCKER_MANIFEST)
        with serve_app(fake.app(), None) as port:
            fake.port = port
            opts = HttpOptions(allow_http=True,
                               docker_auth={f"127.0.0.1:{port}": ("alice", "pw")})
            p = pull(_ref(fake), tmp_path, opts)
    assert p.layers[0].path.read_bytes() == LAYER
    assert [path for _, path, _ in storage.seen] == [f"/storage/{_digest(CONFIG)}",
                                                    f"/storage/{_digest(LAYER)}"]
    assert all("Authorization" not in h for _, _, h in storage.seen)
    assert all(h.get("Authorization") for _, p_, h in fake.seen if p_ != "/v2/")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"))


def test_token_realm_over_plain_http_is_refused(certs: CertFiles, tmp_path: Path) -> None:
    fake = Fake(challenge='Bearer realm="http://127.0.0.1:9/token",service="fake"')
    with serve_app(fake.app(), certs) as port:
        fake.port = port
        with pytest.raises(FetchError) as e:
            pull(_ref(fake), tmp_path, HttpOptions(ca_file=str(certs.ca_file),
                                                   docker_auth={f"127.0.0.1:{port}":
                                                                ("alice", "pw")}))
    assert e.value.message == "refusing plain HTTP for http://127.0.0.1:9/token?service=fake" \
        "&scope=repository%3Aapp%3Apull"


def test_unsupported_challenge(fake: Fake, tmp_path: Path) -> None:
    fake.challenge = 'Negotiate abc'
    with pytest.raises(FetchError, match='asks for unsupported authentication "Negotiate abc"'):
        pull(_ref(fake), tmp_path, HTTP)


def test_not_a_registry(tmp_path: Path) -> None:
    async def nothing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", nothing)
    with serve_app(app, None) as port, pytest.raises(
            FetchError, match=f'"127.0.0.1:{port}" is not a docker registry'):
        pull(parse_docker_ref(f"docker://127.0.0.1:{port}/x"), tmp_path, HTTP)
