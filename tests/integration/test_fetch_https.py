"""Image distribution end to end: trust, appc discovery over HTTPS, signatures verified by
default, caching and resume, against a real HTTPS server on 127.0.0.1:443 inside the test bed's
own network namespace, with keys made by real gpg."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.helpers.gpg import session_keys
from tests.helpers.https_server import CertFiles, Server, discovery_html, make_certs, serve
from tests.integration.rktenv import Rkt, destroy, new_env

pytestmark = pytest.mark.integration
TEMPLATE = "https://localhost/images/{name}-{version}-{os}-{arch}.{ext}"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def server(certs: CertFiles) -> Iterator[Server]:
    with serve(certs, port=443) as s:
        yield s


@pytest.fixture
def env(certs: CertFiles) -> Iterator[Rkt]:
    e = new_env("fetch")
    e.extra_env = {**os.environ, "SSL_CERT_FILE": str(certs.ca_file)}
    yield e
    destroy(e)


def publish(server: Server, env: Rkt, name: str, version: str, *, key: str | None = "alice",
            deps: list[dict[str, object]] | None = None, prefixes: tuple[str, ...] = ()
            ) -> Path:
    """Serve an image of ``name`` (e.g. localhost/hello) for discovery, signed by ``key``."""
    short = name.split("/", 1)[1]
    extra = {"dependencies": deps} if deps else None
    aci = build_aci(env.work / f"{short.replace('/', '-')}-{version}.aci", name=name,
                    version=version, exec_=("/bin/echo", f"hello from {name}"),
                    manifest_extra=extra, compress="gzip")
    base = f"/images/{name}-{version}-linux-amd64.aci"
    server.files[base] = aci.read_bytes()
    if key is not None:
        server.files[base + ".asc"] = getattr(session_keys(), key).sign(aci).read_bytes()
    page = discovery_html(aci=[(p, TEMPLATE) for p in (*prefixes, name)],
                          pubkeys=[(name, "https://localhost/pubkeys.gpg")])
    server.files["/" + short] = page
    server.files["/pubkeys.gpg"] = session_keys().alice.armored
    return aci


def trust_alice(env: Rkt, server: Server, prefix: str) -> None:
    server.files["/alice.gpg"] = session_keys().alice.armored
    cp = env("trust", "--skip-fingerprint-review", f"--prefix={prefix}",
             "https://localhost/alice.gpg")
    fpr = session_keys().alice.fingerprint
    assert f'Added key for prefix "{prefix}"' in cp.stdout
    assert (env.local_config / "trustedkeys" / "prefix.d" / prefix / fpr).is_file()
    assert fpr in cp.stdout.replace(" ", "").lower()


def _store_blobs(env: Rkt) -> list[str]:
    root = env.data / "cas" / "blob"
    return sorted(str(p) for p in root.rglob("sha512-*")) if root.exists() else []


def test_trust_then_fetch_and_run_by_name(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0")
    trust_alice(env, server, "localhost/hello")
    cp = env("fetch", "localhost/hello:1.0")
    assert re.fullmatch(r"sha512-[0-9a-f]{32}\n", cp.stdout), cp
    assert cp.stderr == ""  # no progress bar when stderr is not a terminal
    assert server.seen("/hello")[0].query == "ac-discovery=1"
    listing = env("image", "list", "--no-legend").stdout
    assert "localhost/hello:1.0" in listing
    out = env("run", "localhost/hello:1.0").stdout
    assert out == "hello from localhost/hello\n"


def test_run_fetches_a_missing_image_by_name(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "2.0")
    trust_alice(env, server, "localhost/hello")
    assert env("run", "localhost/hello:2.0").stdout == "hello from localhost/hello\n"


@pytest.mark.parametrize(("signer", "trusted_for", "needle"), [
    (None, "localhost/hello", "signature"),
    ("stranger", "localhost/hello", "not trusted"),
    ("bob", "localhost/other", "no keys trusted"),
])
def test_bad_signatures_are_refused(env: Rkt, server: Server, signer: str | None,
                                    trusted_for: str, needle: str) -> None:
    publish(server, env, "localhost/hello", "1.0", key=signer)
    trust_alice(env, server, trusted_for)
    cp = env("fetch", "localhost/hello:1.0", check=False)
    assert cp.returncode == 254, cp
    assert len(cp.stderr.splitlines()) == 1 and needle in cp.stderr, cp.stderr
    assert _store_blobs(env) == []
    assert not [p for p in (env.data / "cas" / "tmp").glob("*") if p.is_file()]


def test_insecure_image_skips_only_verification(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0", key=None)
    cp = env("fetch", "--insecure-options=image", "localhost/hello:1.0")
    assert cp.stdout.startswith("sha512-")


def test_tls_errors_and_insecure_tls(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0", key=None)
    plain = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
    cp = env("fetch", "--insecure-options=image", "localhost/hello:1.0", check=False,
             env=plain)
    assert cp.returncode == 254 and "--insecure-options=tls" in cp.stderr, cp.stderr
    assert len(cp.stderr.splitlines()) == 1
    cp = env("fetch", "--insecure-options=image,tls", "localhost/hello:1.0", env=plain)
    assert cp.stdout.startswith("sha512-")


def test_direct_url_cache_and_etag(env: Rkt, server: Server) -> None:
    aci = publish(server, env, "localhost/hello", "1.0")
    trust_alice(env, server, "localhost/hello")
    url = "https://localhost/images/localhost/hello-1.0-linux-amd64.aci"
    first = env("fetch", url).stdout
    assert server.seen(url[len("https://localhost"):])
    again = env("fetch", "--pull-policy=update", url).stdout
    assert again == first
    last = server.seen("/images/localhost/hello-1.0-linux-amd64.aci")[-1]
    assert last.headers.get("if-none-match") == server.etag(
        "/images/localhost/hello-1.0-linux-amd64.aci")
    assert aci.exists()


def test_interrupted_download_resumes(env: Rkt, server: Server) -> None:
    aci = publish(server, env, "localhost/hello", "1.0")
    trust_alice(env, server, "localhost/hello")
    path = "/images/localhost/hello-1.0-linux-amd64.aci"
    server.truncate[path] = aci.stat().st_size // 2
    cp = env("fetch", "localhost/hello:1.0", check=False)
    assert cp.returncode == 254 and len(cp.stderr.splitlines()) == 1, cp.stderr
    assert _store_blobs(env) == []
    cp = env("fetch", "localhost/hello:1.0")
    assert cp.stdout.startswith("sha512-")
    ranges = [r.headers.get("range") for r in server.seen(path)]
    assert ranges[-1] == f"bytes={aci.stat().st_size // 2}-", ranges


def test_discovery_failures(env: Rkt, server: Server) -> None:
    server.files["/nothing"] = discovery_html()
    cp = env("fetch", "localhost/nothing:1.0", check=False)
    assert cp.returncode == 254 and "discovery failed" in cp.stderr, cp.stderr
    server.files["/broken"] = b"<html><head><meta name='ac-discovery' content=<<<"
    cp = env("fetch", "localhost/broken:1.0", check=False)
    assert cp.returncode == 254 and len(cp.stderr.splitlines()) == 1, cp.stderr


def test_dependencies_are_fetched_and_verified(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/base", "1.0")
    publish(server, env, "localhost/app", "1.0",
            deps=[{"imageName": "localhost/base", "labels": [{"name": "version",
                                                              "value": "1.0"}]}])
    trust_alice(env, server, "localhost")
    env("fetch", "localhost/app:1.0")
    names = env("image", "list", "--no-legend").stdout
    assert "localhost/base:1.0" in names and "localhost/app:1.0" in names


def test_trust_keys_from_https_on_first_use(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0")
    cp = env("--trust-keys-from-https", "fetch", "localhost/hello:1.0")
    assert re.fullmatch(r"sha512-[0-9a-f]{32}\n", cp.stdout)
    assert 'Trusting "https://localhost/pubkeys.gpg" for prefix "localhost/hello" without ' \
        "fingerprint review." in cp.stderr, cp.stderr
    assert "gpg key fingerprint is: " in cp.stderr
    stored = list(env.local_config.rglob(session_keys().alice.fingerprint))
    assert stored, "the discovered key was not stored"
    m = json.loads(env("image", "cat-manifest", "localhost/hello:1.0").stdout)
    assert m["name"] == "localhost/hello"


def test_progress_bars_on_a_terminal(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0")
    trust_alice(env, server, "localhost/hello")
    master, slave = pty.openpty()
    try:
        cp = subprocess.run(env.argv("fetch", "localhost/hello:1.0"), stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, env=env.extra_env,
                            timeout=60, check=False)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    err = b"".join(chunks).decode(errors="replace")
    assert cp.returncode == 0, err
    assert re.search(r"Downloading ACI: \[=*[> ]*\] +[\d.]+ [kKM]?B/[\d.]+ [kKM]?B", err), err
    assert "Downloading signature" in err
    assert cp.stdout.decode().startswith("sha512-")


def test_cache_control_max_age_skips_the_network(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0")
    trust_alice(env, server, "localhost/hello")
    path = "/images/localhost/hello-1.0-linux-amd64.aci"
    server.cache_control[path] = "max-age=3600"
    url = "https://localhost" + path
    first = env("fetch", url).stdout
    n = len(server.seen(path))
    assert env("fetch", "--pull-policy=update", url).stdout == first
    assert len(server.seen(path)) == n  # still fresh: not asked again


def test_missing_image_and_missing_signature_404(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0", key=None)
    trust_alice(env, server, "localhost/hello")
    cp = env("fetch", "https://localhost/images/nope.aci", check=False)
    assert cp.returncode == 254 and "404" in cp.stderr and len(cp.stderr.splitlines()) == 1
    cp = env("fetch", "localhost/hello:1.0", check=False)
    assert cp.returncode == 254 and "signature" in cp.stderr, cp.stderr
    assert _store_blobs(env) == []


def test_trust_discovers_the_key(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0")
    cp = env("trust", "--prefix=localhost/hello", "--skip-fingerprint-review")
    assert 'Added key for prefix "localhost/hello"' in cp.stdout, cp
    assert server.seen("/pubkeys.gpg")
    assert env("fetch", "localhost/hello:1.0").stdout.startswith("sha512-")


def _on_a_terminal(argv: list[str], env: dict[str, str] | None, answer: bytes) -> tuple[int, str]:
    """Run argv with stdin/stdout/stderr on a pty, answer the first prompt, return its output."""
    import select
    import time

    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                         start_new_session=True)
    os.close(slave)
    out, answered = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
            if not answered and b"(yes/no)" in out:
                os.write(master, answer)
                answered = True
        elif p.poll() is not None:
            break
    os.close(master)
    return p.wait(timeout=10), out.decode(errors="replace")


@pytest.mark.parametrize(("answer", "trusted"), [(b"yes\n", True), (b"no\n", False)])
def test_trust_prompt_on_a_terminal(env: Rkt, server: Server, answer: bytes,
                                    trusted: bool) -> None:
    server.files["/alice.gpg"] = session_keys().alice.armored
    code, out = _on_a_terminal(env.argv("trust", "--prefix=localhost/hello",
                                        "https://localhost/alice.gpg"), env.extra_env, answer)
    assert "gpg key fingerprint is: " in out and "Alice Example" in out, out
    assert "Are you sure you want to trust this key (yes/no)?" in out
    stored = list(env.local_config.rglob(session_keys().alice.fingerprint))
    if trusted:
        assert code == 0 and "after fingerprint review" in out and stored, out
    else:
        # rkt: declining is not an error; the key is just not added
        assert not stored and code == 0 and 'not trusting "https://localhost/alice.gpg"' in out


def test_insecure_pubkey_allows_keys_over_http(env: Rkt, server: Server) -> None:
    publish(server, env, "localhost/hello", "1.0")
    with serve(None) as plain:
        plain.files["/pubkeys.gpg"] = session_keys().alice.armored
        server.files["/hello"] = discovery_html(
            aci=[("localhost/hello", TEMPLATE)],
            pubkeys=[("localhost/hello", plain.url("/pubkeys.gpg"))])
        cp = env("--trust-keys-from-https", "fetch", "localhost/hello:1.0", check=False)
        assert cp.returncode == 254 and "not trusting" in cp.stderr, cp.stderr
        assert not plain.seen("/pubkeys.gpg")
        cp = env("--trust-keys-from-https", "fetch", "--insecure-options=pubkey",
                 "localhost/hello:1.0")
        assert cp.stdout.startswith("sha512-") and plain.seen("/pubkeys.gpg")


@pytest.mark.parametrize("kind", ["basic", "oauth"])
def test_auth_from_auth_d(env: Rkt, server: Server, kind: str) -> None:
    import base64

    publish(server, env, "localhost/hello", "1.0")
    trust_alice(env, server, "localhost/hello")
    path = "/images/localhost/hello-1.0-linux-amd64.aci"
    if kind == "basic":
        creds = {"user": "ann", "password": "s3cret"}
        server.require_auth[path] = "Basic " + base64.b64encode(b"ann:s3cret").decode()
    else:
        creds = {"token": "tok-123"}
        server.require_auth[path] = "Bearer tok-123"
    cp = env("fetch", "localhost/hello:1.0", check=False)
    assert cp.returncode == 254 and "401" in cp.stderr, cp.stderr
    (env.local_config / "auth.d").mkdir(parents=True)
    (env.local_config / "auth.d" / "test.json").write_text(json.dumps(
        {"rktKind": "auth", "rktVersion": "v1", "domains": ["localhost"], "type": kind,
         "credentials": creds}))
    assert env("fetch", "localhost/hello:1.0").stdout.startswith("sha512-")
