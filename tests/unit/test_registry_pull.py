"""docker:// pulls from a real registry (Debian docker-registry on 127.0.0.1, images pushed with
skopeo): plain HTTP and TLS, tag and digest, manifest lists, the blob cache, digest checks and
the errors a user meets."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rktd_less.errors import FetchError
from rktd_less.fetch.docker_manifest import DOCKER_LIST, DOCKER_MANIFEST, OCI_MANIFEST
from rktd_less.fetch.http import HttpOptions
from rktd_less.fetch.registry import (
    PulledImage,
    blob_path,
    manifest_digest,
    parse_docker_ref,
    pull,
)
from tests.helpers.registry import (
    Image,
    Layer,
    Registry,
    directory,
    file,
    hardlink,
    opaque,
    run_registry,
    symlink,
    whiteout,
)

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists()
                                or not Path("/usr/bin/skopeo").exists(),
                                reason="needs docker-registry and skopeo (scripts/install.sh)")

BIG = os.urandom(1 << 20)
IMAGE = Image(
    [Layer([directory("etc"), file("etc/hello", "hello\n"), file("etc/old", "old"),
            directory("var/cache", mode=0o700, uid=1, gid=2), file("var/cache/x", "x")]),
     Layer([whiteout("etc/old"), opaque("var/cache"), symlink("bin", "usr/bin"),
            hardlink("etc/hello2", "etc/hello"), file("usr/bin/tool", b"#!/bin/sh\n", 0o755)],
           compression="none"),
     Layer([file("big", BIG)])],
    entrypoint=["/usr/bin/tool"], cmd=["--flag"], env=["A=1", "PATH=/usr/bin"], user="1:2",
    working_dir="/var", exposed_ports=["80/tcp", "53/udp"], volumes=["/data"],
    labels={"org.example": "yes"})


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as r:
        yield r


@pytest.fixture(scope="module")
def tls_reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry-tls"), tls=True) as r:
        yield r


@pytest.fixture(scope="module")
def pushed(reg: Registry) -> dict[str, str]:
    """repo:tag -> manifest digest of what the tests pull."""
    arm = Image([Layer([file("arch", "arm64")])], arch="arm64", variant="v8", cmd=["/arch"])
    amd = Image([Layer([file("arch", "amd64")])], cmd=["/arch"])
    return {
        "app:1": reg.push(IMAGE, "test/app", "1"),
        "docker:1": reg.push(IMAGE, "test/docker", "1", fmt="v2s2"),
        "multi:1": reg.push([arm, amd], "test/multi", "1"),
        "multi-docker:1": reg.push([arm, amd], "test/multi-docker", "1", fmt="v2s2"),
    }


HTTP = HttpOptions(allow_http=True)


def _pull(reg: Registry, repo: str, tag: str, dest: Path, opts: HttpOptions = HTTP,
          **kw: str) -> PulledImage:
    return pull(parse_docker_ref(reg.ref(repo, tag)), dest, opts, **kw)


def _members(path: Path, compressed: bool) -> dict[str, tarfile.TarInfo]:
    data = path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data) if compressed else data)) as t:
        return {m.name: m for m in t.getmembers()}


def test_pull_multi_layer_image_over_plain_http(reg: Registry, pushed: dict[str, str],
                                                tmp_path: Path) -> None:
    p = _pull(reg, "test/app", "1", tmp_path)
    assert p.manifest_digest == p.ref_digest == pushed["app:1"]
    assert p.manifest_media_type == OCI_MANIFEST
    assert p.ref == parse_docker_ref(f"docker://{reg.host}/test/app:1")
    cfg = p.config["config"]
    assert cfg["Entrypoint"] == ["/usr/bin/tool"] and cfg["Cmd"] == ["--flag"]
    assert cfg["User"] == "1:2" and cfg["WorkingDir"] == "/var"
    assert set(cfg["ExposedPorts"]) == {"80/tcp", "53/udp"} and set(cfg["Volumes"]) == {"/data"}
    assert cfg["Labels"] == {"org.example": "yes"} and p.config["architecture"] == "amd64"
    # skopeo gzips the uncompressed layer on its way to the registry
    assert {layer.media_type for layer in p.layers} == {
        "application/vnd.oci.image.layer.v1.tar+gzip"}
    assert p.downloaded == 4  # config + 3 layers
    for layer in [*p.layers]:
        assert layer.path == blob_path(tmp_path, layer.digest) == tmp_path / (
            "sha256-" + layer.digest[7:])
        data = layer.path.read_bytes()
        assert len(data) == layer.size and hashlib.sha256(data).hexdigest() == layer.digest[7:]
    assert (tmp_path / ("sha256-" + p.config_digest[7:])).is_file()
    assert sorted(f.name for f in tmp_path.iterdir() if f.name.endswith(".part")) == []
    top = _members(p.layers[0].path, True)
    assert top["var/cache"].mode == 0o700 and (top["var/cache"].uid, top["var/cache"].gid) == (1, 2)
    mid = _members(p.layers[1].path, True)
    assert {"etc/.wh.old", "var/cache/.wh..wh..opq", "bin", "etc/hello2"} <= set(mid)
    assert mid["bin"].issym() and mid["etc/hello2"].islnk()
    assert mid["usr/bin/tool"].mode == 0o755
    assert gzip.decompress(p.layers[2].path.read_bytes()).find(BIG) > 0


def test_second_pull_downloads_no_blob(reg: Registry, pushed: dict[str, str],
                                       tmp_path: Path) -> None:
    first = _pull(reg, "test/app", "1", tmp_path)
    before = len(reg.blob_downloads())
    mtimes = {f.name: f.stat().st_mtime_ns for f in tmp_path.iterdir()}
    second = _pull(reg, "test/app", "1", tmp_path)
    assert second.downloaded == 0 and second == PulledImage(
        first.ref, first.manifest_digest, first.manifest_media_type, first.config,
        first.config_digest, first.layers, first.ref_digest, 0)
    assert len(reg.blob_downloads()) == before  # the registry was not asked for any blob
    assert {f.name: f.stat().st_mtime_ns for f in tmp_path.iterdir()} == mtimes
    # a partly shared image only fetches what is new
    other = Image([IMAGE.layers[0], Layer([file("new", "n")])], cmd=["/new"])
    reg.push(other, "test/other", "1")
    p = _pull(reg, "test/other", "1", tmp_path)
    assert p.downloaded == 2  # its config and its new layer
    assert len(reg.blob_downloads()) == before + 2


def test_pull_by_digest(reg: Registry, pushed: dict[str, str], tmp_path: Path) -> None:
    ref = parse_docker_ref(f"docker://{reg.host}/test/app@{pushed['app:1']}")
    assert ref.tag is None
    p = pull(ref, tmp_path, HTTP)
    assert p.manifest_digest == pushed["app:1"] and len(p.layers) == 3
    assert manifest_digest(ref, HttpOptions()) == pushed["app:1"]  # no request needed
    missing = parse_docker_ref(f"docker://{reg.host}/test/app@sha256:{'0' * 64}")
    with pytest.raises(FetchError, match=r'docker image ".*/test/app@sha256:0+" not found'):
        pull(missing, tmp_path, HTTP)


def test_docker_media_types(reg: Registry, pushed: dict[str, str], tmp_path: Path) -> None:
    p = _pull(reg, "test/docker", "1", tmp_path)
    assert p.manifest_media_type == DOCKER_MANIFEST and p.manifest_digest == pushed["docker:1"]
    assert {layer.media_type for layer in p.layers} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"}
    assert p.config["config"]["Cmd"] == ["--flag"]


@pytest.mark.parametrize("repo", ["test/multi", "test/multi-docker"])
def test_manifest_list_picks_the_platform(reg: Registry, pushed: dict[str, str], repo: str,
                                          tmp_path: Path) -> None:
    key = repo.removeprefix("test/") + ":1"
    p = _pull(reg, repo, "1", tmp_path)
    assert p.ref_digest == pushed[key] != p.manifest_digest
    assert p.config["architecture"] == "amd64" and len(p.layers) == 1
    assert _members(p.layers[0].path, True)["arch"].size == 5
    arm = _pull(reg, repo, "1", tmp_path, arch="arm64")
    assert arm.config["architecture"] == "arm64" and arm.ref_digest == pushed[key]
    assert arm.manifest_digest != p.manifest_digest
    with pytest.raises(FetchError, match=r"has no linux/s390x image \(it has: linux/arm64/v8,"
                                         r" linux/amd64\)"):
        _pull(reg, repo, "1", tmp_path, arch="s390x")
    # the digest of the tag is the list's, as PulledImage.ref_digest
    assert manifest_digest(parse_docker_ref(reg.ref(repo, "1")), HTTP) == pushed[key]
    if repo == "test/multi-docker":
        import json
        lst = reg.blob_data(pushed[key]).read_bytes()
        assert json.loads(lst)["mediaType"] == DOCKER_LIST


def test_manifest_digest_of_a_tag(reg: Registry, pushed: dict[str, str]) -> None:
    assert manifest_digest(parse_docker_ref(reg.ref("test/app", "1")), HTTP) == pushed["app:1"]
    with pytest.raises(FetchError, match=r'docker image ".*/test/app:nope" not found'):
        manifest_digest(parse_docker_ref(reg.ref("test/app", "nope")), HTTP)


def test_unknown_repository_and_tag(reg: Registry, pushed: dict[str, str],
                                    tmp_path: Path) -> None:
    with pytest.raises(FetchError) as e:
        _pull(reg, "test/nosuchrepo", "1", tmp_path)
    assert e.value.message.startswith(f'docker image "{reg.host}/test/nosuchrepo:1" not found')
    with pytest.raises(FetchError) as e:
        _pull(reg, "test/app", "2", tmp_path)
    assert e.value.message == f'docker image "{reg.host}/test/app:2" not found: unknown tag "2"'
    assert list(tmp_path.iterdir()) == []


def test_plain_http_needs_allow_http(reg: Registry, pushed: dict[str, str],
                                     tmp_path: Path) -> None:
    with pytest.raises(FetchError) as e:
        _pull(reg, "test/app", "1", tmp_path, HttpOptions())
    assert "--insecure-options=http" in (e.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_blob_in_the_registry(reg: Registry, tmp_path: Path) -> None:
    img = Image([Layer([file("a", os.urandom(4096))]), Layer([file("b", os.urandom(70000))])],
                cmd=["/a"])
    reg.push(img, "test/corrupt", "1")
    good = _pull(reg, "test/corrupt", "1", tmp_path / "good")
    victim = good.layers[1]
    stored = reg.blob_data(victim.digest)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    dest = tmp_path / "bad"
    with pytest.raises(FetchError) as e:
        _pull(reg, "test/corrupt", "1", dest)
    assert e.value.message.startswith(f"digest mismatch for blob {victim.digest}")
    final = blob_path(dest, victim.digest)
    assert not final.exists() and not final.with_name(final.name + ".part").exists()


def test_tls_with_the_ca(tls_reg: Registry, tmp_path: Path) -> None:
    assert tls_reg.certs is not None
    digest = tls_reg.push(IMAGE, "secure/app", "v1")
    opts = HttpOptions(ca_file=str(tls_reg.certs.ca_file))
    p = _pull(tls_reg, "secure/app", "v1", tmp_path, opts)
    assert p.manifest_digest == digest and len(p.layers) == 3
    with pytest.raises(FetchError) as e:
        _pull(tls_reg, "secure/app", "v1", tmp_path / "untrusted", HttpOptions())
    assert "certificate" in e.value.message and "--insecure-options=tls" in (e.value.hint or "")
    p = _pull(tls_reg, "secure/app", "v1", tmp_path / "insecure",
              HttpOptions(insecure_tls=True))
    assert p.manifest_digest == digest


def test_tls_with_ssl_cert_file(tls_reg: Registry, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls_reg.certs is not None
    tls_reg.push(IMAGE, "secure/env", "v1")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_reg.certs.ca_file))
    # allow_http must not downgrade a registry that speaks TLS
    p = _pull(tls_reg, "secure/env", "v1", tmp_path, HttpOptions(allow_http=True))
    assert len(p.layers) == 3
    assert all(r.path != "/v2/" or r.status == 200 for r in tls_reg.requests())


@pytest.mark.skipif(not Path("/usr/bin/zstd").exists(), reason="needs the zstd CLI")
def test_zstd_layers(reg: Registry, tmp_path: Path) -> None:
    img = Image([Layer([file("z", "zstd!" * 1000)], compression="zstd")], cmd=["/z"])
    reg.push(img, "test/zstd", "1")
    p = _pull(reg, "test/zstd", "1", tmp_path)
    assert [layer.media_type for layer in p.layers] == [
        "application/vnd.oci.image.layer.v1.tar+zstd"]
    assert p.layers[0].path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic


def test_progress_on_a_terminal_only(reg: Registry, pushed: dict[str, str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _pull(reg, "test/app", "1", tmp_path / "quiet")
    assert capsys.readouterr().err == ""
    _pull(reg, "test/app", "1", tmp_path / "loud", HttpOptions(allow_http=True, progress=True))
    err = capsys.readouterr().err
    assert "Downloading 3 layers: [" in err and err.endswith("\n")
    assert "MB/1.05 MB" in err
    _pull(reg, "test/app", "1", tmp_path / "loud", HttpOptions(allow_http=True, progress=True))
    assert capsys.readouterr().err == ""  # nothing to download, nothing to show
