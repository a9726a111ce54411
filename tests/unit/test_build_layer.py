"""What an ``acbuild run`` step's overlay upper directory does to the build (rktd_less.build.layer):
real whiteouts (char 0/0) and opaque directories as overlayfs makes them, so root is needed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rktd_less.build.context import BuildError
from rktd_less.build.layer import (
    MAX_DEPTH,
    MOUNT_POINTS,
    check_upper,
    find_below,
    make_scaffold,
    merge,
)


def files(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = p.read_text()
    return out


def put(root: Path, rel: str, text: str = "x") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def whiteout(root: Path, rel: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(p, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def test_merge_applies_the_step_and_reports_what_it_cannot_delete(tmp_path: Path) -> None:
    own, dep, upper = tmp_path / "own", tmp_path / "dep", tmp_path / "upper"
    put(own, "etc/mine")
    put(own, "etc/keep", "keep")
    put(own, "old/dir/file")
    (own / "lnk").symlink_to("/etc")  # the image's symlink: never followed on the machine
    put(dep, "etc/os-release")
    put(dep, "opt/x/a")
    put(dep, "opt/x/b")
    put(dep, "usr/lib/gone")
    os.chmod(dep / "usr", 0o755)
    # the step: deleted etc/mine, etc/os-release and usr/lib/gone, replaced old/ and opt/x/
    # (opaque), made lnk a directory, wrote new/f (overlayfs marked it with its own xattr)
    whiteout(upper, "etc/mine")
    whiteout(upper, "etc/os-release")
    whiteout(upper, "usr/lib/gone")
    for d in ("usr", "usr/lib"):
        os.chmod(upper / d, stat.S_IMODE(os.lstat(dep / d).st_mode))
    put(upper, "old/new", "replaced")
    os.setxattr(upper / "old", "trusted.overlay.opaque", b"y")
    put(upper, "opt/x/a", "a2")
    os.setxattr(upper / "opt" / "x", "trusted.overlay.opaque", b"y")
    put(upper, "lnk/z", "z")
    os.setxattr(upper / "lnk", "trusted.overlay.opaque", b"y")
    f = put(upper, "new/f", "new")
    os.setxattr(f, "trusted.overlay.origin", b"\x00")
    os.setxattr(f, "user.kept", b"1")

    os.chmod(upper, 0o711)  # the step's chmod of "/"
    kept = merge(upper, own, [dep])
    assert stat.S_IMODE(os.lstat(own).st_mode) == 0o711

    assert kept == ["etc/os-release", "opt/x/", "usr/lib/gone"]
    assert files(own) == {"etc": "dir", "etc/keep": "keep", "lnk": "dir", "lnk/z": "z",
                          "new": "dir", "new/f": "new", "old": "dir", "old/new": "replaced",
                          "opt": "dir", "opt/x": "dir", "opt/x/a": "a2"}
    assert os.listxattr(own / "new" / "f") == ["user.kept"]
    for p in own.rglob("*"):
        assert not any(x.startswith("trusted.overlay.") for x in os.listxattr(p)), p
    assert (Path("/etc") / "z").exists() is False  # through the symlink: nothing written


def test_find_below_takes_the_top_layer_and_never_follows_a_symlinked_parent(
        tmp_path: Path) -> None:
    top, low = tmp_path / "top", tmp_path / "low"
    put(top, "a/f", "top")
    put(low, "a/f", "low")
    put(low, "b/g")
    (top / "etc").symlink_to("/etc")
    st = find_below([top, low], "a/f")
    assert st is not None and st.st_ino == os.lstat(top / "a" / "f").st_ino
    assert find_below([top, low], "b/g") is not None
    assert find_below([top, low], "etc/passwd") is None  # /etc/passwd of the machine: no
    assert find_below([top, low], "nope") is None


def test_scaffold_gives_a_dns_mount_point_and_only_the_missing_mount_points(
        tmp_path: Path) -> None:
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    os.chmod(image / "etc", 0o711)
    (image / "usr").mkdir()
    (image / "tmp").mkdir()
    scaffold = tmp_path / "scaffold"
    assert make_scaffold(scaffold, [image])
    assert sorted(p.name for p in scaffold.iterdir()) == sorted(
        {*MOUNT_POINTS, "etc"} - {"usr", "tmp"})
    for name, mode in MOUNT_POINTS.items():
        if (scaffold / name).exists():
            assert stat.S_IMODE(os.lstat(scaffold / name).st_mode) == mode, name
    assert (scaffold / "etc" / "resolv.conf").read_bytes() == b""  # the host's goes on it
    assert stat.S_IMODE(os.lstat(scaffold / "etc").st_mode) == 0o711  # the image's /etc

    odd = tmp_path / "odd"  # /etc a symlink: left alone (no DNS rather than a changed /etc)
    odd.mkdir()
    (odd / "etc").symlink_to("usr/etc")
    assert not make_scaffold(tmp_path / "scaffold2", [odd])
    assert not (tmp_path / "scaffold2" / "etc").exists()


def test_a_tree_too_deep_to_merge_is_refused_before_anything_moves(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    deep = upper / "/".join(["d"] * (MAX_DEPTH + 2))
    deep.mkdir(parents=True)
    with pytest.raises(BuildError, match="too deep"):
        check_upper(upper)
    check_upper(tmp_path / "upper" / "d" / "d")  # a shallower one is fine
