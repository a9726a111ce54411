"""`rkt image extract|render|export|verify|list`: outputs complete or absent, no root."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from rktd_less.ids import key_from_digest
from tests.helpers.aci import build_aci
from tests.unit.test_image_cmds import Env, leftovers


@pytest.fixture
def env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Env:
    return Env(tmp_path, capsys)


def _base_and_app(env: Env) -> tuple[str, str]:
    base = env.fetch(build_aci(env.tmp / "base.aci", name="example.com/base", exec_=None,
                               files={"etc/base": b"base", "etc/shared": b"from base",
                                      "etc/drop": b"not whitelisted"}))
    app = env.fetch(build_aci(
        env.tmp / "app.aci", name="example.com/app", busybox=False,
        files={"etc/shared": b"from app", "app": (b"#!/bin/sh\n", 0o755)},
        manifest_extra={
            "dependencies": [{"imageName": "example.com/base",
                              "labels": [{"name": "version", "value": "1.0"}]}],
            "pathWhitelist": ["/etc/base", "/etc/shared", "/app", "/bin/busybox"]}))
    return base, app


# --- extract --------------------------------------------------------------------------------
def test_extract_is_the_aci_without_dependencies(env: Env) -> None:
    _, app = _base_and_app(env)
    out = env.tmp / "out" / "x"
    code, stdout, err = env.rkt("image", "extract", "example.com/app", str(out))
    assert (code, stdout, err) == (0, "", "")
    assert sorted(p.name for p in out.iterdir()) == ["manifest", "rootfs"]
    assert json.loads((out / "manifest").read_bytes())["name"] == "example.com/app"
    assert sorted(p.name for p in (out / "rootfs").iterdir()) == ["app", "etc"]
    assert (out / "rootfs/etc/shared").read_bytes() == b"from app"
    assert not (out / "rootfs/etc/base").exists()  # no dependencies
    assert leftovers(out.parent) == []
    code, _, _ = env.rkt("image", "extract", "--rootfs-only", app[:30], str(env.tmp / "r"))
    assert code == 0
    assert sorted(p.name for p in (env.tmp / "r").iterdir()) == ["app", "etc"]


def test_extract_existing_target_needs_overwrite(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    out = env.tmp / "out"
    out.mkdir()
    (out / "mine").write_text("keep")
    code, stdout, err = env.rkt("image", "extract", key, str(out))
    assert code == 254 and stdout == ""
    assert err == "extract: output directory exists (try --overwrite)\n"
    assert sorted(p.name for p in out.iterdir()) == ["mine"]
    code, _, err = env.rkt("image", "extract", "--overwrite", "--rootfs-only", key, str(out))
    assert code == 0, err
    assert not (out / "mine").exists() and (out / "bin" / "busybox").is_file()
    assert leftovers(env.tmp) == []
    code, _, err = env.rkt("image", "extract", "--overwrite", key, "/")
    assert code == 254
    assert err == "extract: this would delete your root filesystem. Refusing.\n"
    for target in (env.data, env.tmp, env.data / "cas"):
        code, _, err = env.rkt("image", "render", "--overwrite", key, str(target))
        assert code == 254 and "this would write into the rkt data directory" in err, target
    assert env.paths.blob(key).is_file()


def test_extract_failure_leaves_nothing(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    env.paths.blob(key).write_bytes(b"garbage" * 100)  # not a tar any more
    out = env.tmp / "out"
    code, _, err = env.rkt("image", "extract", key, str(out))
    assert code == 254 and err.startswith("extract: ")
    assert not out.exists() and leftovers(env.tmp) == []
    code, _, err = env.rkt("image", "extract", "example.com/unknown", str(out))
    assert code == 254 and 'no image found for "example.com/unknown"' in err
    code, _, err = env.rkt("image", "extract", key)
    assert code == 254 and "expected an image and an output path" in err


# --- render ---------------------------------------------------------------------------------
def test_render_includes_dependencies_and_applies_the_whitelist(env: Env) -> None:
    _base, app = _base_and_app(env)
    out = env.tmp / "render"
    code, _, err = env.rkt("image", "render", "example.com/app:1.0", str(out))
    assert code == 0, err
    assert json.loads((out / "manifest").read_bytes())["name"] == "example.com/app"
    root = out / "rootfs"
    assert (root / "etc/base").read_bytes() == b"base"
    assert (root / "etc/shared").read_bytes() == b"from app"  # the image wins
    assert not (root / "etc/drop").exists()  # pathWhitelist
    assert (root / "bin/busybox").is_file() and not (root / "bin/sh").exists()
    code, _, err = env.rkt("image", "render", app, str(out))
    assert code == 254 and err == "render: output directory exists (try --overwrite)\n"
    code, _, err = env.rkt("image", "render", "--rootfs-only", "--overwrite", app, str(out))
    assert code == 0, err
    assert (out / "etc/base").is_file() and not (out / "manifest").exists()
    assert leftovers(env.tmp) == []


def test_render_with_a_missing_dependency_fails_cleanly(env: Env) -> None:
    env.fetch(build_aci(env.tmp / "app.aci", name="example.com/app", manifest_extra={
        "dependencies": [{"imageName": "example.com/missing"}]}))
    code, _, err = env.rkt("image", "render", "example.com/app", str(env.tmp / "out"))
    assert code == 254
    assert 'dependency "example.com/missing" of image "example.com/app" is not in the store' \
        in err
    assert not (env.tmp / "out").exists() and leftovers(env.tmp) == []


# --- export ---------------------------------------------------------------------------------
def test_export_is_the_stored_uncompressed_tar(env: Env) -> None:
    aci = build_aci(env.tmp / "a.aci.gz", name="example.com/a", compress="gzip")
    key = env.fetch(aci)
    out = env.tmp / "exp" / "a.aci"
    code, stdout, err = env.rkt("image", "export", "example.com/a", str(out))
    assert (code, stdout, err) == (0, "", "")
    assert key_from_digest(hashlib.sha512(out.read_bytes()).hexdigest()) == key
    assert out.read_bytes() == env.paths.blob(key).read_bytes()
    code, _, err = env.rkt("image", "export", key, str(out))
    assert code == 254 and err == "export: output ACI file exists (try --overwrite)\n"
    out.write_bytes(b"old")
    code, _, _ = env.rkt("image", "export", "--overwrite", key, str(out))
    assert code == 0 and out.read_bytes() == env.paths.blob(key).read_bytes()
    assert leftovers(out.parent) == []


def test_export_refuses_a_corrupt_blob(env: Env) -> None:
    key = env.fetch(env.aci("example.com/a"))
    blob = env.paths.blob(key)
    data = bytearray(blob.read_bytes())
    data[-700] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = env.tmp / "a.aci"
    code, _, err = env.rkt("image", "export", key, str(out))
    assert code == 254 and f'image "{key}" is corrupt in the store' in err
    assert not out.exists() and leftovers(env.tmp) == []


# --- verify ---------------------------------------------------------------------------------
def test_verify_detects_a_corrupted_blob(env: Env) -> None:
    a = env.fetch(env.aci("example.com/a"))
    b = env.fetch(env.aci("example.com/b"))
    code, out, err = env.rkt("image", "verify", "example.com/a", b[:12])
    assert code == 0, err
    assert out == (f'successfully verified checksum for image: "example.com/a" ("{a}")\n'
                   f'successfully verified checksum for image: "{b[:12]}" ("{b}")\n')
    blob = env.paths.blob(b)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0x01
    blob.write_bytes(bytes(data))
    code, out, err = env.rkt("image", "verify", "example.com/a", "example.com/b",
                             "example.com/none")
    assert code == 254
    assert out == f'successfully verified checksum for image: "example.com/a" ("{a}")\n'
    assert f'verify: checksum verification failed for image: "example.com/b" ("{b}"): its ' \
           'blob hashes to "sha512-' in err
    assert "unable to resolve store key for image example.com/none" in err
    os.unlink(blob)
    code, _, err = env.rkt("image", "verify", b)
    assert code == 254 and "has no blob in the store" in err


# --- last used, list --------------------------------------------------------------------------
def test_extract_render_export_refresh_last_used(env: Env) -> None:
    base, app = _base_and_app(env)
    s = env.store()
    for cmd in (["extract", app, str(env.tmp / "e")], ["export", app, str(env.tmp / "x.aci")],
                ["render", app, str(env.tmp / "r")]):
        s.index.touch([base, app], now=1.0)
        assert env.rkt("image", *cmd)[0] == 0
        used = {k: env.store().get_image(k).last_used for k in (base, app)}
        assert used[app] > 1.0, cmd
        assert (used[base] > 1.0) == (cmd[0] == "render"), cmd  # render reads the dependency


def test_list_size_is_blob_plus_tree_and_sorting(env: Env) -> None:
    a = env.fetch(env.aci("example.com/a"))
    b = env.fetch(build_aci(env.tmp / "b.aci", name="example.com/b", busybox=False))
    env.store().render(a)
    info = env.store().get_image(a)
    assert info.tree_size > 0
    code, out, _ = env.rkt("image", "list", "--format=json")
    sizes = {i["id"]: i["size"] for i in json.loads(out)}
    assert sizes[a] == info.size + info.tree_size
    code, out, _ = env.rkt("image", "list", "--no-legend", "--full", "--fields=id,size",
                           "--sort=size", "--order=desc")
    assert [line.split()[0] for line in out.splitlines()] == [a, b]
    assert out.splitlines()[0].split()[1] == str(info.size + info.tree_size)
    code, out, _ = env.rkt("image", "l", "--no-legend", "--fields=name", "--sort=name",
                           "--order=DESC")
    assert out.split() == ["example.com/b:1.0", "example.com/a:1.0"]
    code, _, err = env.rkt("image", "list", "--order=up")
    assert code == 254 and 'invalid order "up"' in err


def test_subcommands_and_their_flags(env: Env) -> None:
    code, _, err = env.rkt("image", "ex", "x", "y")
    assert code == 254 and 'ambiguous image subcommand "ex": extract, export' in err
    code, _, err = env.rkt("image", "list", "--rootfs-only")
    assert code == 254 and "unknown flag: --rootfs-only" in err
    code, _, err = env.rkt("image", "frobnicate")
    assert code == 254 and 'unknown image subcommand "frobnicate"' in err
    code, out, _ = env.rkt("image", "--help")
    assert code == 0 and "rkt image extract [--rootfs-only] [--overwrite]" in out
