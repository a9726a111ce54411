"""Every path of a pod directory, named once (rkt's common/common.go accessors; layout:
reference rkt.md §2.2). Shared by stage0 and every stage1; no other module joins pod paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PodPaths:
    root: Path  # the pod directory (pods/<phase>/<uuid>), stage1's working directory

    # -- written by stage0 -------------------------------------------------------------------
    @property
    def created(self) -> Path:
        """Touched when the pod dir is made: its mtime is the pod's creation time."""
        return self.root / "pod-created"

    @property
    def manifest(self) -> Path:
        """The pod manifest stage1 runs (``pod``)."""
        return self.root / "pod"

    @property
    def stage1_tree_id(self) -> Path:
        return self.root / "stage1TreeStoreID"

    @property
    def stage1_manifest(self) -> Path:
        return self.root / "stage1" / "manifest"

    @property
    def stage1_rootfs(self) -> Path:
        return self.root / "stage1" / "rootfs"

    @property
    def apps_info(self) -> Path:
        return self.root / "appsinfo"

    def app_info(self, app: str) -> Path:
        return self.apps_info / app

    def app_image_manifest(self, app: str) -> Path:
        return self.app_info(app) / "manifest"

    def app_tree_id(self, app: str) -> Path:
        return self.app_info(app) / "treeStoreID"

    @property
    def overlay_prepared(self) -> Path:
        """Marker: the pod runs on overlays of the store's trees (absent: --no-overlay)."""
        return self.root / "overlay-prepared"

    def overlay(self, tree_id: str) -> Path:
        """upper/ and work/ of the overlays over tree ``tree_id``."""
        return self.root / "overlay" / tree_id

    @property
    def private_users(self) -> Path:
        """SHIFT:COUNT of --private-users."""
        return self.root / "private-users-prepared"

    @property
    def stage0_resolv(self) -> Path:
        """resolv.conf from ``--dns``/``--dns-search``/... (rkt's stage0 rkt-resolv.conf)."""
        return self.root / "rkt-resolv.conf"

    @property
    def stage0_hosts(self) -> Path:
        """hosts from ``--hosts-entry`` (rkt's stage0 rkt-hosts; stage1 adds the hostname)."""
        return self.root / "rkt-hosts"

    @property
    def tpm_log(self) -> Path:
        return self.root / "tpm-measure.log"

    # -- inside the stage1 rootfs ------------------------------------------------------------
    def app_rootfs(self, app: str) -> Path:
        """The app's root as the stage1 sees it (opt/stage2/<app>/rootfs)."""
        return self.stage1_rootfs / "opt" / "stage2" / app / "rootfs"

    def copied_status_dir(self) -> Path:
        """rkt/status of a --no-overlay pod (its stage1 rootfs is a plain copy)."""
        return self.stage1_rootfs / "rkt" / "status"

    def overlay_status_dir(self, stage1_tree: str) -> Path:
        """rkt/status as written through the stage1 overlay: its upper dir."""
        return self.overlay(stage1_tree) / "upper" / "rkt" / "status"

    # -- written by stage1 -------------------------------------------------------------------
    @property
    def ppid(self) -> Path:
        """The process whose only child is the pod's init (the stage1 contract)."""
        return self.root / "ppid"

    @property
    def pid(self) -> Path:
        return self.root / "pid"

    @property
    def netns(self) -> Path:
        """The path of the pod's network namespace file (rkt's ``netns``)."""
        return self.root / "netns"

    @property
    def net_info(self) -> Path:
        """The pod's networks as rkt wrote them (``net-info.json``): list/status read it."""
        return self.root / "net-info.json"

    @property
    def net_dir(self) -> Path:
        """One record per network whose ADD may have happened and whose DEL has not (``net/``),
        plus the port forwarding record: what a teardown after a crash still has to undo."""
        return self.root / "net"
