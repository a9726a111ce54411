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
