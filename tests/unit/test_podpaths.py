"""The pod directory layout, named once (rkt's file names: reference rkt.md §2.2)."""

from __future__ import annotations

from pathlib import Path

from rktd_less.common.podpaths import PodPaths


def test_rkt_layout() -> None:
    pp = PodPaths(Path("/d/pods/run/u"))
    rel = {k: str(v).removeprefix("/d/pods/run/u/") for k, v in {
        "manifest": pp.manifest, "stage1_tree_id": pp.stage1_tree_id,
        "stage1_manifest": pp.stage1_manifest, "stage1_rootfs": pp.stage1_rootfs,
        "app_image_manifest": pp.app_image_manifest("web"), "app_tree_id": pp.app_tree_id("web"),
        "overlay_prepared": pp.overlay_prepared, "private_users": pp.private_users,
        "app_rootfs": pp.app_rootfs("web"), "ppid": pp.ppid, "pid": pp.pid,
        "overlay_status": pp.overlay_status_dir("t"), "copied_status": pp.copied_status_dir(),
    }.items()}
    assert rel == {
        "manifest": "pod", "stage1_tree_id": "stage1TreeStoreID",
        "stage1_manifest": "stage1/manifest", "stage1_rootfs": "stage1/rootfs",
        "app_image_manifest": "appsinfo/web/manifest", "app_tree_id": "appsinfo/web/treeStoreID",
        "overlay_prepared": "overlay-prepared", "private_users": "private-users-prepared",
        "app_rootfs": "stage1/rootfs/opt/stage2/web/rootfs", "ppid": "ppid", "pid": "pid",
        "overlay_status": "overlay/t/upper/rkt/status", "copied_status": "stage1/rootfs/rkt/status",
    }
