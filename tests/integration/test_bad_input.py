"""Bad input: one line on stderr naming the problem, exit 254, nothing half-made left."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.aci import (
    build_aci,
    build_raw_tar,
    raw_dir,
    raw_file,
    raw_manifest,
    raw_symlink,
    truncate,
)
from tests.integration.rktenv import RKT, Rkt

pytestmark = pytest.mark.integration
INSECURE = "--insecure-options=image"


def _store_files(env: Rkt) -> list[str]:
    """Every file in the store and pods that is not the (empty-able) sqlite index."""
    out = []
    for sub in ("cas/blob", "cas/imageManifest", "cas/tree", "cas/tmp", "pods"):
        root = env.data / sub
        if root.exists():
            out += [str(p.relative_to(env.data)) for p in root.rglob("*") if not p.is_dir()]
    return sorted(out)


def _one_line_254(cp: subprocess.CompletedProcess[str], verb: str, *needles: str) -> None:
    assert cp.returncode == 254, (cp.returncode, cp.stdout, cp.stderr)
    lines = cp.stderr.splitlines()
    assert len(lines) == 1, cp.stderr
    assert lines[0].startswith(f"{verb}: "), lines
    assert "Traceback" not in cp.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _unsafe_archives(work: Path) -> dict[str, Path]:
    m = raw_manifest()
    return {
        "dotdot": build_raw_tar(work / "dotdot.aci", [m, raw_dir("rootfs"),
                                                       raw_file("rootfs/../evil", b"x")]),
        "absolute": build_raw_tar(work / "abs.aci", [m, raw_dir("rootfs"),
                                                      raw_file("/etc/evil", b"x")]),
        "symlink": build_raw_tar(work / "sym.aci", [m, raw_dir("rootfs"),
                                                     raw_symlink("rootfs/etc", "/etc"),
                                                     raw_file("rootfs/etc/evil", b"x")]),
        "no-manifest": build_raw_tar(work / "nomanifest.aci", [raw_dir("rootfs"),
                                                                raw_file("rootfs/x", b"x")]),
        "bad-json": build_raw_tar(work / "badjson.aci", [raw_file("manifest", b"{not json"),
                                                          raw_dir("rootfs")]),
        "bad-name": build_raw_tar(work / "badname.aci", [raw_manifest(name="Not Valid"),
                                                          raw_dir("rootfs")]),
    }


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "no-manifest", "bad-json",
                                  "bad-name"])
def test_unsafe_or_invalid_aci_is_refused_and_leaves_nothing(env: Rkt, kind: str) -> None:
    path = _unsafe_archives(env.work)[kind]
    before = _store_files(env)
    for verb in ("fetch", "run"):
        cp = env(verb, INSECURE, str(path), check=False)
        _one_line_254(cp, verb)
        assert _store_files(env) == before
    assert not Path("/etc/evil").exists()


def test_corrupt_gzip_is_refused(env: Rkt) -> None:
    good = build_aci(env.work / "good.aci.gz", compress="gzip")
    bad = truncate(env.work / "good.aci.gz", good.stat().st_size // 2)
    before = _store_files(env)
    cp = env("fetch", INSECURE, str(bad), check=False)
    _one_line_254(cp, "fetch")
    assert _store_files(env) == before


def test_unknown_image_and_missing_file(env: Rkt) -> None:
    _one_line_254(env("run", "--pull-policy=never", "example.com/nope:1.0", check=False), "run",
                  "example.com/nope", "not found")
    _one_line_254(env("run", INSECURE, "./no-such.aci", check=False), "run", "no-such.aci")
    # rkt prefixes messages with the subcommand's own name (cobra cmd.Name())
    _one_line_254(env("image", "cat-manifest", "sha512-0000", check=False), "cat-manifest",
                  "sha512-0000")
    assert not list((env.data / "pods").rglob("pod")) if (env.data / "pods").exists() else True


def test_unsigned_image_needs_insecure_option(env: Rkt) -> None:
    aci = build_aci(env.work / "unsigned.aci")
    _one_line_254(env("fetch", str(aci), check=False), "fetch", "signature",
                  "--insecure-options=image")


def test_unknown_and_ambiguous_uuid(env: Rkt) -> None:
    aci = build_aci(env.work / "ok.aci")
    uuids = set()
    # enough pods that two share a first hex digit
    while True:
        uf = env.work / "u"
        env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/true")
        u = uf.read_text()
        if any(x[0] == u[0] for x in uuids):
            uuids.add(u)
            break
        uuids.add(u)
    first = {u[0] for u in uuids if sum(x[0] == u[0] for x in uuids) > 1}.pop()
    for verb in ("status", "rm", "cat-manifest"):
        _one_line_254(env(verb, "zzzz", check=False), verb, "no matches found", '"zzzz"')
        _one_line_254(env(verb, first, check=False), verb, "ambiguous")
    json.loads(env("list", "--format=json").stdout)


def test_run_needs_root(env: Rkt) -> None:
    aci = build_aci(env.work / "nonroot.aci")
    os.chmod(env.work, 0o755)
    cp = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", RKT,
                         f"--dir={env.data}", "run", INSECURE, str(aci)],
                        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    _one_line_254(cp, "run", "cannot run as unprivileged user")


def test_bad_flags(env: Rkt) -> None:
    _one_line_254(env("run", "--net=bogus:a:b", "x.aci", check=False), "run", "bogus")
    _one_line_254(env("list", "--format=yaml", check=False), "list", "yaml")
    _one_line_254(env("gc", "--grace-period=10", check=False), "gc", "duration")
    _one_line_254(env("frobnicate", check=False), "rkt", "unknown command")


def test_bad_run_flags_change_nothing(env: Rkt) -> None:
    """rkt run / prepare refusals: one line, exit 254, no pod dir, nothing in the store but
    the image the first (good) fetch put there."""
    aci = build_aci(env.work / "ok.aci", exec_=("/bin/true",))
    # a good run and its removal: the stage1 image and the app's tree are in the store now
    uf = env.work / "good-uuid"
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci))
    env("rm", uf.read_text())
    mf = env.work / "pod.json"
    mf.write_text(json.dumps({"acVersion": "0.8.11", "acKind": "PodManifest", "apps": []}))
    before = _store_files(env)
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        (["--set-env=NOEQUALS", str(aci)], ('invalid environment "NOEQUALS"',)),
        ([str(aci), "--environment==x"], ('invalid environment "=x"',)),
        (["--set-env-file=/no/such/file", str(aci)], ("cannot read environment file",)),
        ([str(aci), "--supplementary-gids=a,b"], ("--supplementary-gids",)),
        ([str(aci), "--bogus"], ("unknown flag: --bogus",)),
        (["--volume=v,kind=empty,mode=abc", str(aci)], ("mode",)),
        (["--volume=v,kind=host", str(aci)], ("source",)),
        ([str(aci), "--mount=volume=v"], ("volume=NAME,target=PATH",)),
        (["--pod-name=Bad_Name", str(aci)], ('invalid pod name "Bad_Name"',)),
        (["--interactive", str(aci), str(aci), "--name=b"], ("only supports one image",)),
        ([f"--pod-manifest={mf}", "--set-env=A=B"], ("conflicting flags set with --pod-manifest",)),
        ([f"--pod-manifest={mf}"], ("has no apps",)),
        ([str(aci), "--user=nosuchuser"], ('user "nosuchuser" not found',)),
    ]
    for args, needles in cases:
        cp = env("run", INSECURE, *args, check=False)
        _one_line_254(cp, "run", *needles)
        assert _store_files(env) == before, args
    _one_line_254(env("prepare", INSECURE, "--set-env=X", str(aci), check=False), "prepare",
                  'invalid environment "X"')
    _one_line_254(env("run-prepared", "no-such-pod", check=False), "run-prepared",
                  'no matches found for "no-such-pod"')
    assert _store_files(env) == before
