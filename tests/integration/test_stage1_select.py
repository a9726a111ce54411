"""Stage1 selection as rkt's (issue 11): the --stage1-* flags, stage1.d and paths.d, `rkt config`.
A stage1 is an ordinary ACI in the store, found by its entrypoint annotations."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from rktd_less.pod.stage1select import PACKAGE_IMAGES_DIR
from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, sh

SHIPPED = PACKAGE_IMAGES_DIR / "stage1-nspawn.aci"


@pytest.fixture(scope="module")
def app(env: Rkt) -> Path:
    path = build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0")
    env("--insecure-options=image", "fetch", str(path))  # in the store: no signature needed
    return path


APP_NAME = "example.com/busybox:1.0"


def repack(src: Path, dest: Path, name: str, version: str) -> Path:
    """A copy of the shipped stage1 under another name and version."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for m in tin:
            data = tin.extractfile(m) if m.isfile() else None
            if m.name == "manifest":
                assert data is not None
                man = json.loads(data.read())
                man["name"] = name
                man["labels"] = [lb for lb in man["labels"] if lb["name"] != "version"]
                man["labels"].append({"name": "version", "value": version})
                raw = json.dumps(man).encode()
                m.size = len(raw)
                data = io.BytesIO(raw)
            tout.addfile(m, data)
    return dest


def pod_stage1_name(env: Rkt, uuid: str) -> str:
    [pod] = [p for p in (env.data / "pods").glob(f"*/{uuid}")]
    return str(json.loads((pod / "stage1" / "manifest").read_text())["name"])


def run_echo(env: Rkt, app: Path, *flags: str, check: bool = True,
             global_flags: tuple[str, ...] = ()) -> tuple[str, str, int]:
    uf = env.uuid_file()
    cp = env(*global_flags, "--insecure-options=image", "run", f"--uuid-file-save={uf}", *flags,
             str(app), "--exec", "/bin/echo", "--", "stage1-ok", check=check)
    uuid = uf.read_text() if uf.exists() else ""
    return uuid, cp.stdout + cp.stderr, cp.returncode


def refused(env: Rkt, app: Path, *flags: str, global_flags: tuple[str, ...] = ()) -> str:
    before = env.pod_files()
    cp = env(*global_flags, "run", *flags, APP_NAME, "--exec", "/bin/true", check=False)
    assert cp.returncode == 254, cp
    assert "Traceback" not in cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    assert env.pod_files() == before
    return cp.stderr.strip()


def test_default_is_the_shipped_image(env: Rkt, app: Path) -> None:
    uuid, out, _ = run_echo(env, app)
    assert "stage1-ok" in out
    assert pod_stage1_name(env, uuid) == "rktd-less/stage1-nspawn"


def test_stage1_path_verified_unless_insecure(env: Rkt, app: Path) -> None:
    custom = repack(SHIPPED, env.work / "custom-path.aci", "example.com/s1-path", "1")
    # outside the stage1 images directory: a signature is needed, as for any image
    msg = refused(env, app, f"--stage1-path={custom}")
    assert "failed to fetch stage1 image (--stage1-path=" in msg and "signature" in msg
    uuid, out, _ = run_echo(env, app, f"--stage1-path={custom}")
    assert "stage1-ok" in out
    assert pod_stage1_name(env, uuid) == "example.com/s1-path"


def test_stage1_from_dir_hash_name_url(env: Rkt, app: Path) -> None:
    uuid, out, _ = run_echo(env, app, "--stage1-from-dir=stage1-nspawn.aci")
    assert "stage1-ok" in out and pod_stage1_name(env, uuid) == "rktd-less/stage1-nspawn"
    custom = repack(SHIPPED, env.work / "custom-url.aci", "example.com/s1-url", "2")
    uuid, out, _ = run_echo(env, app, f"--stage1-url=file://{custom}")
    assert "stage1-ok" in out and pod_stage1_name(env, uuid) == "example.com/s1-url"
    listing = env("image", "list", "--no-legend", "--fields=id,name").stdout
    key = next(ln.split()[0] for ln in listing.splitlines() if "example.com/s1-url" in ln)
    uuid, out, _ = run_echo(env, app, f"--stage1-hash={key}")
    assert "stage1-ok" in out and pod_stage1_name(env, uuid) == "example.com/s1-url"
    uuid, out, _ = run_echo(env, app, "--stage1-name=example.com/s1-url:2")
    assert "stage1-ok" in out and pod_stage1_name(env, uuid) == "example.com/s1-url"


def test_prepare_takes_the_flags(env: Rkt, app: Path) -> None:
    custom = repack(SHIPPED, env.work / "custom-prep.aci", "example.com/s1-prep", "3")
    cp = env("--insecure-options=image", "prepare", "--quiet", f"--stage1-path={custom}",
             str(app), "--exec", "/bin/echo", "--", "prepared-ok")
    uuid = cp.stdout.strip()
    assert pod_stage1_name(env, uuid) == "example.com/s1-prep"
    cp = env("run-prepared", uuid)
    assert "prepared-ok" in cp.stdout


def test_bad_stage1_flags(env: Rkt, app: Path) -> None:
    assert refused(env, app, "--stage1-path=/a.aci", "--stage1-path=/b.aci") == \
        "run: --stage1-path already used"
    assert refused(env, app, "--stage1-hash=sha512-00", "--stage1-path=/a.aci") == \
        "run: flags --stage1-path and --stage1-hash are mutually exclusive"
    msg = refused(env, app, f"--stage1-path={env.work}/missing.aci",
                  global_flags=("--insecure-options=image",))
    assert "failed to fetch stage1 image" in msg and "not found" in msg
    msg = refused(env, app, "--stage1-from-dir=stage1-nope.aci")
    assert "stage1-nope.aci" in msg and "not found" in msg
    msg = refused(env, app, "--stage1-hash=sha512-0123456789ab")
    assert "failed to fetch stage1 image" in msg
    # a URL or name that leads nowhere (loopback only: nothing listens on port 9 / 443 here)
    msg = refused(env, app, "--stage1-url=https://127.0.0.1:9/stage1.aci")
    assert msg.startswith("run: failed to fetch stage1 image (--stage1-url=https://127.0.0.1:9/")
    msg = refused(env, app, "--stage1-url=file:///nonexistent/stage1.aci")
    assert "failed to fetch stage1 image" in msg and "not found" in msg
    msg = refused(env, app, "--stage1-name=localhost/no-such-stage1:1")
    assert msg.startswith("run: failed to fetch stage1 image (--stage1-name=localhost/")
    assert refused(env, app, "--stage1-url=stage1.aci") == \
        'run: failed to fetch stage1 image (--stage1-url=stage1.aci): "stage1.aci" is not a ' \
        "URL (use --stage1-path for a file)"
    # an ordinary image is no stage1: it has no entrypoint annotations
    msg = refused(env, app, f"--stage1-path={app}", global_flags=("--insecure-options=image",))
    assert "is not a stage1 image" in msg and "coreos.com/rkt/stage1/run" in msg


def write_conf(base: Path, sub: str, name: str, doc: object) -> Path:
    (base / sub).mkdir(parents=True, exist_ok=True)
    path = base / sub / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_stage1_d_default(env: Rkt, app: Path) -> None:
    custom = repack(SHIPPED, env.work / "custom-conf.aci", "example.com/s1-conf", "4")
    conf = write_conf(env.local_config, "stage1.d", "50-default.json", {
        "rktKind": "stage1", "rktVersion": "v1", "name": "example.com/s1-conf",
        "version": "4", "location": str(custom)})
    try:
        uuid, out, _ = run_echo(env, app)
        assert "stage1-ok" in out and pod_stage1_name(env, uuid) == "example.com/s1-conf"
        cfg = json.loads(env("config").stdout)
        assert {"rktVersion": "v1", "rktKind": "stage1", "name": "example.com/s1-conf",
                "version": "4", "location": str(custom)} in cfg["stage0"]
        # now in the store by name:version: found there first, as rkt does
        custom.unlink()
        uuid, out, _ = run_echo(env, app)
        assert pod_stage1_name(env, uuid) == "example.com/s1-conf"
        # a flag overrides the configuration
        uuid, out, _ = run_echo(env, app, "--stage1-from-dir=stage1-nspawn.aci")
        assert pod_stage1_name(env, uuid) == "rktd-less/stage1-nspawn"
    finally:
        conf.unlink()


def test_paths_d(env: Rkt, app: Path) -> None:
    images = env.work / "images"
    images.mkdir()
    repack(SHIPPED, images / "stage1-nspawn.aci", "example.com/s1-dir", "5")
    data2 = env.work / "data2"
    conf = write_conf(env.local_config, "paths.d", "50-paths.json", {
        "rktKind": "paths", "rktVersion": "v1", "data": str(data2),
        "stage1-images": str(images)})
    try:
        # the default stage1 comes from the configured images directory, trusted as shipped
        uuid, out, _ = run_echo(env, app)
        assert "stage1-ok" in out and pod_stage1_name(env, uuid) == "example.com/s1-dir"
        # without --dir, the configured data directory is used
        argv = [a for a in env.argv("--insecure-options=image", "fetch", str(app))
                if not a.startswith("--dir=")]
        key = sh(*argv).stdout.strip()
        assert key.startswith("sha512-")
        assert (data2 / "cas" / "db").is_dir()
        assert list((data2 / "cas" / "imageManifest").rglob(key + "*"))
        cfg = json.loads(env("config", "--pretty-print=false").stdout)
        assert {"rktVersion": "v1", "rktKind": "paths", "data": str(data2),
                "stage1-images": str(images)} in cfg["stage0"]
    finally:
        conf.unlink()
        shutil.rmtree(data2, ignore_errors=True)


@pytest.mark.parametrize(("sub", "doc", "message"), [
    ("stage1.d", {"rktKind": "stage1", "rktVersion": "v1", "name": "example.com/x"},
     "default stage1 image name specified, but version is missing"),
    ("stage1.d", {"rktKind": "stage1", "rktVersion": "v1", "location": "relative/x.aci"},
     "either a relative path or a URL without scheme"),
    ("stage1.d", {"rktKind": "stage1", "rktVersion": "v1", "location": "ftp://x/y.aci"},
     'invalid scheme "ftp"'),
    ("stage1.d", {"rktKind": "paths", "rktVersion": "v1"}, 'unknown rktKind "paths"'),
    ("paths.d", {"rktKind": "paths", "rktVersion": "v1", "data": "var/lib/x"},
     "data directory must be an absolute path"),
    ("paths.d", "{not json", "not JSON"),
    ("paths.d", {"rktKind": "paths", "rktVersion": "v2"}, 'unsupported rktVersion "v2"'),
])
def test_malformed_config(env: Rkt, app: Path, sub: str, doc: object, message: str) -> None:
    conf = write_conf(env.local_config, sub, "99-bad.json", doc)
    try:
        msg = refused(env, app, global_flags=("--insecure-options=image",))
        assert message in msg and str(conf) in msg
        cp = env("config", check=False)
        assert cp.returncode == 254 and message in cp.stderr
    finally:
        conf.unlink()
