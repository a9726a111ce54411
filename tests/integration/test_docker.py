"""docker:// images end to end: a real Debian docker-registry on 127.0.0.1, images pushed with
skopeo, fetched, converted and run in pods."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

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
from tests.integration.rktenv import Rkt, destroy, new_env

pytestmark = pytest.mark.integration
APPLETS = ("sh", "echo", "cat", "ls", "true", "test")


def busybox_layer() -> Layer:
    bb = Path("/bin/busybox").read_bytes()
    return Layer([directory("bin"), file("bin/busybox", bb, 0o755),
                  *[symlink(f"bin/{a}", "busybox") for a in APPLETS],
                  directory("etc"), file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")])


BUSYBOX = Image([busybox_layer()], entrypoint=["/bin/echo"], cmd=["hello", "docker"])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture
def env() -> Iterator[Rkt]:
    e = new_env("docker")
    yield e
    destroy(e)


INSECURE = "--insecure-options=image,http"


def test_fetch_and_run_a_docker_image(env: Rkt, registry: Registry) -> None:
    registry.push(BUSYBOX, "library/busybox", "latest")
    url = f"docker://{registry.host}/library/busybox:latest"
    cp = env("fetch", INSECURE, url)
    assert re.fullmatch(r"sha512-[0-9a-f]{32}\n", cp.stdout), cp
    listing = env("image", "list", "--no-legend").stdout
    assert "library/busybox:latest" in listing, listing
    assert env("run", INSECURE, url).stdout == "hello docker\n"
    # args after -- replace nothing: they are appended to Entrypoint+Cmd, as in rkt
    assert env("run", INSECURE, url, "--exec", "/bin/echo", "--", "x").stdout == "x\n"


def test_second_fetch_downloads_nothing_new(env: Rkt, registry: Registry) -> None:
    registry.push(BUSYBOX, "library/cached", "v1")
    url = f"docker://{registry.host}/library/cached:v1"
    first = env("fetch", INSECURE, url).stdout
    n = len(registry.blob_downloads())
    assert env("fetch", INSECURE, url).stdout == first
    assert len(registry.blob_downloads()) == n


def test_docker_needs_insecure_image(env: Rkt, registry: Registry) -> None:
    registry.push(BUSYBOX, "library/busybox", "latest")
    cp = env("fetch", "--insecure-options=http", f"docker://{registry.host}/library/busybox",
             check=False)
    assert cp.returncode == 254 and "--insecure-options=image" in cp.stderr, cp.stderr
    assert len(cp.stderr.splitlines()) == 1


def test_layers_whiteouts_hardlinks_and_config(env: Rkt, registry: Registry) -> None:
    base = busybox_layer()
    lower = Layer([directory("data"), file("data/keep", "keep\n"), file("data/gone", "x\n"),
                   directory("opq"), file("opq/old", "old\n"), file("orig", "linked\n", 0o640)])
    upper = Layer([whiteout("data/gone"), opaque("opq"), file("opq/new", "new\n"),
                   hardlink("link", "orig")])
    img = Image([base, lower, upper], entrypoint=["/bin/sh", "-c"],
                cmd=["ls /data /opq; cat /link; echo $GREETING; pwd"],
                env=["GREETING=hi", "PATH=/bin"], working_dir="/data",
                volumes=["/data"], exposed_ports=["80/tcp"])
    registry.push(img, "team/layers", "1.0")
    url = f"docker://{registry.host}/team/layers:1.0"
    out = env("run", INSECURE, url).stdout.split()
    assert out == ["/data:", "keep", "/opq:", "new", "linked", "hi", "/data"], out
    m = json.loads(env("image", "cat-manifest", env("fetch", INSECURE, url).stdout.strip())
                   .stdout)
    assert {"name": "version", "value": "1.0"} in m["labels"]
    assert m["app"]["ports"] == [{"name": "80-tcp", "protocol": "tcp", "port": 80,
                                  "count": 1, "socketActivated": False}]
    assert m["app"]["mountPoints"][0]["path"] == "/data"
    ann = {a["name"]: a["value"] for a in m["annotations"]}
    assert ann["appc.io/docker/repository"].endswith("team/layers")


def test_by_digest(env: Rkt, registry: Registry) -> None:
    digest = registry.push(BUSYBOX, "library/pinned", "v1")
    url = f"docker://{registry.host}/library/pinned@{digest}"
    assert env("run", INSECURE, url).stdout == "hello docker\n"


def _leftovers(env: Rkt) -> list[Path]:
    cas = env.data / "cas"
    return [p for sub in ("blob", "tmp") for p in (cas / sub).rglob("*")
            if p.is_file()] if cas.exists() else []


def test_unknown_repo_tag_and_registry(env: Rkt, registry: Registry) -> None:
    for ref in (f"{registry.host}/nope/nope:latest", f"{registry.host}/library/busybox:nosuch",
                "127.0.0.1:1/library/busybox"):
        cp = env("fetch", INSECURE, f"docker://{ref}", check=False)
        assert cp.returncode == 254, cp.stderr
        assert len(cp.stderr.splitlines()) == 1, cp.stderr
        assert ("not found" in cp.stderr) or ref.startswith("127.0.0.1:1/"), cp.stderr
    assert _leftovers(env) == []


def test_tls_and_basic_auth(env: Rkt, tmp_path: Path) -> None:
    with run_registry(tmp_path / "reg", tls=True, htpasswd=("ann", "s3cret")) as reg:
        reg.push(BUSYBOX, "private/app", "latest")
        assert reg.certs is not None
        env.extra_env = {**os.environ, "SSL_CERT_FILE": str(reg.certs.ca_file)}
        url = f"docker://{reg.host}/private/app"
        cp = env("fetch", "--insecure-options=image", url, check=False)
        assert cp.returncode == 254 and "dockerAuth" in cp.stderr, cp.stderr
        (env.local_config / "auth.d").mkdir(parents=True)
        (env.local_config / "auth.d" / "docker.json").write_text(json.dumps(
            {"rktKind": "dockerAuth", "rktVersion": "v1", "registries": [reg.host],
             "credentials": {"user": "ann", "password": "s3cret"}}))
        assert env("run", "--insecure-options=image", url).stdout == "hello docker\n"
