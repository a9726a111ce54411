"""appc discovery over HTTPS against a real server on 127.0.0.1: templates, walk-up, redirects,
plain-HTTP fallback, clear failures, and pubkey discovery for ``rkt trust``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rktd_less.cli.context import Context
from rktd_less.config import ConfigDirs, Insecure
from rktd_less.errors import FetchError
from rktd_less.fetch import http
from rktd_less.fetch.discovery import (
    Endpoints,
    discover,
    discover_pubkeys,
    discover_pubkeys_with,
    discovery_url,
)
from rktd_less.fetch.http import HttpOptions
from rktd_less.paths import Paths
from tests.helpers.https_server import CertFiles, Server, discovery_html, make_certs, serve

LINUX = {"os": "linux", "arch": "amd64"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def srv(certs: CertFiles) -> Iterator[Server]:
    with serve(certs) as s:
        yield s


@pytest.fixture
def opts(srv: Server, certs: CertFiles) -> HttpOptions:
    # Names without a port ("localhost/..."): the port is rkt's discovery knob.
    return HttpOptions(ca_file=str(certs.ca_file), discovery_port=srv.port)


def _ctx(tmp_path: Path, insecure: str = "") -> Context:
    return Context(verb="trust", paths=Paths.from_dir(tmp_path / "data"),
                   config=ConfigDirs(tmp_path / "sys", tmp_path / "etc", None),
                   insecure=Insecure.parse([insecure] if insecure else []), debug=False,
                   trust_keys_from_https=False)


def test_discovery_url() -> None:
    assert discovery_url("example.com/app") == "https://example.com/app?ac-discovery=1"
    assert discovery_url("example.com") == "https://example.com?ac-discovery=1"
    assert discovery_url("h/a/b", "http", 81) == "http://h:81/a/b?ac-discovery=1"


def test_discover_renders_first_matching_template(srv: Server, opts: HttpOptions) -> None:
    base = f"https://localhost:{srv.port}"
    srv.files["/example/app"] = discovery_html(
        aci=[("localhost/other", base + "/wrong/{name}.{ext}"),
             ("localhost/example", base + "/{os}/{arch}/{name}-{version}.{ext}"),
             ("localhost/example/app", base + "/second/{name}.{ext}")],
        pubkeys=[("localhost/example", base + "/pubkeys.gpg")])
    ep = discover("localhost/example/app", {**LINUX, "version": "1.0"}, opts)
    assert ep == Endpoints(base + "/linux/amd64/localhost/example/app-1.0.aci",
                           base + "/linux/amd64/localhost/example/app-1.0.aci.asc",
                           [base + "/pubkeys.gpg"])
    (req,) = srv.requests
    assert (req.path, req.query) == ("/example/app", "ac-discovery=1")


def test_walks_up_on_404_and_on_pages_without_a_matching_tag(srv: Server,
                                                             opts: HttpOptions) -> None:
    srv.files["/a/b"] = discovery_html(aci=[("localhost/zzz", "https://x/{name}.{ext}")])
    srv.files["/"] = discovery_html(aci=[("localhost/a", "https://img/{name}.{ext}")])
    ep = discover("localhost/a/b/c", LINUX, opts)
    assert ep.aci_url == "https://img/localhost/a/b/c.aci" and ep.pubkeys == []
    assert [r.path for r in srv.requests] == ["/a/b/c", "/a/b", "/a", "/"]


def test_follows_redirects(srv: Server, opts: HttpOptions) -> None:
    srv.redirects["/app"] = "/pages/discovery.html"
    srv.files["/pages/discovery.html"] = discovery_html(
        aci=[("localhost/app", "https://img/{name}.{ext}")])
    assert discover("localhost/app", LINUX, opts).sig_url == "https://img/localhost/app.aci.asc"


def test_name_with_port_needs_no_knob(srv: Server, certs: CertFiles) -> None:
    name = f"127.0.0.1:{srv.port}/app"
    srv.files["/app"] = discovery_html(aci=[(name, "https://img/{version}.{ext}")])
    ep = discover(name, LINUX, HttpOptions(ca_file=str(certs.ca_file)))
    assert ep.aci_url == "https://img/latest.aci"


def test_nothing_found_is_one_clear_line(srv: Server, opts: HttpOptions) -> None:
    srv.files["/app"] = b"<html><head><title>no tags</title></head></html>"
    with pytest.raises(FetchError) as ei:
        discover("localhost/app", LINUX, opts)
    msg = ei.value.message
    assert msg.startswith('discovery failed for "localhost/app": no ac-discovery meta tag found')
    assert f"https://localhost:{srv.port}/app?ac-discovery=1: no tag for this name" in msg
    assert "404 Not Found" in msg and "\n" not in msg


def test_missing_labels_are_named(srv: Server, opts: HttpOptions) -> None:
    srv.files["/app"] = discovery_html(aci=[("localhost", "https://i/{name}-{os}.{ext}")])
    with pytest.raises(FetchError, match=r"templates need labels \{os\}"):
        discover("localhost/app", {}, opts)


def test_tls_failure_stops_the_walk(srv: Server) -> None:
    with pytest.raises(FetchError) as ei:
        discover("localhost/a/b/c", LINUX, HttpOptions(discovery_port=srv.port))
    assert ei.value.message.startswith('discovery failed for "localhost/a/b/c": TLS certificate')
    assert ei.value.hint is not None and "--insecure-options=tls" in ei.value.hint


def test_plain_http_only_when_allowed() -> None:
    with serve() as s:
        s.files["/app"] = discovery_html(aci=[("localhost", "http://img/{name}.{ext}")])
        with pytest.raises(FetchError) as ei:
            discover("localhost/app", LINUX, HttpOptions(discovery_port=s.port))
        assert "TLS error" in ei.value.message
        ep = discover("localhost/app", LINUX,
                      HttpOptions(discovery_port=s.port, allow_http=True))
        assert ep.aci_url == "http://img/localhost/app.aci"


def test_discover_pubkeys_with_options(srv: Server, opts: HttpOptions) -> None:
    srv.files["/"] = discovery_html(pubkeys=[("localhost", "https://k/1.gpg"),
                                             ("localhost/app", "https://k/2.gpg")])
    assert discover_pubkeys_with("localhost/app/x", opts) == ["https://k/1.gpg",
                                                              "https://k/2.gpg"]
    srv.files["/"] = discovery_html(pubkeys=[("localhost/app", "https://k/2.gpg")])
    with pytest.raises(FetchError, match="no ac-discovery-pubkeys meta tag found"):
        discover_pubkeys_with("localhost/lib", opts)


def test_ctx_entry_points_for_trust(srv: Server, certs: CertFiles, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # the trust module calls these with a CLI Context; the test CA comes from SSL_CERT_FILE
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
    prefix = f"localhost:{srv.port}/app"
    key_url = f"https://localhost:{srv.port}/keys/app.gpg"
    srv.files["/app"] = discovery_html(pubkeys=[(prefix, key_url)])
    srv.files["/keys/app.gpg"] = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n"
    ctx = _ctx(tmp_path)
    assert discover_pubkeys(prefix, ctx) == [key_url]
    assert http.get_bytes(key_url, ctx, 1 << 20) == srv.files["/keys/app.gpg"]


def test_ctx_insecure_options_apply(tmp_path: Path) -> None:
    with serve() as s:
        s.files["/k.gpg"] = b"key"
        with pytest.raises(FetchError, match="refusing plain HTTP"):
            http.get_bytes(s.url("/k.gpg"), _ctx(tmp_path), 100)
        assert http.get_bytes(s.url("/k.gpg"), _ctx(tmp_path, "http"), 100) == b"key"
