"""auth.d: parsing and layering (config.load_auth), and headers sent to the configured host only,
also across redirects."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rktd_less.config import ConfigDirs, Insecure, load_auth
from rktd_less.errors import FetchError, UsageError
from rktd_less.fetch.http import HttpOptions, download, get_bytes, options_from
from tests.helpers.https_server import CertFiles, Server, make_certs, serve


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _write(directory: Path, name: str, doc: dict[str, Any]) -> None:
    (directory / "auth.d").mkdir(parents=True, exist_ok=True)
    (directory / "auth.d" / name).write_text(json.dumps(doc))


def _auth(domains: list[str], kind: str = "basic", **creds: str) -> dict[str, Any]:
    return {"rktKind": "auth", "rktVersion": "v1", "domains": domains, "type": kind,
            "credentials": creds}


@pytest.fixture
def dirs(tmp_path: Path) -> ConfigDirs:
    return ConfigDirs(tmp_path / "usr-lib-rkt", tmp_path / "etc-rkt", tmp_path / "home-rkt")


# --- parsing -----------------------------------------------------------------------------------
def test_no_config_means_no_auth(dirs: ConfigDirs) -> None:
    a = load_auth(dirs)
    assert a.headers == {} and a.unsupported == {} and a.docker == {}
    assert load_auth(ConfigDirs(dirs.system, dirs.local, None)).headers == {}


def test_basic_oauth_and_layering(dirs: ConfigDirs) -> None:
    _write(dirs.system, "10-a.json", _auth(["a.com", "b.com"], user="sys", password="p"))
    _write(dirs.local, "10-b.json", _auth(["b.com"], "oauth", token="tok"))
    assert dirs.user is not None
    _write(dirs.user, "x.json", _auth(["c.com:8443"], user="me", password="pw:with:colons"))
    (dirs.local / "auth.d" / "ignored.txt").write_text("not json")
    a = load_auth(dirs)
    assert a.headers == {"a.com": {"Authorization": _basic("sys", "p")},
                         "b.com": {"Authorization": "Bearer tok"},
                         "c.com:8443": {"Authorization": _basic("me", "pw:with:colons")}}


def test_docker_auth_and_aws(dirs: ConfigDirs) -> None:
    _write(dirs.local, "d.json", {"rktKind": "dockerAuth", "rktVersion": "v1",
                                  "registries": ["quay.io", "registry-1.docker.io"],
                                  "credentials": {"user": "u", "password": "p"}})
    _write(dirs.local, "s3.json", _auth(["s3.amazonaws.com"], "aws", accessKeyID="k",
                                        secretAccessKey="s"))
    a = load_auth(dirs)
    assert a.docker == {"quay.io": ("u", "p"), "registry-1.docker.io": ("u", "p")}
    assert a.unsupported == {"s3.amazonaws.com": "aws"} and a.headers == {}


@pytest.mark.parametrize(("doc", "needle"), [
    ({**_auth(["a.com"], user="u"), "rktVersion": "v2"}, "unsupported rktVersion"),
    ({**_auth(["a.com"], user="u"), "rktKind": "paths"}, "unknown rktKind"),
    (_auth(["a.com"], "digest", user="u"), "unknown auth type"),
    (_auth([], user="u"), '"domains" must be a non-empty list'),
    (_auth(["a.com"], "basic", password="p"), 'needs a non-empty string "user"'),
    (_auth(["a.com"], "oauth"), 'needs a non-empty string "token"'),
    ({**_auth(["a.com"], user="u"), "credentials": "u:p"}, '"credentials" must be an object'),
])
def test_invalid_files_are_usage_errors_naming_the_file(dirs: ConfigDirs, doc: dict[str, Any],
                                                       needle: str) -> None:
    _write(dirs.local, "bad.json", doc)
    with pytest.raises(UsageError) as ei:
        load_auth(dirs)
    assert needle in ei.value.message and "bad.json" in ei.value.message


def test_not_json(dirs: ConfigDirs) -> None:
    (dirs.local / "auth.d").mkdir(parents=True)
    (dirs.local / "auth.d" / "x.json").write_text("{nope")
    with pytest.raises(UsageError, match="not JSON"):
        load_auth(dirs)


def test_same_domain_twice_in_one_directory(dirs: ConfigDirs) -> None:
    _write(dirs.local, "1.json", _auth(["a.com"], user="u"))
    _write(dirs.local, "2.json", _auth(["a.com"], "oauth", token="t"))
    with pytest.raises(UsageError, match=r'auth for domain "a\.com" is already specified'):
        load_auth(dirs)



# --- on the wire -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def two(certs: CertFiles) -> Iterator[tuple[Server, Server]]:
    with serve(certs) as a, serve(certs) as b:
        yield a, b


def _opts(certs: CertFiles, dirs: ConfigDirs) -> HttpOptions:
    o = options_from(Insecure(frozenset()), dirs, progress=False)
    return HttpOptions(auth=o.auth, unsupported_auth=o.unsupported_auth,
                       ca_file=str(certs.ca_file))


def test_header_only_for_its_host_across_redirects(two: tuple[Server, Server],
                                                   certs: CertFiles, dirs: ConfigDirs,
                                                   tmp_path: Path) -> None:
    a, b = two
    _write(dirs.local, "a.json", _auth([a.host], user="alice", password="s3cret"))
    opts = _opts(certs, dirs)
    a.files["/img.aci"] = b"from a"
    a.require_auth["/img.aci"] = _basic("alice", "s3cret")
    b.files["/img.aci"] = b"from b"
    a.redirects["/to-b"] = b.url("/img.aci")
    b.redirects["/to-a"] = a.url("/img.aci")

    assert get_bytes(a.url("/img.aci"), opts, 100) == b"from a"
    assert get_bytes(a.url("/to-b"), opts, 100) == b"from b"
    assert download(b.url("/to-a"), tmp_path / "p", opts).path.read_bytes() == b"from a"

    assert all(r.headers.get("authorization") == _basic("alice", "s3cret") for r in a.requests)
    assert len(a.requests) == 3
    assert b.requests and all("authorization" not in r.headers for r in b.requests)


def test_missing_credentials_hint(two: tuple[Server, Server], certs: CertFiles,
                                  dirs: ConfigDirs) -> None:
    a, _ = two
    a.files["/img.aci"] = b"x"
    a.require_auth["/img.aci"] = _basic("alice", "s3cret")
    with pytest.raises(FetchError) as ei:
        get_bytes(a.url("/img.aci"), _opts(certs, dirs), 100)
    assert ei.value.message.endswith("401 Unauthorized")
    assert ei.value.hint is not None and "auth.d" in ei.value.hint


def test_host_without_port_matches_any_port(two: tuple[Server, Server], certs: CertFiles,
                                            dirs: ConfigDirs) -> None:
    a, _ = two
    _write(dirs.local, "l.json", _auth(["localhost"], "oauth", token="t"))
    a.files["/x"] = b"x"
    opts = _opts(certs, dirs)
    get_bytes(f"https://localhost:{a.port}/x", opts, 10)
    get_bytes(a.url("/x"), opts, 10)  # 127.0.0.1 is another host
    assert [r.headers.get("authorization") for r in a.requests] == ["Bearer t", None]


def test_unsupported_auth_type_is_reported(two: tuple[Server, Server], certs: CertFiles,
                                           dirs: ConfigDirs) -> None:
    a, _ = two
    _write(dirs.local, "s3.json", _auth([a.host], "aws", accessKeyID="k", secretAccessKey="s"))
    with pytest.raises(FetchError, match=r'auth type "aws" configured for .* is not supported'):
        get_bytes(a.url("/x"), _opts(certs, dirs), 10)
    assert a.requests == []
