"""rkt parity items from rkt's own functional tests: --mds-register accepted, the deprecated
--store-only/--no-store, /etc/mtab in every app."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.probe import probe_aci_for
from tests.integration.rktenv import Rkt

INSECURE = "--insecure-options=image"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return probe_aci_for(env.work, glibc=False)


def test_mds_register_is_accepted(env: Rkt, aci: Path) -> None:
    for flag in ("--mds-register=false", "--mds-register"):
        cp = env("run", INSECURE, flag, str(aci), "--exec", "/bin/echo", "--", "ok")
        assert cp.stdout == "ok\n", cp


def test_store_only_and_no_store(env: Rkt, aci: Path) -> None:
    key = env("fetch", INSECURE, str(aci)).stdout.strip()
    assert env("run", INSECURE, "--store-only", key, "--exec", "/bin/true").returncode == 0
    assert env("run", INSECURE, "--no-store", str(aci), "--exec", "/bin/true").returncode == 0
    cp = env("run", INSECURE, "--store-only", "--no-store", str(aci), check=False)
    assert cp.returncode == 254 and "both --store-only and --no-store specified" in cp.stderr
    # --store-only never fetches: an image that is not in the store is an error
    cp = env("run", INSECURE, "--store-only", "example.com/not-here:1.0", check=False)
    assert cp.returncode == 254, cp


def test_every_app_has_etc_mtab(env: Rkt, aci: Path) -> None:
    cp = env("run", INSECURE, str(aci), "--exec", "/bin/sh", "--", "-c",
             "readlink /etc/mtab; grep -c ' / ' /etc/mtab")
    lines = cp.stdout.split()
    assert lines[0] == "../proc/self/mounts" and int(lines[1]) >= 1, cp


@pytest.mark.parametrize(("kw", "message"), [
    ({"manifest_extra": {"labels": [{"name": "version", "value": "1.0"}]}},
     "missing os label in the image manifest"),
    ({"manifest_extra": {"labels": [{"name": "os", "value": "linux"}]}},
     "missing arch label in the image manifest"),
    ({"arch": "sparc"}, 'bad arch "sparc" for linux'),
    ({"arch": "ppc64le"}, "is for linux/ppc64le, this machine is linux/"),
])
def test_os_arch_checked_at_run(env: Rkt, kw: dict[str, object], message: str) -> None:
    from tests.helpers.aci import build_aci

    img = build_aci(env.work / "osarch.aci", name="example.com/osarch", **kw)  # type: ignore[arg-type]
    pods = env.pod_files()
    cp = env("run", INSECURE, str(img), "--exec", "/bin/true", check=False)
    assert cp.returncode == 254 and message in cp.stderr, cp
    assert len(cp.stderr.strip().splitlines()) == 1
    assert env.pod_files() == pods


def test_enter_waits_for_a_starting_pod(env: Rkt, aci: Path) -> None:
    """rkt's pid_file test: enter right after the UUID is known, before the pod is up."""
    from tests.integration.rktenv import wait_file

    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh",
                  "--", "-c", "exec sleep 600")
    try:
        uuid = wait_file(uf)
        cp = env("enter", uuid, "/bin/echo", "entered")
        assert cp.stdout == "entered\n", cp
    finally:
        env("stop", "--force", uf.read_text().strip(), check=False)
        p.communicate(timeout=30)
    cp = env("enter", uf.read_text().strip(), "/bin/true", check=False)
    assert cp.returncode == 254 and "isn't currently running" in cp.stderr, cp


def test_uuid_file_on_status_stop_rm_cat_manifest(env: Rkt, aci: Path) -> None:
    import json

    from tests.integration.rktenv import wait_file

    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh",
                  "--", "-c", "exec sleep 600")
    uuid = wait_file(uf)
    try:
        st = env("status", f"--uuid-file={uf}", "--wait-ready=30s").stdout
        assert "state=running" in st, st
        pm = json.loads(env("cat-manifest", f"--uuid-file={uf}").stdout)
        assert pm["acKind"] == "PodManifest"
        env("stop", f"--uuid-file={uf}")
        p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            env("stop", "--force", uuid, check=False)
            p.communicate(timeout=30)
    assert "state=exited" in env("status", f"--uuid-file={uf}").stdout
    env("rm", f"--uuid-file={uf}")
    cp = env("status", uuid, check=False)
    assert cp.returncode == 254, cp


def test_mount_targets_through_symlinks_stay_in_the_rootfs(env: Rkt) -> None:
    import uuid as uuidlib

    from tests.helpers.aci import build_aci

    marker = f"rkt-escape-{uuidlib.uuid4().hex[:8]}"
    img = build_aci(env.work / "links.aci", name="example.com/links", files={
        "var/lib/keep": b"x"}, links={"data": "/var/lib", "up": "../../../../../var/tmp"})
    host = env.work / "vol"
    host.mkdir()
    (host / "hello").write_text("from the host\n")
    cp = env("run", INSECURE, "--volume=v,kind=host,source=" + str(host),
             "--volume=w,kind=empty", str(img),
             "--mount=volume=v,target=/data/v", f"--mount=volume=w,target=/up/{marker}",
             "--exec", "/bin/sh", "--", "-c",
             f"cat /var/lib/v/hello; ls -d /var/tmp/{marker}")
    assert cp.stdout.splitlines() == ["from the host", f"/var/tmp/{marker}"], cp
    assert not Path("/var/tmp", marker).exists()  # the image's link did not lead out


def test_overlay_disabled_where_the_data_dir_cannot_hold_an_upper_dir(env: Rkt) -> None:
    """rkt: `disabling overlay support: "…"`, then the images are copied into the pod. Here a
    data dir on the test bed's own root, an overlayfs (as in any container), where the kernel
    refuses an overlay upper dir."""
    import shutil
    import subprocess
    import tempfile

    from tests.helpers.aci import build_aci
    from tests.integration.rktenv import RKT

    root_fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "/"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert root_fs == "overlay", f"the test bed's root is {root_fs}"
    img = build_aci(env.work / "ovl.aci", name="example.com/ovl", version="1.0")
    data = Path(tempfile.mkdtemp(prefix="rkt-on-overlay-", dir="/var/tmp"))
    rkt = [RKT, f"--dir={data}", f"--local-config={env.local_config}",
           f"--system-config={env.system_config}", "--insecure-options=image"]
    try:
        cp = subprocess.run([*rkt, "run", str(img), "--exec", "/bin/echo", "--", "copied"],
                            capture_output=True, text=True, timeout=120, check=False)
        assert cp.returncode == 0, cp
        assert cp.stdout == "copied\n"
        assert cp.stderr == 'run: disabling overlay support: "unsupported filesystem: overlay"\n'
        [pod] = (data / "pods").glob("*/*")
        assert not (pod / "overlay-prepared").exists()  # the pod holds copies
    finally:
        subprocess.run([*rkt, "gc", "--grace-period=0s"], capture_output=True, check=False)
        shutil.rmtree(data, ignore_errors=True)
