"""Pod lifecycle under systemd: --detach, a unit file with `rkt gc --mark-only` on stop,
--pod-name, --pod-manifest."""

from __future__ import annotations

import json
import re
import time
import uuid as uuidlib
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, sh, wait_for

INSECURE = "--insecure-options=image"
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0",
                     exec_=("/bin/sh", "-c", "echo image default"))


def _pods(env: Rkt) -> list[str]:
    return sorted(p.name for p in (env.data / "pods").glob("*/*"))


def _unit_state(unit: str) -> str:
    return sh("systemctl", "show", "--property=ActiveState", "--value", unit,
              check=False).stdout.strip()


def test_detach_leaves_the_pod_as_a_unit(env: Rkt, aci: Path) -> None:
    t0 = time.monotonic()
    cp = env("run", "--detach", INSECURE, str(aci), "--exec", "/bin/sh", "--", "-c",
             "echo hello-detached; exec sleep 600", timeout=60)
    uuid = cp.stdout.strip()
    assert re.fullmatch(UUID_RE, uuid), cp.stdout
    unit = f"rkt-{uuid}.service"
    try:
        assert time.monotonic() - t0 < 30
        # returned once the apps are up: ready already, and the unit is active
        assert "state=running" in env("status", "--wait-ready=100ms", uuid).stdout
        assert _unit_state(unit) == "active"
        assert f"rkt-{uuid}" in sh("machinectl", "list", "--no-legend").stdout
        assert wait_for(lambda: "hello-detached" in sh(
            "journalctl", "-u", unit, "-o", "cat", "--no-pager", check=False).stdout)
        assert wait_for(lambda: "hello-detached" in sh(
            "journalctl", "-M", f"rkt-{uuid}", "-t", "busybox", "-o", "cat", "--no-pager",
            check=False).stdout)
        assert env("stop", uuid).stdout.strip() == f'"{uuid}"'
        assert wait_for(lambda: "state=exited" in env("status", uuid).stdout, 20)
        assert wait_for(lambda: _unit_state(unit) in ("inactive", ""), 20)
    finally:
        sh("systemctl", "stop", unit, check=False)


def test_detach_of_a_pod_that_fails_at_once(env: Rkt, aci: Path) -> None:
    before = _pods(env)
    cp = env("run", "--detach", INSECURE, str(aci), "--exec", "/bin/sh", "--", "-c", "exit 3",
             check=False, timeout=60)
    assert cp.returncode == 254, (cp.stdout, cp.stderr)
    line = cp.stderr.strip()
    assert len(line.splitlines()) == 1 and "journalctl -u rkt-" in line, line
    assert re.search(r"exited with status 3|did not start", line), line
    new = [p for p in _pods(env) if p not in before]
    assert len(new) == 1  # the exited pod stays for `rkt status`, like any other


def test_detach_refuses_interactive(env: Rkt, aci: Path) -> None:
    before = _pods(env)
    cp = env("run", "--detach", "--interactive", INSECURE, str(aci), check=False)
    assert cp.returncode == 254
    assert cp.stderr.strip() == ("run: --detach and --interactive cannot be used together")
    assert _pods(env) == before


def test_unit_file_with_gc_mark_only_on_stop(env: Rkt, aci: Path) -> None:
    """rkt's documented unit: ExecStart=rkt run ..., ExecStopPost=rkt gc --mark-only,
    KillMode=mixed, Delegate, machine.slice; started and stopped with systemctl."""
    name = f"rkt-app-{uuidlib.uuid4().hex[:8]}"
    unit_file = Path("/etc/systemd/system") / f"{name}.service"
    uf = env.uuid_file()
    rkt = " ".join(env.argv())
    unit_file.write_text(
        "[Unit]\nDescription=a pod run by a unit file\n\n[Service]\n"
        "Slice=machine.slice\nDelegate=true\nKillMode=mixed\n"
        f"ExecStart={rkt} run {INSECURE} --uuid-file-save={uf} {aci} --exec /bin/sh -- -c "
        "\"echo from-unit-file; exec sleep 600\"\n"
        f"ExecStopPost={rkt} gc --mark-only\n")
    try:
        sh("systemctl", "daemon-reload")
        sh("systemctl", "start", f"{name}.service")
        assert wait_for(lambda: uf.exists() and uf.read_text() != "", 30)
        uuid = uf.read_text()
        assert "state=running" in env("status", "--wait-ready=30s", uuid).stdout
        st = sh("systemctl", "status", "--no-pager", f"{name}.service", check=False).stdout
        assert "busybox.service" in st, st
        assert f"rkt-{uuid}" in sh("machinectl", "list", "--no-legend").stdout
        assert wait_for(lambda: "from-unit-file" in sh(
            "journalctl", "-u", f"{name}.service", "-o", "cat", "--no-pager",
            check=False).stdout)
        sh("systemctl", "stop", f"{name}.service")
        # ExecStopPost marked the exited pod: it is in exited-garbage now
        assert (env.data / "pods" / "exited-garbage" / uuid).is_dir()
        assert "state=exited garbage" in env("status", uuid).stdout
        assert f"rkt-{uuid}" not in sh("machinectl", "list", "--no-legend").stdout
    finally:
        sh("systemctl", "stop", f"{name}.service", check=False)
        unit_file.unlink(missing_ok=True)
        sh("systemctl", "daemon-reload", check=False)
        sh("systemctl", "reset-failed", f"{name}.service", check=False)


def test_pod_name(env: Rkt, aci: Path) -> None:
    cp = env("run", "--detach", "--pod-name=web-1", INSECURE, str(aci), "--exec", "/bin/sleep",
             "--", "600", timeout=60)
    uuid = cp.stdout.strip()
    try:
        rows = [re.split(r"\t+", ln) for ln in env("list").stdout.splitlines()]
        assert rows[0][-1] == "POD NAME"
        row = next(r for r in rows if r[0] == uuid[:8])
        assert row[-1] == "web-1", row
        pod = next(p for p in json.loads(env("list", "--format=json").stdout)
                   if p["name"] == uuid)
        assert pod["pod_name"] == "web-1"
        st = env("status", "web-1").stdout
        assert "state=running" in st and "pod-name=web-1" in st, st
        # unique: a second pod cannot take it, and nothing is left of the attempt
        before = _pods(env)
        dup = env("run", "--pod-name=web-1", INSECURE, str(aci), "--exec", "/bin/true",
                  check=False)
        assert dup.returncode == 254
        assert dup.stderr.strip().startswith(
            f'run: pod name "web-1" is already used by pod {uuid}'), dup.stderr
        assert _pods(env) == before
        bad = env("run", "--pod-name=Web_1", INSECURE, str(aci), check=False)
        assert bad.returncode == 254 and 'invalid pod name "Web_1"' in bad.stderr
        # usable wherever a UUID is
        assert "sleep" in " ".join(json.loads(env("cat-manifest", "web-1").stdout)
                                   ["apps"][0]["app"]["exec"])
        assert env("stop", "web-1").stdout.strip() == f'"{uuid}"'
        assert wait_for(lambda: "state=exited" in env("status", "web-1").stdout, 20)
        env("rm", "web-1")
        assert not any(uuid in p for p in _pods(env))
        # the name is free again
        uf = env.uuid_file()
        env("run", "--pod-name=web-1", f"--uuid-file-save={uf}", INSECURE, str(aci),
            "--exec", "/bin/true")
        assert env("status", "web-1").stdout.startswith("state=exited")
        assert uf.read_text() in env("status", "--format=json", "web-1").stdout
    finally:
        sh("systemctl", "stop", f"rkt-{uuid}.service", check=False)


def test_pod_manifest(env: Rkt, aci: Path, tmp_path: Path) -> None:
    key = env("fetch", INSECURE, str(aci)).stdout.strip()
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    manifest = {
        "acVersion": "0.8.11", "acKind": "PodManifest",
        "apps": [{
            "name": "first",
            "image": {"id": key},
            "app": {"exec": ["/bin/sh", "-c", "echo from-manifest $GREETING; "
                             "echo written > /data/out"],
                    "user": "0", "group": "0",
                    "environment": [{"name": "GREETING", "value": "hi"}]},
            "mounts": [{"volume": "data", "path": "/data"}],
        }],
        "volumes": [{"name": "data", "kind": "host", "source": str(host_dir)}],
    }
    mf = tmp_path / "pod.json"
    mf.write_text(json.dumps(manifest))
    uf = env.uuid_file()
    cp = env("run", f"--pod-manifest={mf}", f"--uuid-file-save={uf}", "--hostname=mf-host")
    assert cp.stdout == "from-manifest hi\n"
    assert (host_dir / "out").read_text() == "written\n"
    shown = json.loads(env("cat-manifest", uf.read_text()).stdout)
    assert shown["apps"][0]["name"] == "first"
    assert shown["apps"][0]["image"]["name"] == "example.com/busybox"
    assert re.fullmatch(r"sha512-[0-9a-f]{64}", shown["apps"][0]["image"]["id"])
    assert shown["volumes"][0]["source"] == str(host_dir)

    before = _pods(env)
    for extra in (["--volume=v,kind=empty"], ["--set-env=A=B"], ["--inherit-env"],
                  ["--mount=volume=data,target=/x"], ["--pull-policy=never"], [str(aci)]):
        bad = env("run", f"--pod-manifest={mf}", *extra, check=False)
        assert bad.returncode == 254, extra
        assert bad.stderr.startswith("run: conflicting flags set with --pod-manifest"), \
            bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"acKind": "PodManifest", "acVersion": "0.8.11", "apps": [{}]}')
    cp = env("run", f"--pod-manifest={bad_json}", check=False)
    assert cp.returncode == 254 and "pod manifest" in cp.stderr
    unknown = dict(manifest, apps=[dict(manifest["apps"][0],  # type: ignore[arg-type]
                                        image={"id": "sha512-" + "0" * 64})])
    mf2 = tmp_path / "unknown.json"
    mf2.write_text(json.dumps(unknown))
    cp = env("run", f"--pod-manifest={mf2}", check=False)
    assert cp.returncode == 254 and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    missing = dict(manifest, volumes=[{"name": "data", "kind": "host",
                                       "source": str(tmp_path / "nope")}])
    mf3 = tmp_path / "missing.json"
    mf3.write_text(json.dumps(missing))
    cp = env("run", f"--pod-manifest={mf3}", check=False)
    assert cp.returncode == 254 and "does not exist" in cp.stderr, cp.stderr
    assert _pods(env) == before


def test_prepare_by_manifest_and_name_then_run_prepared_detached(env: Rkt, aci: Path,
                                                                  tmp_path: Path) -> None:
    key = env("fetch", INSECURE, str(aci)).stdout.strip()
    mf = tmp_path / "pod.json"
    mf.write_text(json.dumps({
        "acVersion": "0.8.11", "acKind": "PodManifest",
        "apps": [{"name": "svc", "image": {"id": key},
                  "app": {"exec": ["/bin/sh", "-c", "echo svc-up; exec sleep 600"],
                          "user": "0", "group": "0"}}]}))
    uuid = env("prepare", "--quiet", "--pod-name=svc-pod", f"--pod-manifest={mf}").stdout.strip()
    assert re.fullmatch(UUID_RE, uuid)
    assert "state=prepared" in env("status", "svc-pod").stdout
    try:
        assert env("run-prepared", "--detach", "svc-pod", timeout=60).stdout.strip() == uuid
        assert _unit_state(f"rkt-{uuid}.service") == "active"
        assert wait_for(lambda: "svc-up" in sh("journalctl", "-u", f"rkt-{uuid}.service",
                                               "-o", "cat", "--no-pager", check=False).stdout)
        env("stop", "svc-pod")
        assert wait_for(lambda: "state=exited" in env("status", "svc-pod").stdout, 20)
    finally:
        sh("systemctl", "stop", f"rkt-{uuid}.service", check=False)
