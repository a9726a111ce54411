"""`rkt image verify` checks the rendered trees of an image and renders again one that changed
(rkt's TestImageVerify), without pulling a tree from under a pod: a prepared pod starts on the
repaired tree, a running pod keeps the one it runs over until it is gone."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, wait_file, wait_for

pytestmark = pytest.mark.integration
INSECURE = "--insecure-options=image"
REPORT = "cat /etc/verify-me; if [ -e /tamper-marker ]; then echo tampered; else echo clean; fi"


@pytest.fixture(scope="module")
def key(env: Rkt) -> str:
    aci = build_aci(env.work / "verify.aci", name="example.com/verify", version="1.0",
                    files={"etc/verify-me": b"original\n"}, exec_=("/bin/sh", "-c", REPORT))
    return env("fetch", "--full", INSECURE, str(aci)).stdout.strip()


def _tree_of(env: Rkt, uuid: str) -> str:
    [f] = env.data.glob(f"pods/*/{uuid}/appsinfo/*/treeStoreID")
    return f.read_text().strip()


def _old_copies(env: Rkt, tid: str) -> list[Path]:
    return sorted((env.data / "cas" / "tree").glob(f".tmp-{tid}-*"))


def _tamper(env: Rkt, tid: str) -> Path:
    marker = env.data / "cas" / "tree" / tid / "rootfs" / "tamper-marker"
    marker.write_text("x\n")
    return marker


def _ok(key: str) -> str:
    return f'successfully verified checksum for image: "{key}" ("{key}")'


def test_verify_repairs_a_tampered_tree_and_a_prepared_pod_gets_it(env: Rkt, key: str) -> None:
    uuid = env("prepare", INSECURE, key).stdout.strip().splitlines()[-1]
    tid = _tree_of(env, uuid)
    marker = _tamper(env, tid)
    cp = env("image", "verify", key)
    lines = cp.stdout.splitlines()
    # never verified before: compared with a fresh render of the image, which replaces it
    assert lines[0].startswith(f'tree cache verification failed for image {key}: tree "{tid}": '
                               "wrong tree hash: sha256-"), cp.stdout
    assert lines[0].endswith("; rebuilding..."), cp.stdout
    assert lines[1].startswith(f'the old copy of tree "{tid}" stays for the pods'), cp.stdout
    assert lines[2:] == [_ok(key)] and cp.stderr == ""
    assert not marker.exists()
    [old] = _old_copies(env, tid)  # the prepared pod names the tree
    assert (old / "rootfs" / "tamper-marker").exists()
    # repaired: verifies clean now, and the prepared pod starts on the repaired tree
    assert env("image", "verify", key).stdout.splitlines() == [_ok(key)]
    assert env("run-prepared", uuid).stdout == "original\nclean\n"
    # once no pod names the tree, image gc takes it with its old copy
    env("gc", "--grace-period=0s")
    cp = env("image", "gc")
    assert f'removed treestore "{tid}"' in cp.stderr
    assert _old_copies(env, tid) == [] and not (env.data / "cas" / "tree" / tid).exists()


@pytest.fixture
def sleeper(env: Rkt, key: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A running pod of the image; its `rkt run`."""
    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", key, "--exec", "/bin/sh", "--",
                  "-c", "echo started; exec sleep 600")
    try:
        uuid = wait_file(uf)
        assert "state=running" in env("status", "--wait-ready=30s", uuid).stdout
        yield uuid, p
    finally:
        if p.poll() is None:
            env("stop", "--force", wait_file(uf), check=False)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def test_rebuilding_a_tree_a_running_pod_uses_keeps_the_pod_whole(
        env: Rkt, key: str, sleeper: tuple[str, subprocess.Popen[str]]) -> None:
    uuid, run = sleeper
    tid = _tree_of(env, uuid)
    env("image", "verify", key)  # records the tree's hash
    marker = _tamper(env, tid)
    cp = env("image", "verify", key)
    lines = cp.stdout.splitlines()
    assert lines[0].startswith(f'tree cache verification failed for image {key}: tree "{tid}": '
                               "wrong tree hash: sha256-"), cp.stdout
    assert "stays for the pods that use it" in lines[1] and lines[2] == _ok(key), cp.stdout
    assert not marker.exists()
    [old] = _old_copies(env, tid)
    # the pod runs on over the tree it started with (the marker included), unbroken
    assert "state=running" in env("status", uuid).stdout
    assert env("enter", uuid, "/bin/sh", "-c", REPORT).stdout == "original\ntampered\n"
    assert env("enter", uuid, "/bin/busybox", "true").returncode == 0
    # a new pod gets the repaired tree
    assert env("run", INSECURE, key).stdout == "original\nclean\n"
    env("stop", uuid)
    run.wait(timeout=30)
    assert wait_for(lambda: "state=exited" in env("status", uuid).stdout, 10)
    env("gc", "--grace-period=0s")
    env("image", "gc")
    assert _old_copies(env, tid) == [] and not old.exists()
