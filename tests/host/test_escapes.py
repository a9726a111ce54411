"""Escape attempts as root inside a pod run where no systemd manager is reachable (this very
machine): the defaults deny all of them, as under systemd (tests/integration/test_escapes.py).
Harmless markers only: tests/helpers/escapes.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.escapes import assert_all_denied, attempt_all, describe
from tests.helpers.probe import probe_aci_for
from tests.integration.rktenv import Rkt


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return probe_aci_for(env.work, glibc=False)


def test_defaults_deny_every_attempt(env: Rkt, aci: Path) -> None:
    assert_all_denied(attempt_all(env, aci))


def test_insecure_paths_lifts_the_device_policy(env: Rkt, aci: Path) -> None:
    """A device node mknod'ed in the pod (/dev/net/tun, opened and closed at once) opens only
    when DevicePolicy=closed is switched off. (This machine refuses its own block device even
    to its root, with EPERM, so the disk is never the proof.)"""
    r = attempt_all(env, aci, "--insecure-options=image,paths")
    d = describe(r)
    assert r["open-chardev"] == "ok" and r["open-write-core_pattern"] == "ok", d
    for op in ("mount-cgroup", "fsopen", "unshare-user", "ptrace", "mount-tmpfs"):
        assert r[op] != "ok", d
