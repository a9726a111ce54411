"""rkt's --no-overlay (the images copied into the pod) and --private-users (the pod's root is an
unprivileged range of the machine's IDs, rkt's only way to it: with --no-overlay)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.probe import probe_aci_for
from tests.integration.rktenv import Rkt, sh, wait_file

INSECURE = "--insecure-options=image"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return probe_aci_for(env.work, glibc=False)



def test_no_overlay_copies_and_runs(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    cp = env("run", INSECURE, "--no-overlay", f"--uuid-file-save={uf}", str(aci), "--name=app",
             "--exec", "/bin/sh", "--", "-c", "echo hi > /written; cat /proc/self/uid_map; "
             "exit 3", check=False)
    assert cp.returncode == 3, cp  # the app's exit status is read from the copy
    assert cp.stdout.split() == ["0", "0", "4294967295"], cp  # no user namespace
    uuid = uf.read_text().strip()
    pod = next((env.data / "pods").rglob(uuid))
    assert not (pod / "overlay-prepared").exists() and not (pod / "overlay").exists()
    copy = pod / "stage1/rootfs/opt/stage2/app/rootfs"
    assert (copy / "written").read_text() == "hi\n"  # the app wrote into its own copy
    assert "app=3" in env("status", uuid).stdout.replace("app-", "")
    out = env.work / "exported.aci"
    env("export", uuid, str(out))
    import tarfile

    with tarfile.open(out) as tar:
        written = tar.extractfile("rootfs/written")
        assert written is not None and written.read() == b"hi\n"
    env("rm", uuid)


def test_private_users_maps_the_pods_root(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    p = env.popen("run", INSECURE, "--no-overlay", "--private-users", f"--uuid-file-save={uf}",
                  str(aci), "--name=app", "--exec", "/bin/sh", "--", "-c",
                  "cat /proc/self/uid_map; id -u; /probe chown /etc/probe-file; "
                  "echo mine > /tmp/mine; exec sleep 600")
    uuid = wait_file(uf)
    try:
        assert "state=running" in env("status", "--wait-ready=30s", uuid).stdout
        pod = next((env.data / "pods").rglob(uuid))
        shift, count = (int(x) for x in (pod / "private-users-prepared").read_text().split(":"))
        assert count == 65536 and shift % 65536 == 0 and 0 < shift < 2**31
        # the pod's root is the range's first ID on the machine
        leader = sh("machinectl", "show", "-p", "Leader", "--value", f"rkt-{uuid}").stdout.strip()
        assert os.stat(f"/proc/{leader}").st_uid == shift
        # the pod's files are seen through an idmapped mount (nspawn
        # --private-users-ownership=map): on disk they keep the image's owners, and what the
        # pod's root writes is root's on disk, never a host ID outside the range in the pod
        mine = pod / "stage1/rootfs/opt/stage2/app/rootfs/tmp/mine"
        assert wait_file(mine) == "mine" and mine.stat().st_uid == 0
        # the app's chown to 1:1 of an image file lands as 1:1 on disk, through the mapping
        assert (pod / "stage1/rootfs/opt/stage2/app/rootfs/etc/probe-file").stat().st_uid == 1
    finally:
        env("stop", "--force", uuid, check=False)
        out, _ = p.communicate(timeout=30)
    lines = out.split("\n")
    assert lines[0].split() == ["0", str(shift), "65536"], out
    assert lines[1] == "0" and lines[2] == "chown: ok", out


def test_private_users_needs_no_overlay(env: Rkt, aci: Path) -> None:
    before = env.pod_files()
    cp = env("run", INSECURE, "--private-users", str(aci), check=False)
    assert cp.returncode == 254, cp
    assert "cannot use both overlay and user namespace" in cp.stderr and "--no-overlay" in (
        cp.stderr), cp
    assert len(cp.stderr.strip().splitlines()) == 1 and env.pod_files() == before


def test_prepared_private_users_pod_runs_later(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    env("prepare", INSECURE, "--no-overlay", "--private-users", f"--uuid-file-save={uf}",
        str(aci), "--exec", "/bin/sh", "--", "-c", "cat /proc/self/uid_map")
    uuid = uf.read_text().strip()
    cp = env("run-prepared", uuid)
    assert cp.stdout.split()[0] == "0" and cp.stdout.split()[1] != "0", cp
    pm = json.loads(env("cat-manifest", uuid).stdout)
    assert pm["apps"][0]["name"] == "probe"
