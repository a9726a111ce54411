"""A converted Docker image end to end: config → manifest, layers → squashed ACI → the store
accepts it (its safety scan runs on GNU tar's listing) and renders the expected tree."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rktd_less.convert import aci_manifest, appc_image_name
from rktd_less.convert.squash import squash
from rktd_less.paths import Paths
from rktd_less.store import Store
from tests.helpers.aci import APPLETS, BUSYBOX, GROUP, PASSWD
from tests.helpers.layers import Entry, build_layer, d, f, fifo, hard, opq, sym, wh

CONFIG = {
    "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
    "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "User": "1000:100",
               "Env": ["PATH=/bin"], "WorkingDir": "/home/user",
               "Volumes": {"/data": {}}, "ExposedPorts": {"8080/tcp": {}}},
}


def xattrs_supported(where: Path) -> bool:
    probe = where / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def base_layer() -> list[Entry]:
    ents = [d("bin"), f("bin/busybox", BUSYBOX.read_bytes(), 0o755)]
    ents += [sym(f"bin/{a}", "busybox") for a in APPLETS]
    ents += [d("etc"), f("etc/passwd", PASSWD), f("etc/group", GROUP),
             f("etc/motd", b"base motd\n"), d("var/cache/apt"), f("var/cache/apt/pkgcache", b"c"),
             d("home"), d("home/user", 0o750, uid=1000, gid=100), d("dev")]
    return ents


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static")
def test_converted_image_imports_and_renders(tmp_path: Path) -> None:
    layers = [
        build_layer(tmp_path / "blobs/base", base_layer(), compress="gzip"),
        build_layer(tmp_path / "blobs/app", [
            d("opt/app"), f("opt/app/run", b"#!/bin/sh\necho app\n", 0o755),
            hard("opt/app/run-again", "opt/app/run"),
            f("opt/app/data", b"v1", 0o600, uid=1000, gid=100,
              xattrs={"user.origin": b"layer-app"}),
            hard("opt/app/data.link", "opt/app/data"),
            wh("etc/motd"), wh("var/cache/apt"), fifo("opt/app/pipe"),
        ], compress="zstd"),
        build_layer(tmp_path / "blobs/top", [
            f("opt/app/data", b"v2"),  # the link keeps v1
            d("var/cache"), opq("var/cache"), f("var/cache/fresh", b"f"),
        ], compress=None),
    ]
    manifest = aci_manifest(
        CONFIG, appc_name=appc_image_name("registry.example:5000", "team/app"), tag="1.0",
        registry="registry.example:5000", repository="team/app",
        original_name="registry.example:5000/team/app:1.0",
        manifest_digest="sha256:" + "d" * 64, image_id="sha256:" + "e" * 64)
    aci = tmp_path / "app.aci"
    squash(layers, manifest, aci)

    store = Store(Paths(tmp_path / "data"))
    key = store.import_aci(aci)
    m = store.manifest(key)
    assert m.name == "registry.example_5000/team/app"
    assert m.label_map() == {"version": "1.0", "os": "linux", "arch": "amd64"}
    assert m.app is not None and m.app.exec == ("/bin/sh", "-c", "echo hi")
    assert (m.app.user, m.app.group, m.app.working_directory) == ("1000", "100", "/home/user")
    assert m.annotation("appc.io/docker/repository") == "team/app"
    assert json.loads(store.manifest_bytes(key)) == manifest

    root = store.tree_rootfs(store.render(key))
    assert (root / "bin/busybox").read_bytes() == BUSYBOX.read_bytes()
    assert os.readlink(root / "bin/sh") == "busybox"
    assert not (root / "etc/motd").exists()
    assert (root / "etc/passwd").read_bytes() == PASSWD
    assert sorted(os.listdir(root / "var/cache")) == ["fresh"]
    assert (root / "opt/app/data").read_bytes() == b"v2"
    assert (root / "opt/app/data.link").read_bytes() == b"v1"
    run, again = (root / "opt/app/run").stat(), (root / "opt/app/run-again").stat()
    assert run.st_ino == again.st_ino and run.st_nlink == 2
    assert stat.S_IMODE(run.st_mode) == 0o755
    assert stat.S_ISFIFO((root / "opt/app/pipe").lstat().st_mode)
    assert os.readlink(root / "dev/stdout") == "/dev/console"
    assert os.readlink(root / "dev/fd") == "/proc/self/fd"
    if os.geteuid() == 0:
        link = (root / "opt/app/data.link").stat()
        assert (link.st_uid, link.st_gid, stat.S_IMODE(link.st_mode)) == (1000, 100, 0o600)
        home = (root / "home/user").stat()
        assert (home.st_uid, stat.S_IMODE(home.st_mode)) == (1000, 0o750)
        if xattrs_supported(tmp_path):
            assert os.getxattr(root / "opt/app/data.link", "user.origin") == b"layer-app"
