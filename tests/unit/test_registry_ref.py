"""docker:// references (docker2aci / distribution reference rules), platform selection from a
manifest list and WWW-Authenticate parsing: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from rktd_less.errors import UsageError
from rktd_less.fetch.registry import (
    DockerRef,
    parse_docker_ref,
    sanitize_ac_identifier,
    select_manifest,
)
from rktd_less.fetch.registry_auth import parse_challenge

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "registry", "repo", "tag", "digest"), [
    ("docker://busybox", "registry-1.docker.io", "library/busybox", "latest", None),
    ("docker:busybox", "registry-1.docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "registry-1.docker.io", "library/busybox", "1.36", None),
    ("docker://library/redis:3.2", "registry-1.docker.io", "library/redis", "3.2", None),
    ("docker://user/app", "registry-1.docker.io", "user/app", "latest", None),
    ("docker://docker.io/busybox", "registry-1.docker.io", "library/busybox", "latest", None),
    ("docker://index.docker.io/u/a", "registry-1.docker.io", "u/a", "latest", None),
    ("docker://registry-1.docker.io/nginx", "registry-1.docker.io", "library/nginx", "latest",
     None),
    ("docker://quay.io/coreos/etcd:v3.5.0", "quay.io", "coreos/etcd", "v3.5.0", None),
    ("docker://quay.io/etcd", "quay.io", "etcd", "latest", None),
    ("docker://127.0.0.1:5000/busybox", "127.0.0.1:5000", "busybox", "latest", None),
    ("docker://localhost/a/b/c:t", "localhost", "a/b/c", "t", None),
    ("docker://localhost:5000/a", "localhost:5000", "a", "latest", None),
    ("docker://registry.example:5000/busybox:musl", "registry.example:5000", "busybox", "musl",
     None),
    ("docker://Registry.Example/x", "Registry.Example", "x", "latest", None),
    ("docker://foo/bar.baz_qux--x__y", "registry-1.docker.io", "foo/bar.baz_qux--x__y",
     "latest", None),
    (f"docker://busybox@{D}", "registry-1.docker.io", "library/busybox", None, D),
    (f"docker://h.io:1/a:t@{D}", "h.io:1", "a", "t", D),
])
def test_parse(text: str, registry: str, repo: str, tag: str | None,
               digest: str | None) -> None:
    assert parse_docker_ref(text) == DockerRef(registry, repo, tag, digest)


@pytest.mark.parametrize(("text", "why"), [
    ("docker://", "empty name"),
    ("docker://Busybox", "lowercase"),
    ("docker://foo/Bar", "lowercase"),
    ("docker://busybox:", "invalid tag"),
    ("docker://busybox:-x", "invalid tag"),
    ("docker://busybox:" + "x" * 129, "invalid tag"),
    ("docker://busybox@sha256:abc", "invalid digest"),
    ("docker://busybox@sha512:" + "a" * 128, "unsupported digest algorithm"),
    ("docker://busybox@sha256:" + "A" * 64, "64 lower-case hex"),
    ("docker://a//b", "invalid repository name"),
    ("docker://a/b/", "invalid repository name"),
    ("docker://-a", "invalid repository name"),
    ("docker://a b", "invalid repository name"),
    ("docker://bad_host.io:x/a", "invalid"),
    ("docker://quay.io/", "empty repository name"),
    ("docker://" + "a" * 64, "64-byte hexadecimal"),
    ("docker://" + "a/" * 130 + "b", "longer than 255"),
])
def test_parse_errors(text: str, why: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_docker_ref(text)
    assert why in e.value.message and text in e.value.message
    assert e.value.hint and "docker://" in e.value.hint


def test_names() -> None:
    r = parse_docker_ref("docker://busybox")
    assert (r.appc_name, r.display, str(r)) == (
        "registry-1.docker.io/library/busybox", "registry-1.docker.io/library/busybox:latest",
        "registry-1.docker.io/library/busybox:latest")
    r = parse_docker_ref("docker://127.0.0.1:5000/my/App_x:1.0".replace("App", "app"))
    assert r.appc_name == "127.0.0.1_5000/my/app_x"
    assert r.display == "127.0.0.1_5000/my/app_x:1.0"
    assert str(r) == "127.0.0.1:5000/my/app_x:1.0" and r.reference == "1.0"
    r = parse_docker_ref(f"docker://Reg.Example:8443/a@{D}")
    assert r.appc_name == "reg.example_8443/a" and r.display == f"reg.example_8443/a@{D}"
    assert r.reference == D
    assert sanitize_ac_identifier("-A~b:c/") == "a~b_c"
    with pytest.raises(UsageError):
        sanitize_ac_identifier("::")


def _m(arch: str, variant: str | None = None, os: str = "linux") -> dict[str, Any]:
    p = {"os": os, "architecture": arch} | ({"variant": variant} if variant else {})
    return {"digest": f"{os}/{arch}/{variant}", "platform": p}


def _pick(lst: list[dict[str, Any]], arch: str, variant: str | None = None) -> str | None:
    m = select_manifest(lst, "linux", arch, variant)
    return None if m is None else str(m["digest"])


def test_select_manifest() -> None:
    lst = [_m("arm", "v6"), _m("arm", "v7"), _m("arm64", "v8"), _m("amd64"),
           _m("amd64", os="windows"),
           {"digest": "attestation", "platform": {"os": "unknown", "architecture": "unknown"}}]
    assert _pick(lst, "amd64") == "linux/amd64/None"
    assert _pick(lst, "arm64") == "linux/arm64/v8"
    assert _pick(lst, "arm", "v7") == "linux/arm/v7"
    assert _pick(lst, "arm") == "linux/arm/v6"
    assert _pick(lst, "arm", "v5") is None
    assert _pick(lst, "s390x") is None
    assert _pick([_m("arm64")], "arm64") == "linux/arm64/None"
    assert _pick([_m("arm64", "v9"), _m("arm64")], "arm64") == "linux/arm64/None"
    assert _pick([_m("arm64")], "arm64", "v8") == "linux/arm64/None"
    assert select_manifest("junk", "linux", "amd64") is None
    assert select_manifest(["junk", {"platform": "x"}], "linux", "amd64") is None


def test_parse_challenge() -> None:
    assert parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
                           ',scope="repository:library/busybox:pull,push"') == (
        "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                   "scope": "repository:library/busybox:pull,push"})
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert parse_challenge('bearer Realm=http://x/t, error="a \\"q\\""') == (
        "bearer", {"realm": "http://x/t", "error": 'a "q"'})
    assert parse_challenge("") == ("", {})
