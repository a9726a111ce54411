"""Half-made and damaged pods are cleaned up by `rkt gc` / `rkt rm`: an embryo a dead stage0
left, an aborted prepare, a pod dir with its manifest and stage1 gone, and a pod dir with a mount
still on it (rkt #2878: never "device or resource busy"); and rm of a running pod is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, destroy, new_env, sh, wait_file

INSECURE = "--insecure-options=image"


@pytest.fixture
def env() -> Iterator[Rkt]:
    e = new_env("halfmade")
    yield e
    destroy(e)


@pytest.fixture
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0",
                     exec_=("/bin/true",))


def _pods(env: Rkt) -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in (env.data / "pods").glob("*/*"))


def _mounts_under(path: Path) -> list[str]:
    return [ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
            if ln.split()[4].startswith(str(path))]


def test_gc_cleans_up_half_made_and_damaged_pods(env: Rkt, aci: Path) -> None:
    pods = env.data / "pods"
    # an embryo whose stage0 died before locking it, a minute ago
    kept = env("prepare", INSECURE, "--quiet", str(aci)).stdout.strip()  # not expired: stays
    embryo = pods / "embryo" / str(uuidlib.uuid4())
    embryo.mkdir(parents=True)
    old = time.time() - 120
    os.utime(embryo, (old, old))
    # a fresh embryo (being created right now) is left alone
    fresh = pods / "embryo" / str(uuidlib.uuid4())
    fresh.mkdir()
    # an aborted prepare: a prepared pod moved back into prepare/, half its files gone
    aborted = env("prepare", INSECURE, "--quiet", str(aci)).stdout.strip()
    (pods / "prepared" / aborted).rename(pods / "prepare" / aborted)
    shutil.rmtree(pods / "prepare" / aborted / "appsinfo")
    # an exited pod whose manifest and stage1 are gone
    uf = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci))
    broken = uf.read_text()
    (pods / "run" / broken / "pod").unlink()
    shutil.rmtree(pods / "run" / broken / "stage1")
    (pods / "run" / broken / "stage1TreeStoreID").unlink()
    # an exited pod with a mount left on its stage1 rootfs (e.g. a crash of an older rkt)
    uf2 = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf2}", str(aci))
    mounted = uf2.read_text()
    target = pods / "run" / mounted / "stage1" / "rootfs"
    sh("mount", "-t", "tmpfs", "tmpfs", str(target))
    (target / "busy").write_text("x")
    fd = os.open(target / "busy", os.O_RDONLY)  # keep it busy: a plain umount would fail
    try:
        listed = env("list", "--no-legend").stdout
        assert broken[:8] in listed and aborted[:8] in listed

        cp = env("gc", "--grace-period=0s")
        err = cp.stderr
        assert f'moving failed prepare "{embryo.name}" to garbage' in err, err
        assert f'moving failed prepare "{aborted}" to garbage' in err, err
        assert f'moving pod "{broken}" to garbage' in err, err
        assert f'moving pod "{mounted}" to garbage' in err, err
        for u in (embryo.name, aborted, broken, mounted):
            assert f'Garbage collecting pod "{u}"' in cp.stdout, cp.stdout
        assert "busy" not in err
        assert _pods(env) == [f"embryo/{fresh.name}", f"prepared/{kept}"]
        assert _mounts_under(pods) == []
    finally:
        os.close(fd)
        for mp in _mounts_under(pods):
            subprocess.run(["umount", "-l", mp], check=False)


def test_rm_of_half_made_pods_and_of_a_running_pod(env: Rkt, aci: Path) -> None:
    pods = env.data / "pods"
    aborted = env("prepare", INSECURE, "--quiet", str(aci)).stdout.strip()
    (pods / "prepared" / aborted).rename(pods / "prepare" / aborted)
    cp = env("rm", aborted)
    assert f'moving failed prepare "{aborted}" to garbage' in cp.stderr
    assert cp.stdout.strip() == f'"{aborted}"'
    embryo = pods / "embryo" / str(uuidlib.uuid4())
    embryo.mkdir()
    old = time.time() - 120
    os.utime(embryo, (old, old))
    assert env("rm", embryo.name).stdout.strip() == f'"{embryo.name}"'
    assert _pods(env) == []

    uf = env.uuid_file()
    sleeper = build_aci(env.work / "sleeper.aci", name="example.com/sleeper",
                        exec_=("/bin/sleep", "600"))
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", str(sleeper))
    try:
        uuid = wait_file(uf)
        assert "state=running" in env("status", "--wait-ready=30s", uuid).stdout
        before = _pods(env)
        cp = env("rm", uuid, check=False)
        assert cp.returncode == 254
        assert cp.stderr.strip() == f'rm: pod "{uuid}" is currently running'
        assert _pods(env) == before
        env("stop", uuid)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            env("stop", "--force", uuid, check=False)
            p.wait(timeout=30)
