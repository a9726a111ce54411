"""Pods as systemd machines: rkt run / list / status / stop / rm / gc in a real systemd."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, destroy, new_env, sh, wait_file, wait_for

pytestmark = pytest.mark.integration
INSECURE = "--insecure-options=image"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0",
                     exec_=("/bin/sh", "-c", "echo image default"))


@pytest.fixture(scope="module")
def aci2(env: Rkt) -> Path:
    return build_aci(env.work / "other.aci", name="example.com/other", version="2.0",
                     exec_=("/bin/true",), compress="gzip")


def test_fetch_prints_short_id_and_image_commands(env: Rkt, aci: Path) -> None:
    cp = env("fetch", INSECURE, str(aci))
    image_id = cp.stdout.strip()
    assert re.fullmatch(r"sha512-[0-9a-f]{32}", image_id), cp.stdout
    lines = env("image", "list").stdout.splitlines()
    assert lines[0].split("\t")[0] == "ID" and "LAST USED" in lines[0]
    assert any(line.startswith(image_id[:19]) and "example.com/busybox:1.0" in line
               for line in lines[1:])
    m = json.loads(env("image", "cat-manifest", image_id[:12]).stdout)
    assert m["name"] == "example.com/busybox" and m["acKind"] == "ImageManifest"


def test_run_echo_prints_and_exits_zero(env: Rkt, aci: Path) -> None:
    cp = env("run", INSECURE, str(aci), "--exec", "/bin/echo", "--", "hello")
    assert cp.stdout == "hello\n", (cp.stdout, cp.stderr)


def test_run_relays_stdout_and_stderr_raw(env: Rkt, aci: Path) -> None:
    # the pod console merges both streams, as rkt's did; bytes pass unchanged (no \r\n)
    cp = env("run", INSECURE, str(aci), "--exec", "/bin/sh", "--", "-c",
             "echo out; echo err >&2; printf 'a\\tb\\n'", input="")
    assert cp.stdout == "out\nerr\na\tb\n", repr(cp.stdout)
    assert cp.returncode == 0


def test_run_uses_image_exec_by_default(env: Rkt, aci: Path) -> None:
    assert env("run", INSECURE, str(aci)).stdout == "image default\n"


def test_run_returns_app_exit_code(env: Rkt, aci: Path) -> None:
    cp = env("run", INSECURE, str(aci), "--exec", "/bin/sh", "--", "-c", "exit 7", check=False)
    assert cp.returncode == 7, cp.stderr


def test_two_apps_one_pod_first_failure_wins(env: Rkt, aci: Path, aci2: Path) -> None:
    uf = env.uuid_file()
    cp = env("run", INSECURE, f"--uuid-file-save={uf}", str(aci2), "--exec", "/bin/true",
             str(aci), "--exec", "/bin/sh", "--", "-c", "exit 3", check=False)
    assert cp.returncode == 3, cp.stderr
    uuid = uf.read_text()
    st = env("status", uuid[:8]).stdout.splitlines()
    assert st[0] == "state=exited"
    assert "exited=true" in st
    assert "app-other=0" in st and "app-busybox=3" in st
    assert re.match(r"created=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+$", st[1])
    manifest = json.loads(env("cat-manifest", uuid).stdout)
    assert [a["name"] for a in manifest["apps"]] == ["other", "busybox"]
    assert manifest["apps"][1]["app"]["exec"] == ["/bin/sh", "-c", "exit 3"]


def test_list_formats(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/true")
    uuid = uf.read_text()
    lines = env("list").stdout.splitlines()
    assert re.split(r"\t+", lines[0]) == ["UUID", "APP", "IMAGE NAME", "STATE", "CREATED",
                                          "STARTED", "NETWORKS", "POD NAME"]
    row = next(line for line in lines if line.startswith(uuid[:8]))
    cells = re.split(r"\t+", row)
    assert cells[:4] == [uuid[:8], "busybox", "example.com/busybox:1.0", "exited"]
    assert cells[4].endswith("ago") or cells[4] == "now"
    full = env("list", "--full", "--no-legend").stdout.splitlines()
    row = next(line for line in full if line.startswith(uuid))
    cells = re.split(r"\t+", row)
    assert re.fullmatch(r"sha512-[0-9a-f]{12}", cells[3]) and cells[4] == "exited"
    pods = json.loads(env("list", "--format=json").stdout)
    pod = next(p for p in pods if p["name"] == uuid)
    assert pod["state"] == "exited" and pod["apps"][0]["name"] == "busybox"
    assert pod["apps"][0]["exit_code"] == 0 and pod["apps"][0]["state"] == "exited"


def _start_sleeper(env: Rkt, aci: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh",
                  "--", "-c", "echo started; exec sleep 600", *extra)
    uuid = wait_file(uf)
    st = env("status", "--wait-ready=30s", uuid).stdout
    assert "state=running" in st, st
    return p, uuid


def _peek(p: subprocess.Popen[str]) -> str:
    """What a running `rkt run` printed so far (non-blocking read of its stdout)."""
    import select

    assert p.stdout is not None
    fd = p.stdout.fileno()
    os.set_blocking(fd, False)
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data.decode())
    _peek.seen = getattr(_peek, "seen", "") + "".join(chunks)  # type: ignore[attr-defined]
    return _peek.seen  # type: ignore[attr-defined,no-any-return]


def test_running_pod_is_a_machine_unit_and_journal(env: Rkt, aci: Path) -> None:
    p, uuid = _start_sleeper(env, aci)
    machine, unit = f"rkt-{uuid}", f"rkt-{uuid}.service"
    try:
        # the app's output, in the pod's own journal under the app's name
        assert wait_for(lambda: "started" in sh("journalctl", "-M", machine, "-t", "busybox",
                                                "--no-pager", "-o", "cat", check=False).stdout)
        ml = sh("machinectl", "list", "--no-legend").stdout
        assert re.search(rf"^{machine}\s+container\s+rkt", ml, re.M), ml
        st = sh("systemctl", "status", "--no-pager", "-l", unit, check=False).stdout
        assert "busybox.service" in st and "payload" in st and "supervisor" in st, st
        assert "init.scope" in st and "systemd-nspawn" in st and "sleep 600" in st, st
        # the app's output also reached the caller of `rkt run`
        assert wait_for(lambda: "started" in _peek(p))
        jl = sh("journalctl", "-u", unit, "--no-pager", check=False).stdout
        assert "rkt pod" in jl or "Started" in jl, jl
        status = env("status", uuid).stdout.splitlines()
        assert "state=running" in status and "exited=false" in status
        assert any(line.startswith("pid=") for line in status)
        t0 = time.monotonic()
        sh("machinectl", "poweroff", machine)
        assert p.wait(timeout=30) is not None
        elapsed = time.monotonic() - t0
        assert elapsed < 10, elapsed
        assert wait_for(lambda: "state=exited" in env("status", uuid).stdout, 10)
        assert sh("systemctl", "is-active", unit, check=False).stdout.strip() in (
            "inactive", "failed", "unknown")
    finally:
        if p.poll() is None:
            env("stop", "--force", uuid, check=False)
            p.wait(timeout=30)


def test_stop_rm_and_gc(env: Rkt, aci: Path) -> None:
    p, uuid = _start_sleeper(env, aci)
    out = env("stop", uuid[:10]).stdout
    assert out.strip() == f'"{uuid}"'
    p.wait(timeout=30)
    assert wait_for(lambda: "state=exited" in env("status", uuid).stdout, 10)
    again = env("stop", uuid, check=False)
    assert again.returncode == 254 and "already stopped" in again.stderr
    journal = Path("/var/log/journal") / uuid.replace("-", "")
    assert journal.is_dir() and not journal.is_symlink()  # nspawn --link-journal=try-host
    assert env("rm", uuid).stdout.strip() == f'"{uuid}"'
    assert not journal.exists()  # stage1 gc removed it
    assert uuid not in Path("/proc/self/mountinfo").read_text()
    assert not list(env.data.glob(f"pods/*/{uuid}"))
    gone = env("status", uuid, check=False)
    assert gone.returncode == 254 and "no matches found" in gone.stderr
    # gc: mark, then sweep with no grace period
    uf = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/true")
    u2 = uf.read_text()
    cp = env("gc", "--grace-period=0s")
    assert f'moving pod "{u2}" to garbage' in cp.stderr
    assert f'Garbage collecting pod "{u2}"' in cp.stdout
    assert not list(env.data.glob(f"pods/*/{u2}"))
    assert u2[:8] not in env("list").stdout


def test_gc_respects_grace_period(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/true")
    uuid = uf.read_text()
    cp = env("gc")
    assert f'pod "{uuid}" not removed: still within grace period (30m0s)' in cp.stderr
    assert "state=exited garbage" in env("status", uuid).stdout
    env("gc", "--grace-period=0s")


def test_run_as_main_process_of_a_service_keeps_that_unit(env: Rkt, aci: Path) -> None:
    unit = f"web-{int(time.time() * 1000) % 10**8}"
    uf = env.uuid_file()
    sh("systemd-run", f"--unit={unit}", "--property=Delegate=yes", "--slice=machine.slice",
       *env.argv("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh",
                 "--", "-c", "echo from-unit; exec sleep 600"))
    try:
        uuid = wait_file(uf)
        assert "state=running" in env("status", "--wait-ready=30s", uuid).stdout
        # no second unit: the pod lives in the caller's unit
        assert sh("systemctl", "is-active", f"rkt-{uuid}.service",
                  check=False).stdout.strip() != "active"
        assert wait_for(lambda: "from-unit" in sh("journalctl", "-M", f"rkt-{uuid}", "-t",
                                                  "busybox", "-o", "cat", "--no-pager",
                                                  check=False).stdout)
        st = sh("systemctl", "status", "--no-pager", "-l", f"{unit}.service", check=False).stdout
        assert "busybox.service" in st and "sleep 600" in st, st
        ml = sh("machinectl", "list", "--no-legend").stdout
        assert f"rkt-{uuid}" in ml
        # the console (the pod's stdout) goes to the unit's journal
        assert wait_for(lambda: "from-unit" in sh("journalctl", "-u", f"{unit}.service", "-o",
                                                  "cat", "--no-pager", check=False).stdout)
        t0 = time.monotonic()
        sh("systemctl", "stop", f"{unit}.service")
        assert time.monotonic() - t0 < 15
        assert wait_for(lambda: "state=exited" in env("status", uuid).stdout, 10)
    finally:
        sh("systemctl", "stop", f"{unit}.service", check=False)
        sh("systemctl", "reset-failed", f"{unit}.service", check=False)


@pytest.mark.parametrize("docker", [False, True])
def test_image_mount_points_get_implicit_volumes(env: Rkt, docker: bool) -> None:
    """rkt: an unbound mountPoint gets an empty volume; for docker-converted images it is
    pre-filled with the image's content at that path (appc/docker2aci#141)."""
    extra: dict[str, object] = {}
    if docker:
        extra["annotations"] = [{"name": "appc.io/docker/repository", "value": "library/x"}]
    aci = build_aci(env.work / f"vol-{docker}.aci", name=f"example.com/vol{int(docker)}",
                    files={"data/from-image": b"image content\n"},
                    app_extra={"mountPoints": [{"name": "data", "path": "/data"}]},
                    manifest_extra=extra)
    uf = env.uuid_file()
    cp = env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh", "--",
             "-c", "ls /data; echo written > /data/new; cat /data/new")
    lines = cp.stdout.splitlines()
    assert ("from-image" in lines) is docker, cp.stdout
    assert lines[-1] == "written"
    uuid = uf.read_text()
    manifest = json.loads(env("cat-manifest", uuid).stdout)
    assert manifest["volumes"] == [{"name": "data", "kind": "empty", "readOnly": False,
                                    "mode": "0755", "uid": 0, "gid": 0}]
    assert manifest["apps"][0]["mounts"] == [{"volume": "data", "path": "/data"}]
    vol = next(env.data.glob(f"pods/*/{uuid}")) / "sharedVolumes" / "data"
    assert (vol / "new").read_text() == "written\n"  # the volume, not the app's rootfs


def test_prepare_then_run_prepared(env: Rkt, aci: Path) -> None:
    cp = env("prepare", "--quiet", INSECURE, str(aci), "--exec", "/bin/echo", "--", "prepared")
    uuid = cp.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", uuid), cp.stdout
    assert "state=prepared" in env("status", uuid).stdout
    assert env("run-prepared", uuid[:12]).stdout == "prepared\n"
    assert "state=exited" in env("status", uuid).stdout
    again = env("run-prepared", uuid, check=False)
    assert again.returncode == 254 and "not prepared" in again.stderr, again.stderr


def test_expired_prepared_pods_are_collected(env: Rkt, aci: Path) -> None:
    uuid = env("prepare", "--quiet", INSECURE, str(aci)).stdout.strip()
    cp = env("gc", "--expire-prepared=0s", "--grace-period=0s")
    assert f'moving expired prepared pod "{uuid}" to garbage' in cp.stderr
    assert f'Garbage collecting pod "{uuid}"' in cp.stdout


def test_environment_precedence(env: Rkt) -> None:
    """rkt: inherited env < image env < --set-env-file < --set-env < --environment; defaults
    (PATH, HOME, ...) and AC_APP_NAME always set."""
    aci = build_aci(env.work / "env.aci", name="example.com/envtest",
                    app_extra={"environment": [{"name": "A", "value": "image"},
                                               {"name": "B", "value": "image"},
                                               {"name": "C", "value": "image"}]})
    envfile = env.work / "env.list"
    envfile.write_text("# comment\n; also a comment\n\nB=file\nC=file\nD=file,with,commas\n")
    cp = env("run", INSECURE, "--inherit-env", f"--set-env-file={envfile}", "--set-env=C=flag",
             str(aci), "--environment=E=app", "--exec", "/bin/env",
             env={**os.environ, "A": "parent", "INHERITED": "yes"})
    got = dict(line.split("=", 1) for line in cp.stdout.splitlines())
    assert got["INHERITED"] == "yes" and got["A"] == "image"
    assert got["B"] == "file" and got["C"] == "flag" and got["D"] == "file,with,commas"
    assert got["E"] == "app" and got["AC_APP_NAME"] == "envtest"
    assert got["HOME"] == "/root" and got["PATH"].startswith("/usr/local/sbin")


def test_host_and_empty_volumes_with_mounts(env: Rkt, aci: Path) -> None:
    host = env.work / "hostdir"
    host.mkdir()
    (host / "hello.txt").write_text("from host\n")
    cp = env("run", INSECURE, f"--volume=h,kind=host,source={host}",
             "--volume=ro,kind=host,source=" + str(host) + ",readOnly=true",
             "--volume=scratch,kind=empty,mode=0700", str(aci),
             "--mount=volume=h,target=/mnt/h", "--mount=volume=ro,target=/mnt/ro",
             "--mount=volume=scratch,target=/scratch", "--exec", "/bin/sh", "--", "-c",
             "cat /mnt/h/hello.txt; echo new > /mnt/h/new.txt; "
             "(echo x > /mnt/ro/x) 2>/dev/null || echo ro-refused; "
             "ls -ld /scratch | cut -c1-10")
    assert cp.stdout.splitlines() == ["from host", "ro-refused", "drwx------"], cp.stdout
    assert (host / "new.txt").read_text() == "new\n"
    assert not (host / "x").exists()


def test_volume_and_mount_errors(env: Rkt, aci: Path) -> None:
    for args, needle in (
        (["--volume=v,kind=host,source=/no/such/dir", str(aci)], "does not exist"),
        (["--volume=v,kind=bogus", str(aci)], "kind must be host or empty"),
        ([str(aci), "--mount=volume=nope,target=/x"], 'unknown volume "nope"'),
        ([str(aci), "--mount=target=/x"], "volume=NAME,target=PATH"),
    ):
        cp = env("run", INSECURE, *args, check=False)
        assert cp.returncode == 254 and needle in cp.stderr, (args, cp.stderr)
        assert len(cp.stderr.splitlines()) == 1


def test_user_group_working_dir_and_hostname(env: Rkt, aci: Path) -> None:
    """--user/--group by name from the image's /etc/passwd|group, by number, --working-dir,
    --hostname (default rkt-<uuid>)."""
    cp = env("run", INSECURE, "--hostname=web1", str(aci), "--user=user", "--group=users",
             "--working-dir=/tmp", "--exec", "/bin/sh", "--", "-c",
             "id -u; id -g; pwd; hostname")
    assert cp.stdout.splitlines() == ["1000", "100", "/tmp", "web1"], cp.stdout
    uf = env.uuid_file()
    cp = env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--user=4242", "--group=4343",
             "--exec", "/bin/sh", "--", "-c", "id -u; id -g; hostname")
    assert cp.stdout.splitlines() == ["4242", "4343", f"rkt-{uf.read_text()}"], cp.stdout
    bad = env("run", INSECURE, str(aci), "--user=nosuchuser", "--exec", "/bin/true",
              check=False)
    assert bad.returncode == 254 and 'user "nosuchuser" not found' in bad.stderr, bad.stderr


def test_user_and_group_from_a_file_path(env: Rkt) -> None:
    """appc: a user/group that is an absolute path means the owner of that file in the
    image."""
    aci = build_aci(env.work / "owned.aci", name="example.com/owned",
                    files={"etc/app-owner": b"x"}, owners={"etc/app-owner": (2345, 3456)})
    cp = env("run", INSECURE, str(aci), "--user=/etc/app-owner", "--group=/etc/app-owner",
             "--exec", "/bin/sh", "--", "-c", "id -u; id -g")
    assert cp.stdout.splitlines() == ["2345", "3456"], cp.stdout
    bad = env("run", INSECURE, str(aci), "--user=/etc/nope", "--exec", "/bin/true", check=False)
    assert bad.returncode == 254 and 'user file "/etc/nope" not found' in bad.stderr, bad.stderr


def test_exited_pod_journal_stays_readable(env: Rkt, aci: Path) -> None:
    """rkt #1528: the pod's journal is the host's /var/log/journal/<machine-id> (nspawn
    --link-journal=try-host), readable after the pod exited, removed by `rkt rm`."""
    # without the host directory nspawn would silently keep the journal inside the pod
    assert Path("/var/log/journal").is_dir()
    uf = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh", "--", "-c",
        "echo kept-in-journal")
    uuid = uf.read_text()
    mid = uuid.replace("-", "")
    journal = Path("/var/log/journal") / mid
    assert journal.is_dir() and not journal.is_symlink(), journal
    assert list(journal.glob("*.journal")), list(journal.iterdir())
    assert "state=exited" in env("status", uuid).stdout
    cp = sh("journalctl", f"--directory={journal}", "-t", "busybox", "-o", "cat", "--no-pager")
    assert "kept-in-journal" in cp.stdout, cp.stdout
    # rkt's documented way: the host's journalctl, all journals merged (-m)
    cp = sh("journalctl", "-m", f"_MACHINE_ID={mid}", "-o", "cat", "--no-pager")
    assert "kept-in-journal" in cp.stdout, cp.stdout
    env("rm", uuid)
    assert not journal.exists() and not journal.is_symlink()


def test_export_of_an_exited_pod(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    env("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh", "--", "-c",
        "echo changed > /etc/added; rm /etc/group")
    uuid = uf.read_text()
    out = env.work / "exported.aci"
    env("export", uuid, str(out))
    cp = env("run", INSECURE, str(out), "--exec", "/bin/sh", "--", "-c",
             "cat /etc/added; test -e /etc/group && echo group-still-there || echo group-gone")
    assert cp.stdout.splitlines() == ["changed", "group-gone"], cp.stdout
    again = env("export", uuid, str(out), check=False)
    assert again.returncode == 254 and "--overwrite" in again.stderr
    env("export", "--overwrite", uuid, str(out))
    assert uuid not in Path("/proc/self/mountinfo").read_text()


def test_supplementary_gids(env: Rkt, aci: Path) -> None:
    cp = env("run", INSECURE, str(aci), "--user=1000", "--group=100",
             "--supplementary-gids=2000,3000", "--exec", "/bin/id", "--", "-G")
    assert sorted(cp.stdout.split()) == ["100", "2000", "3000"], cp.stdout


def test_stop_force_kills_at_once(env: Rkt, aci: Path) -> None:
    p, uuid = _start_sleeper(env, aci)
    t0 = time.monotonic()
    assert env("stop", "--force", uuid).stdout.strip() == f'"{uuid}"'
    p.wait(timeout=30)
    assert time.monotonic() - t0 < 10
    assert wait_for(lambda: "state=exited" in env("status", uuid).stdout, 10)


def test_notify_service_is_active_when_the_pod_is_ready(env: Rkt, aci: Path) -> None:
    """`systemd-run --service-type=notify rkt run ...`: the start job ends when the pod's apps
    are up (nspawn forwards the nested systemd's READY=1)."""
    unit = f"notify-{int(time.time() * 1000) % 10**8}"
    uf = env.uuid_file()
    try:
        sh("systemd-run", f"--unit={unit}", "--service-type=notify", "--property=Delegate=yes",
           *env.argv("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh",
                     "--", "-c", "exec sleep 600"))
        # systemd-run returned: the start job is done, so the pod must already be ready
        assert sh("systemctl", "is-active", f"{unit}.service").stdout.strip() == "active"
        uuid = uf.read_text()
        # already ready: waiting at most 100 ms succeeds
        st = env("status", "--wait-ready=100ms", uuid).stdout
        assert "state=running" in st
    finally:
        sh("systemctl", "stop", f"{unit}.service", check=False)
        sh("systemctl", "reset-failed", f"{unit}.service", check=False)


def test_gc_of_twenty_pods_leaves_nothing(aci: Path) -> None:
    e = new_env("gc20")
    try:
        for _ in range(20):
            e("run", INSECURE, str(aci), "--exec", "/bin/true")
        cp = e("gc", "--grace-period=0s")
        assert cp.stdout.count("Garbage collecting pod") == 20
        assert not [p for p in (e.data / "pods").rglob("*") if not p.is_dir()]
        assert str(e.data) not in Path("/proc/self/mountinfo").read_text()
        machines = sh("machinectl", "list", "--no-legend").stdout
        assert "rkt-" not in machines, machines
        units = sh("systemctl", "list-units", "--all", "--no-legend", "rkt-*").stdout
        assert units.strip() == "", units
    finally:
        destroy(e)


def test_readonly_rootfs_keeps_writable_volumes(env: Rkt, aci: Path) -> None:
    cp = env("run", INSECURE, "--volume=data,kind=empty", str(aci), "--readonly-rootfs",
             "--mount=volume=data,target=/data", "--exec", "/bin/sh", "--", "-c",
             "(echo x > /etc/x) 2>/dev/null && echo rootfs-writable || echo rootfs-ro; "
             "echo y > /data/y && cat /data/y")
    assert cp.stdout.splitlines() == ["rootfs-ro", "y"], cp.stdout
