"""The HTTP layer against a real HTTPS server on 127.0.0.1: TLS, plain HTTP, redirects, sizes,
resumable downloads, ETag/304, Cache-Control, deferred signatures and the progress bar."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rktd_less.config import ConfigDirs, Insecure
from rktd_less.errors import FetchError
from rktd_less.fetch.http import HttpOptions, download, get_bytes, options_from
from rktd_less.fetch.http_options import parse_max_age
from rktd_less.fetch.progress import Progress, format_bytes, render_line
from rktd_less.fetch.resume import partial_path, sidecar_path
from tests.helpers.https_server import CertFiles, Server, make_certs, serve

BLOB = bytes(range(256)) * 4096  # 1 MiB, every offset distinguishable


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def srv(certs: CertFiles) -> Iterator[Server]:
    with serve(certs) as s:
        s.files["/app.aci"] = BLOB
        yield s


@pytest.fixture
def opts(certs: CertFiles) -> HttpOptions:
    return HttpOptions(ca_file=str(certs.ca_file))


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- TLS and schemes -----------------------------------------------------------------------
def test_get_bytes_with_the_test_ca(srv: Server, opts: HttpOptions) -> None:
    assert get_bytes(srv.url("/app.aci"), opts, len(BLOB)) == BLOB


def test_untrusted_certificate_is_one_line_naming_host(srv: Server) -> None:
    with pytest.raises(FetchError) as ei:
        get_bytes(srv.url("/app.aci"), HttpOptions(), 1 << 21)
    e = ei.value
    assert f"TLS certificate of {srv.host} not accepted" in e.message
    assert "\n" not in e.message
    assert e.hint is not None and "--insecure-options=tls" in e.hint
    assert srv.requests == []


def test_insecure_tls_accepts_any_certificate(srv: Server) -> None:
    assert get_bytes(srv.url("/app.aci"), HttpOptions(insecure_tls=True), 1 << 21) == BLOB


def test_ssl_cert_file_env_is_honoured(srv: Server, certs: CertFiles,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
    assert get_bytes(srv.url("/app.aci"), HttpOptions(), 1 << 21) == BLOB


def test_plain_http_needs_allow_http() -> None:
    with serve() as s:
        s.files["/k.gpg"] = b"key"
        with pytest.raises(FetchError) as ei:
            get_bytes(s.url("/k.gpg"), HttpOptions(), 100)
        assert ei.value.message == f"refusing plain HTTP for {s.url('/k.gpg')}"
        assert ei.value.hint is not None and "--insecure-options=http" in ei.value.hint
        assert s.requests == []
        assert get_bytes(s.url("/k.gpg"), HttpOptions(allow_http=True), 100) == b"key"


def test_https_to_a_plain_http_port_says_so() -> None:
    with serve() as s, pytest.raises(FetchError) as ei:
        get_bytes(s.url("/x").replace("http://", "https://"), HttpOptions(), 100)
    assert f"TLS error talking to {s.host}" in ei.value.message
    assert ei.value.hint is not None and "plain HTTP" in ei.value.hint


def test_connection_refused(tmp_path: Path) -> None:
    with serve() as s:
        url = s.url("/x")
    with pytest.raises(FetchError, match=r"cannot connect to 127\.0\.0\.1:\d+"):
        get_bytes(url, HttpOptions(allow_http=True), 100)


# --- statuses, sizes, redirects --------------------------------------------------------------
def test_404_message(srv: Server, opts: HttpOptions) -> None:
    with pytest.raises(FetchError) as ei:
        get_bytes(srv.url("/missing.aci"), opts, 100)
    assert str(ei.value) == f"GET {srv.url('/missing.aci')}: 404 Not Found"


def test_get_bytes_size_cap(srv: Server, opts: HttpOptions) -> None:
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        get_bytes(srv.url("/app.aci"), opts, 1000)


def test_redirects_followed_relative_and_absolute(srv: Server, opts: HttpOptions,
                                                  certs: CertFiles) -> None:
    with serve(certs) as other:
        other.files["/real.aci"] = b"real"
        srv.redirects["/a"] = "/b"
        srv.redirects["/b"] = other.url("/real.aci")
        assert get_bytes(srv.url("/a"), opts, 100) == b"real"
        res = download(srv.url("/a"), partial_path(Path(str(certs.ca_file.parent)), "x"), opts)
        assert res.final_url == other.url("/real.aci")


def test_redirect_to_plain_http_refused(srv: Server, opts: HttpOptions) -> None:
    srv.redirects["/a"] = "http://127.0.0.1:9/x.aci"
    with pytest.raises(FetchError, match=r"refusing plain HTTP for http://127\.0\.0\.1:9/x\.aci"):
        get_bytes(srv.url("/a"), opts, 100)


def test_redirect_loop(srv: Server, opts: HttpOptions) -> None:
    srv.redirects["/a"] = "/b"
    srv.redirects["/b"] = "/a"
    with pytest.raises(FetchError, match="more than 10 redirects"):
        get_bytes(srv.url("/a"), opts, 100)


# --- downloads -------------------------------------------------------------------------------
def test_download_with_etag_and_max_age(srv: Server, opts: HttpOptions, tmp_path: Path) -> None:
    srv.cache_control["/app.aci"] = "public, max-age=3600"
    dest = tmp_path / "app.part"
    res = download(srv.url("/app.aci"), dest, opts)
    assert (res.status, res.etag, res.max_age, res.size) == (200, srv.etag("/app.aci"), 3600,
                                                             len(BLOB))
    assert dest.read_bytes() == BLOB and not sidecar_path(dest).exists()
    assert srv.requests[0].headers["accept-encoding"] == "identity"


def test_download_304_with_matching_etag(srv: Server, opts: HttpOptions, tmp_path: Path) -> None:
    dest = tmp_path / "app.part"
    res = download(srv.url("/app.aci"), dest, opts, etag=srv.etag("/app.aci"))
    assert res.status == 304 and res.etag == srv.etag("/app.aci")
    assert not dest.exists()
    assert srv.requests[-1].headers["if-none-match"] == srv.etag("/app.aci")
    res = download(srv.url("/app.aci"), dest, opts, etag='"stale"')
    assert res.status == 200 and dest.read_bytes() == BLOB


@pytest.mark.parametrize(("header", "want"), [
    (None, None), ("max-age=60", 60), ("public, MAX-AGE=600", 600), ("max-age=0", None),
    ("no-cache, max-age=60", 0), ("max-age=60, no-store", 0), ("max-age=abc", None),
    ('max-age="90"', 90), ("private", None),
])
def test_parse_max_age(header: str | None, want: int | None) -> None:
    assert parse_max_age(header) == want


def test_resume_after_truncation(srv: Server, opts: HttpOptions, tmp_path: Path) -> None:
    srv.truncate["/app.aci"] = 300_000
    dest = partial_path(tmp_path, srv.url("/app.aci"))
    with pytest.raises(FetchError) as ei:
        download(srv.url("/app.aci"), dest, opts)
    assert "connection closed" in ei.value.message
    assert ei.value.hint is not None and "resume" in ei.value.hint
    assert dest.stat().st_size == 300_000 and sidecar_path(dest).exists()
    res = download(srv.url("/app.aci"), dest, opts)
    assert res.status == 200 and res.resumed_from == 300_000 and res.size == len(BLOB)
    assert dest.read_bytes() == BLOB
    last = srv.requests[-1].headers
    assert last["range"] == "bytes=300000-" and last["if-range"] == srv.etag("/app.aci")
    assert not sidecar_path(dest).exists()


def test_resume_of_a_changed_resource_restarts(srv: Server, opts: HttpOptions,
                                               tmp_path: Path) -> None:
    srv.truncate["/app.aci"] = 100_000
    dest = tmp_path / "p"
    with pytest.raises(FetchError):
        download(srv.url("/app.aci"), dest, opts)
    srv.files["/app.aci"] = new = BLOB[::-1]
    res = download(srv.url("/app.aci"), dest, opts)
    assert res.resumed_from == 0 and dest.read_bytes() == new
    assert srv.requests[-1].headers["range"] == "bytes=100000-"  # asked, server said no


def test_resume_without_range_support_restarts(srv: Server, opts: HttpOptions,
                                               tmp_path: Path) -> None:
    srv.ranges = False
    srv.truncate["/app.aci"] = 100_000
    dest = tmp_path / "p"
    with pytest.raises(FetchError):
        download(srv.url("/app.aci"), dest, opts)
    res = download(srv.url("/app.aci"), dest, opts)
    assert res.resumed_from == 0 and dest.read_bytes() == BLOB


def test_resume_uses_last_modified_without_etag(srv: Server, opts: HttpOptions,
                                                tmp_path: Path) -> None:
    srv.no_etag.add("/app.aci")
    srv.truncate["/app.aci"] = 5000
    dest = tmp_path / "p"
    with pytest.raises(FetchError):
        download(srv.url("/app.aci"), dest, opts)
    res = download(srv.url("/app.aci"), dest, opts)
    assert res.resumed_from == 5000 and dest.read_bytes() == BLOB
    assert srv.requests[-1].headers["if-range"].endswith("GMT")


def test_partial_without_sidecar_is_not_trusted(srv: Server, opts: HttpOptions,
                                                tmp_path: Path) -> None:
    dest = tmp_path / "p"
    dest.write_bytes(b"garbage from somewhere else")
    res = download(srv.url("/app.aci"), dest, opts)
    assert res.resumed_from == 0 and dest.read_bytes() == BLOB
    assert "range" not in srv.requests[-1].headers


def test_partial_of_another_url_is_not_resumed(srv: Server, opts: HttpOptions,
                                               tmp_path: Path) -> None:
    srv.files["/other.aci"] = b"o" * 1000
    srv.truncate["/other.aci"] = 10
    dest = tmp_path / "p"
    with pytest.raises(FetchError):
        download(srv.url("/other.aci"), dest, opts)
    res = download(srv.url("/app.aci"), dest, opts)
    assert res.resumed_from == 0 and dest.read_bytes() == BLOB


def test_oversized_partial_gets_416_then_restarts(srv: Server, opts: HttpOptions,
                                                  tmp_path: Path) -> None:
    srv.files["/small.aci"] = b"small"
    srv.truncate["/small.aci"] = 2
    dest = tmp_path / "p"
    with pytest.raises(FetchError):
        download(srv.url("/small.aci"), dest, opts)
    dest.write_bytes(b"much longer than the resource")
    res = download(srv.url("/small.aci"), dest, opts)
    assert res.status == 200 and dest.read_bytes() == b"small"


def test_download_size_limit_removes_partial(srv: Server, opts: HttpOptions,
                                             tmp_path: Path) -> None:
    dest = tmp_path / "p"
    with pytest.raises(FetchError, match="limit of 1000"):
        download(srv.url("/app.aci"), dest, opts, max_bytes=1000)
    assert not dest.exists() and not sidecar_path(dest).exists()


def test_download_404(srv: Server, opts: HttpOptions, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as ei:
        download(srv.url("/nope.aci"), tmp_path / "p", opts)
    assert ei.value.message == f"GET {srv.url('/nope.aci')}: 404 Not Found"


def test_deferred_signature(srv: Server, opts: HttpOptions, tmp_path: Path) -> None:
    srv.files["/app.aci.asc"] = b"sig"
    srv.statuses["/app.aci.asc"] = [202]
    with pytest.raises(FetchError, match="202 Accepted: not ready yet"):
        download(srv.url("/app.aci.asc"), tmp_path / "s", opts)
    srv.statuses["/app.aci.asc"] = [202, 202]
    with pytest.raises(FetchError, match="202 Accepted"):
        download(srv.url("/app.aci.asc"), tmp_path / "s", opts, deferred_retry=0.01)
    srv.statuses["/app.aci.asc"] = [202]
    res = download(srv.url("/app.aci.asc"), tmp_path / "s", opts, deferred_retry=0.01)
    assert res.status == 200 and (tmp_path / "s").read_bytes() == b"sig"


# --- progress ----------------------------------------------------------------------------------
def test_progress_bar_on_a_tty(srv: Server, certs: CertFiles, tmp_path: Path) -> None:
    tty = FakeTty()
    o = HttpOptions(ca_file=str(certs.ca_file), progress=True)
    download(srv.url("/app.aci"), tmp_path / "p", o, stream=tty)
    out = tty.getvalue()
    assert out.startswith("\rDownloading ACI: [") and out.endswith("\n")
    final = out.rstrip("\n").split("\r")[-1].rstrip()
    assert final.endswith("] 1.05 MB/1.05 MB") and "[" + "=" * 10 in final
    assert len(final) <= 80


def test_no_progress_when_not_a_tty(srv: Server, certs: CertFiles, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    o = options_from(Insecure(frozenset()), ConfigDirs(tmp_path, tmp_path, None))
    assert o.progress is False
    download(srv.url("/app.aci"), tmp_path / "p", HttpOptions(ca_file=str(certs.ca_file)))
    assert pipe.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", FakeTty())
    assert options_from(Insecure(frozenset()), ConfigDirs(tmp_path, tmp_path, None)).progress


def test_progress_format() -> None:
    assert format_bytes(2_650_000) == "2.65 MB"
    assert format_bytes(3_700_000) == "3.7 MB"
    assert format_bytes(999) == "999 B"
    assert format_bytes(1_000) == "1 KB"
    line = render_line("Downloading ACI", 2_650_000, 3_700_000)
    assert line.startswith("Downloading ACI: [=") and line.endswith("] 2.65 MB/3.7 MB")
    assert ">" in line and render_line("Downloading ACI", 0, 10).index("]") == line.index("]")
    done = render_line("Downloading ACI", 3_700_000, 3_700_000)
    assert ">" not in done and " ]" not in done
    assert render_line("Downloading ACI", 5, None) == \
        "Downloading ACI: 5 B of an unknown total size"


def test_progress_redraws_in_place_and_ends_with_newline() -> None:
    tty = FakeTty()
    p = Progress("Downloading signature", 100, tty, interval=0)
    p.update(50)
    p.update(50)
    p.finish()
    frames = tty.getvalue().split("\r")[1:]
    assert len(frames) == 4 and frames[-1].endswith("100 B/100 B\n")


def test_options_from_maps_insecure_flags(tmp_path: Path) -> None:
    dirs = ConfigDirs(tmp_path / "s", tmp_path / "l", None)
    o = options_from(Insecure.parse(["tls,http"]), dirs, progress=False)
    assert o.insecure_tls and o.allow_http and not o.progress and o.auth == {}
    o = options_from(Insecure.parse(["image"]), dirs)
    assert not o.insecure_tls and not o.allow_http


def test_no_proxy_for_loopback(srv: Server, opts: HttpOptions,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert get_bytes(srv.url("/app.aci"), opts, 1 << 21) == BLOB
    assert os.environ["https_proxy"]


def test_download_size_limit_from_content_length(srv: Server, opts: HttpOptions,
                                                 tmp_path: Path) -> None:
    srv.truncate["/app.aci"] = 10
    dest = tmp_path / "p"
    with pytest.raises(FetchError):
        download(srv.url("/app.aci"), dest, opts)
    with pytest.raises(FetchError, match=f"{len(BLOB)} bytes is more than the limit"):
        download(srv.url("/app.aci"), dest, opts, max_bytes=1000)
    assert not dest.exists() and not sidecar_path(dest).exists()
