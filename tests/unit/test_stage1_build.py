"""Stage1 images are files built from stage1-*/ at package build time (issue 11): reproducible,
nothing of the build machine in them but the arch label, entrypoints that run the code of the
installation stage0 names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from rktd_less import __version__
from rktd_less.common.platform import host_arch
from rktd_less.stage1.image import BuildError, build_all, main

REPO = Path(__file__).resolve().parents[2]


def test_build_all_is_reproducible_and_host_free(tmp_path: Path) -> None:
    built = build_all(REPO, tmp_path / "a")
    again = build_all(REPO, tmp_path / "b")
    assert [p.name for p in built] == ["stage1-fly.aci", "stage1-kvm.aci", "stage1-nspawn.aci"]
    assert [p.read_bytes() for p in built] == [p.read_bytes() for p in again]
    one = built[2]
    with tarfile.open(one) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest").read())  # type: ignore[union-attr]
        init = tar.getmember("rootfs/init")
        assert init.mode & 0o111
    assert manifest["name"] == "rktd-less/stage1-nspawn"
    labels = {lb["name"]: lb["value"] for lb in manifest["labels"]}
    assert labels == {"version": __version__, "os": "linux", "arch": host_arch()}
    ann = {a["name"]: a["value"] for a in manifest["annotations"]}
    assert ann["coreos.com/rkt/stage1/run"] == "/init"
    # what a pod takes of the machine it runs on is written at run time, not baked in here
    assert "rootfs/etc/os-release" not in names
    assert not [n for n in names if "generators" in n]
    assert not list((tmp_path / "a").glob(".stage1-*"))  # no temporary file left


@pytest.mark.parametrize(("flavour", "module"), [("nspawn", "rktd_less.stage1.entry"),
                                                  ("fly", "rktd_less.stage1.fly"),
                                                  ("kvm", "rktd_less.stage1.kvm")])
def test_entrypoint_runs_the_named_interpreters_package(tmp_path: Path, flavour: str,
                                                        module: str) -> None:
    aci = next(p for p in build_all(REPO, tmp_path) if p.name == f"stage1-{flavour}.aci")
    shim = tmp_path / "gc"
    with tarfile.open(aci) as tar:
        shim.write_bytes(tar.extractfile("rootfs/gc").read())  # type: ignore[union-attr]
    os.chmod(shim, 0o755)
    assert f"from {module} import main" in shim.read_text()  # the flavour's own code
    if flavour == "kvm":  # the guest's /init rides in the image, for its initramfs
        with tarfile.open(aci) as tar:
            init = tar.getmember("rootfs/guest/init")
            assert init.mode & 0o111 and tar.extractfile(init).read().startswith(  # type: ignore[union-attr]
                b"#!/bin/sh")
    env = {"PATH": "/usr/bin:/bin", "RKTD_LESS_PYTHON": sys.executable}
    cp = subprocess.run([str(shim)], capture_output=True, text=True, env=env, cwd=tmp_path,
                        check=False)
    # the stage1 gc entrypoint of this package answered (no UUID given)
    assert cp.returncode == 254, cp
    assert cp.stderr.strip() == "stage1: missing pod UUID"


def test_build_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BuildError, match="no stage1 sources"):
        build_all(tmp_path, tmp_path / "out")
    src = tmp_path / "stage1-odd"
    src.mkdir()
    (src / "manifest.json").write_text(json.dumps({"name": "example.com/other", "labels": []}))
    with pytest.raises(BuildError, match="expected 'rktd-less/stage1-odd'"):
        build_all(tmp_path, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())
    assert main([str(tmp_path / "out"), str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("stage1 image build: ")
