"""Registry auth against a real docker-registry: htpasswd (Basic challenge) and token auth
(Bearer challenge, a token realm on 127.0.0.1), credentials from the dockerAuth config."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rktd_less.config import ConfigDirs, Insecure
from rktd_less.errors import FetchError
from rktd_less.fetch.http import HttpOptions, options_from
from rktd_less.fetch.registry import manifest_digest, parse_docker_ref, pull
from tests.helpers.registry import Image, Layer, Registry, file, run_registry

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists()
                                or not Path("/usr/bin/skopeo").exists()
                                or not Path("/usr/bin/htpasswd").exists(),
                                reason="needs docker-registry, skopeo and htpasswd")

IMAGE = Image([Layer([file("hello", "world")]), Layer([file("two", "2")])], cmd=["/hello"])


@pytest.fixture(scope="module")
def basic_reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("basic"), htpasswd=("alice", "s3cret")) as r:
        r.push(IMAGE, "private/app", "1")
        yield r


@pytest.fixture(scope="module")
def token_reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("token"), token={"bob": "pa:ss"}) as r:
        r.push(IMAGE, "private/app", "1")
        yield r


def _opts(reg: Registry, creds: tuple[str, str] | None, allow_http: bool = False
          ) -> HttpOptions:
    ca = str(reg.certs.ca_file) if reg.certs else None
    return HttpOptions(ca_file=ca, docker_auth={reg.host: creds} if creds else {},
                       allow_http=allow_http)


def test_basic_auth(basic_reg: Registry, tmp_path: Path) -> None:
    ref = parse_docker_ref(basic_reg.ref("private/app", "1"))
    p = pull(ref, tmp_path, _opts(basic_reg, ("alice", "s3cret"), allow_http=True))
    assert len(p.layers) == 2 and p.downloaded == 3
    assert manifest_digest(ref, _opts(basic_reg, ("alice", "s3cret"), allow_http=True)) == (
        p.manifest_digest)


def test_basic_auth_without_credentials(basic_reg: Registry, tmp_path: Path) -> None:
    ref = parse_docker_ref(basic_reg.ref("private/app", "1"))
    with pytest.raises(FetchError) as e:
        pull(ref, tmp_path, _opts(basic_reg, None, allow_http=True))
    assert e.value.message == (f'registry "{basic_reg.host}" requires authentication for'
                               ' "private/app"')
    assert "dockerAuth" in (e.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_basic_auth_wrong_password(basic_reg: Registry, tmp_path: Path) -> None:
    ref = parse_docker_ref(basic_reg.ref("private/app", "1"))
    with pytest.raises(FetchError) as e:
        pull(ref, tmp_path, _opts(basic_reg, ("alice", "wrong"), allow_http=True))
    assert e.value.message == (f'registry "{basic_reg.host}" rejected the dockerAuth'
                               ' credentials of user "alice"')
    assert "dockerAuth" in (e.value.hint or "")


def test_docker_auth_config_file(basic_reg: Registry, tmp_path: Path) -> None:
    dirs = ConfigDirs(tmp_path / "sys", tmp_path / "etc", None)
    (dirs.local / "auth.d").mkdir(parents=True)
    (dirs.local / "auth.d" / "docker.json").write_text(json.dumps({
        "rktKind": "dockerAuth", "rktVersion": "v1", "registries": [basic_reg.host],
        "credentials": {"user": "alice", "password": "s3cret"}}))
    opts = options_from(Insecure.parse(["http"]), dirs, progress=False)
    assert opts.docker_auth == {basic_reg.host: ("alice", "s3cret")} and opts.allow_http
    p = pull(parse_docker_ref(basic_reg.ref("private/app", "1")), tmp_path / "blobs", opts)
    assert len(p.layers) == 2


def test_token_auth(token_reg: Registry, tmp_path: Path) -> None:
    assert token_reg.token is not None
    ref = parse_docker_ref(token_reg.ref("private/app", "1"))
    before = len(token_reg.token.issued)
    p = pull(ref, tmp_path, _opts(token_reg, ("bob", "pa:ss")))
    assert len(p.layers) == 2 and p.downloaded == 3
    # one token for the whole pull, for exactly this repository
    assert token_reg.token.issued[before:] == [("bob", "repository:private/app:pull")]
    assert manifest_digest(ref, _opts(token_reg, ("bob", "pa:ss"))) == p.manifest_digest


def test_token_auth_anonymous(token_reg: Registry, tmp_path: Path) -> None:
    ref = parse_docker_ref(token_reg.ref("private/app", "1"))
    with pytest.raises(FetchError) as e:
        pull(ref, tmp_path, _opts(token_reg, None))
    assert e.value.message == (f'registry "{token_reg.host}" requires authentication for'
                               ' "private/app"')
    assert "dockerAuth" in (e.value.hint or "")


def test_token_auth_wrong_password(token_reg: Registry, tmp_path: Path) -> None:
    ref = parse_docker_ref(token_reg.ref("private/app", "1"))
    with pytest.raises(FetchError) as e:
        pull(ref, tmp_path, _opts(token_reg, ("bob", "nope")))
    assert e.value.message == (f'registry "{token_reg.host}" rejected the dockerAuth'
                               ' credentials of user "bob"')
