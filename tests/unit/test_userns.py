"""--private-users ranges and --no-overlay pod directories (local I/O in tmp_path)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rktd_less.common import podstatus
from rktd_less.common.uidrange import UidRange
from rktd_less.errors import RktError
from rktd_less.pod import userns
from rktd_less.pod.prepare import write_pod_dir
from rktd_less.stage1.nspawn import NspawnPlan, nspawn_argv


def test_random_ranges_as_rkt() -> None:
    rng = random.Random(3)
    for _ in range(200):
        r = userns.random_range(rng)
        assert r.count == 65536 and r.shift % 65536 == 0 and 65536 <= r.shift < 2**31
    assert UidRange.parse("196608:65536") == UidRange(196608, 65536)
    assert UidRange(196608).serialize() == "196608:65536"
    for bad in ("", "0:65536", "x:1", "65536"):
        with pytest.raises(RktError, match="invalid user namespace range"):
            UidRange.parse(bad)


def test_nspawn_maps_the_range() -> None:
    argv = nspawn_argv(NspawnPlan(uuid="u", root="/r", hostname="h",
                                  private_users="196608:65536"))
    assert "--private-users=196608:65536" in argv
    assert "--private-users-ownership=map" in argv
    assert not [a for a in nspawn_argv(NspawnPlan(uuid="u", root="/r", hostname="h"))
                if a.startswith("--private-users")]


def test_no_overlay_pod_dir_holds_copies(tmp_path: Path) -> None:
    trees = tmp_path / "trees"
    for t in ("s1", "app1"):
        (trees / t / "rootfs" / "etc").mkdir(parents=True)
        (trees / t / "rootfs" / "etc" / "who").write_text(t)
    pod = tmp_path / "pod"
    pod.mkdir()
    manifest = {"acKind": "PodManifest", "apps": [{"name": "web", "mounts": []}], "volumes": []}
    write_pod_dir(pod, manifest, {"web": ("app1", b'{"name": "x"}')}, "s1", b"{}",
                  lambda t: trees / t / "rootfs", overlay=False, private_users="196608:65536")
    assert (pod / "stage1/rootfs/etc/who").read_text() == "s1"
    assert (pod / "stage1/rootfs/opt/stage2/web/rootfs/etc/who").read_text() == "app1"
    assert not (pod / "overlay-prepared").exists() and not (pod / "overlay").exists()
    assert (pod / "private-users-prepared").read_text() == "196608:65536"
    assert podstatus.status_dir(pod) == pod / "stage1/rootfs/rkt/status"
    assert podstatus.status_dir(pod).is_dir()  # type: ignore[union-attr]
    assert json.loads((pod / "pod").read_text()) == manifest
