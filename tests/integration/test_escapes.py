"""Escape attempts as root inside a pod run under systemd: all fail under the defaults, and each
--insecure-options switch re-opens only its own (harmless markers: tests/helpers/escapes.py)."""

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


def test_insecure_paths_reopens_only_paths(env: Rkt, aci: Path) -> None:
    r = attempt_all(env, aci, "--insecure-options=image,paths")
    d = describe(r)
    # /proc/sys is writable (only opened here, never written), DevicePolicy=closed is gone.
    # (The host's block device never opens on these machines: their root gets EPERM too.)
    assert r["open-write-core_pattern"] == "ok" and r["open-chardev"] == "ok", d
    assert r["read-kallsyms"] == "ok", d
    # capabilities and the filter still hold
    for op in ("mount-cgroup", "fsopen", "unshare-user", "ptrace", "mount-tmpfs"):
        assert r[op] != "ok", d


def test_insecure_seccomp_reopens_only_the_filter(env: Rkt, aci: Path) -> None:
    r = attempt_all(env, aci, "--insecure-options=image,seccomp")
    d = describe(r)
    assert r["unshare-user"] == "ok", d  # no capability needed: only the filter stopped it
    # no CAP_SYS_ADMIN/CAP_SYS_PTRACE, paths still closed
    for op in ("mount-cgroup", "fsopen", "mount-tmpfs", "ptrace", "open-chardev",
               "open-write-core_pattern", "read-kallsyms"):
        assert r[op] != "ok", d


def test_insecure_capabilities_reopens_only_capabilities(env: Rkt, aci: Path) -> None:
    r = attempt_all(env, aci, "--insecure-options=image,capabilities")
    d = describe(r)
    # every capability, but the filter still refuses mount, fsopen, unshare, ptrace
    for op in ("mount-cgroup", "fsopen", "mount-tmpfs", "unshare-user", "unshare-mount",
               "ptrace", "open-chardev", "open-write-core_pattern"):
        assert r[op] != "ok", d


def test_all_run_reopens_the_holes_the_defaults_close(env: Rkt, aci: Path) -> None:
    """What the issue found with no confinement: proof the attempts are real, not blocked by
    something else in the test bed."""
    r = attempt_all(env, aci, "--insecure-options=image,all-run")
    d = describe(r)
    for op in ("mount-cgroup", "open-release_agent", "fsopen", "open-chardev",
               "open-write-core_pattern", "unshare-user", "unshare-mount", "ptrace",
               "mount-tmpfs"):
        assert r.get(op) == "ok", d
    # Never weaker than plain nspawn: the pod's unit keeps DevicePolicy=closed (+ tun, ptys)
    # as nspawn's own scope, so no block device node of the machine can even be made, and
    # nspawn's own filter still refuses keyctl
    assert r["mknod"] == "EPERM" and r["keyring"] != "ok", d


def test_defaults_hold_in_a_user_namespace(env: Rkt, aci: Path) -> None:
    assert_all_denied(attempt_all(env, aci, "--no-overlay", "--private-users"))
