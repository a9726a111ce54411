"""Mount targets resolve inside the app's rootfs as from its chroot: symlinks (absolute or
relative) and `..` never lead out of it (rkt's mount tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rktd_less.common.volumes import safe_target
from rktd_less.errors import PodError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "var" / "lib").mkdir(parents=True)
    (r / "srv").mkdir()
    os.symlink("/var/lib", r / "data")  # absolute: from the app's root
    os.symlink("../srv", r / "var" / "up")  # relative
    os.symlink("/../../../../etc", r / "escape")  # tries to climb out
    os.symlink("../../../../../tmp", r / "var" / "escape2")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    return r


@pytest.mark.parametrize(("path", "expected"), [
    ("/data/x", "var/lib/x"),
    ("/var/up/y", "srv/y"),
    ("/var/lib/../../srv", "srv"),
    ("/../../../srv", "srv"),
    ("/escape/passwd", "etc/passwd"),
    ("/var/escape2/x", "tmp/x"),
    ("relative/dir", "relative/dir"),
    ("/data", "var/lib"),
])
def test_resolves_inside(root: Path, path: str, expected: str) -> None:
    got = safe_target(root, path)
    assert got == root / expected
    assert got.resolve().is_relative_to(root.resolve()) or not got.exists()


def test_loops_and_the_root_are_refused(root: Path) -> None:
    with pytest.raises(PodError, match="too many levels of symbolic links"):
        safe_target(root, "/loop1/x")
    for path in ("/", "/..", "/srv/.."):
        with pytest.raises(PodError, match="is the app's root directory"):
            safe_target(root, path)
