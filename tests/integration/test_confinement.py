"""Per-app confinement under systemd: rkt's defaults, the isolator flags, the image's isolators
and their CLI override, the insecure options, resource properties, rkt enter, glibc programs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.helpers.probe import GLIBC_PROGRAMS, build_probe, build_probe_aci
from tests.integration.rktenv import Rkt, sh, wait_file

INSECURE = "--insecure-options=image"
STATUS = "grep -E '^(CapBnd|Seccomp|NoNewPrivs):' /proc/self/status"
DEFAULT_CAPBND = "00000000a80425fb"  # appc's 14


@pytest.fixture(scope="module")
def probe(env: Rkt) -> Path:
    return build_probe(env.work / "probe")


@pytest.fixture(scope="module")
def aci(env: Rkt, probe: Path) -> Path:
    return build_probe_aci(env.work / "probe.aci", probe)


def run_sh(env: Rkt, aci: Path, script: str, *flags: str, app_flags: tuple[str, ...] = (),
           check: bool = True) -> subprocess.CompletedProcess[str]:
    return env("run", INSECURE, *flags, str(aci), *app_flags, "--exec", "/bin/sh", "--", "-c",
               script, check=check)


def status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def test_default_confinement(env: Rkt, aci: Path) -> None:
    s = status(run_sh(env, aci, STATUS + "; /probe mount-tmpfs /tmp; /probe chown /etc/probe-file"
                      ).stdout)
    assert s["CapBnd"] == DEFAULT_CAPBND, s
    assert s["Seccomp"] == "2", s
    assert s["NoNewPrivs"] == "0", s  # a root app: as rkt
    assert s["mount-tmpfs"] == "EPERM", s
    assert s["chown"] == "ok", s  # CAP_CHOWN is one of appc's 14


def test_non_root_app_has_no_new_privileges(env: Rkt, aci: Path) -> None:
    s = status(run_sh(env, aci, STATUS, app_flags=("--user=1000", "--group=100")).stdout)
    assert s["NoNewPrivs"] == "1", s


def test_glibc_programs_run_under_the_default_filter(env: Rkt, aci: Path) -> None:
    """clone3 (pthread_create in sort --parallel), statx (ls, stat), close_range, faccessat2...
    rkt's 2016 list would have killed them with SIGSYS."""
    assert "/usr/bin/sort" in GLIBC_PROGRAMS
    cp = run_sh(env, aci, "printf '3\\n1\\n2\\n' > /tmp/in; /usr/bin/sort --parallel=4 "
                "-S 1M /tmp/in; /usr/bin/ls -l /etc/probe-file; /usr/bin/stat -c %s "
                "/etc/probe-file; /usr/bin/cp /etc/probe-file /tmp/x && echo copied")
    lines = cp.stdout.splitlines()
    assert lines[:3] == ["1", "2", "3"], cp
    assert "probe-file" in lines[3] and lines[4] == "14" and lines[5] == "copied", cp


def test_caps_retain_and_remove(env: Rkt, aci: Path) -> None:
    s = status(run_sh(env, aci, STATUS + "; /probe chown /etc/probe-file; /probe bind-low-port",
                      app_flags=("--caps-retain=CAP_NET_BIND_SERVICE",)).stdout)
    assert s["CapBnd"] == "0000000000000400", s
    assert s["chown"] == "EPERM" and s["bind-low-port"] == "ok", s
    s = status(run_sh(env, aci, STATUS + "; /probe chown /etc/probe-file",
                      app_flags=("--caps-remove=CAP_CHOWN,CAP_SYS_ADMIN",)).stdout)
    assert s["CapBnd"] == "00000000a80425fa", s
    assert s["chown"] == "EPERM", s


def test_seccomp_remove_with_errno(env: Rkt, aci: Path) -> None:
    s = status(run_sh(env, aci, STATUS + "; /probe mkdir /tmp/d; /probe chown /etc/probe-file",
                      app_flags=("--seccomp", "mode=remove,errno=ENOTSUP,mkdir,mkdirat")).stdout)
    assert s["mkdir"] == "EOPNOTSUPP", s  # ENOTSUP is EOPNOTSUPP on Linux
    assert s["chown"] == "ok", s


def test_seccomp_retain_kills_what_is_not_listed(env: Rkt, aci: Path) -> None:
    """A retain set without errno is rkt's: anything else is killed (SIGSYS)."""
    cp = run_sh(env, aci, "/probe mkdir /tmp/d",
                app_flags=("--seccomp", "mode=retain,@rkt/default-whitelist,execve"),
                check=False)
    assert "mkdir: ok" in cp.stdout, cp
    cp = run_sh(env, aci, "/probe ptrace",
                app_flags=("--seccomp", "mode=retain,errno=ENOSYS,@rkt/default-whitelist"),
                check=False)
    assert "ptrace: ENOSYS" in cp.stdout, cp


def _image_with(env: Rkt, probe: Path, name: str, isolators: list[dict[str, object]]) -> Path:
    return build_probe_aci(env.work / f"{name}.aci", probe, name=f"example.com/{name}",
                           app_extra={"isolators": isolators}, glibc=False)


def test_image_isolators_and_their_cli_override(env: Rkt, probe: Path) -> None:
    img = _image_with(env, probe, "isolated", [
        {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE"]}},
        {"name": "os/linux/no-new-privileges", "value": True},
        {"name": "os/linux/seccomp-remove-set", "value": {"set": ["mkdir", "mkdirat"],
                                                          "errno": "EROFS"}}])
    s = status(run_sh(env, img, STATUS + "; /probe mkdir /tmp/d").stdout)
    assert s["CapBnd"] == "0000000000000400" and s["NoNewPrivs"] == "1", s
    assert s["mkdir"] == "EROFS", s
    # --caps-remove replaces the image's retain set; --seccomp the image's filter
    s = status(run_sh(env, img, STATUS + "; /probe mkdir /tmp/d",
                      app_flags=("--caps-remove=CAP_KILL", "--seccomp",
                                 "mode=remove,errno=EACCES,mkdir,mkdirat")).stdout)
    assert s["CapBnd"] == "00000000a80425db", s
    assert s["mkdir"] == "EACCES", s


def test_bad_image_isolator_is_refused(env: Rkt, probe: Path) -> None:
    img = _image_with(env, probe, "badiso", [
        {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_FLY"]}}])
    pods = env.pod_files()
    cp = run_sh(env, img, "true", check=False)
    assert cp.returncode == 254, cp
    assert 'unknown capability "CAP_FLY"' in cp.stderr and len(cp.stderr.splitlines()) == 1, cp
    assert env.pod_files() == pods


@pytest.mark.parametrize(("flags", "message"), [
    (("--caps-retain=CAP_FLY",), 'unknown capability "CAP_FLY"'),
    (("--caps-retain=CAP_CHOWN", "--caps-remove=CAP_KILL"),
     "cannot use both --caps-retain and --caps-remove on the same image"),
    (("--seccomp=chown,chmod",), "invalid seccomp mode command-line override"),
    (("--seccomp=mode=retain,nosuchcall",), 'unknown syscall "nosuchcall"'),
    (("--memory=lots",), "error parsing request: quantities must match"),
    (("--cpu-shares=1",), "os/linux/cpu-shares must be between 2 and 262144, got 1"),
    (("--oom-score-adj=5000",), "os/linux/oom-score-adj must be between -1000 and 1000"),
])
def test_bad_isolator_flags(env: Rkt, aci: Path, flags: tuple[str, ...], message: str) -> None:
    before = sorted(p.name for p in env.data.rglob("*")) if env.data.exists() else []
    cp = env("run", INSECURE, str(aci), *flags, check=False)
    assert cp.returncode == 254, cp
    assert message in cp.stderr and len(cp.stderr.strip().splitlines()) == 1, cp
    assert "Traceback" not in cp.stderr
    after = sorted(p.name for p in env.data.rglob("*")) if env.data.exists() else []
    assert after == before  # nothing on disk


def test_insecure_options_lift_only_their_part(env: Rkt, aci: Path) -> None:
    s = status(run_sh(env, aci, STATUS + "; /probe unshare-user",
                      "--insecure-options=image,capabilities").stdout)
    assert s["CapBnd"] != DEFAULT_CAPBND and int(s["CapBnd"], 16) & (1 << 21), s  # SYS_ADMIN
    assert s["unshare-user"] == "EPERM", s  # the filter holds
    s = status(run_sh(env, aci, STATUS + "; /probe unshare-user",
                      "--insecure-options=image,seccomp").stdout)
    assert s["CapBnd"] == DEFAULT_CAPBND and s["unshare-user"] == "ok", s
    s = status(run_sh(env, aci, STATUS + "; /probe open-write /proc/sys/vm/panic_on_oom",
                      "--insecure-options=image,paths").stdout)
    assert s["CapBnd"] == DEFAULT_CAPBND and s["open-write"] == "ok", s


def _app_show(uuid: str, app: str, props: str) -> dict[str, str]:
    # `systemctl -M` needs a D-Bus daemon in the pod, which runs none (as rkt's stage1): ask
    # the pod's systemd on its private socket instead
    leader = sh("machinectl", "show", "-p", "Leader", "--value", f"rkt-{uuid}").stdout.strip()
    out = sh("nsenter", f"--target={leader}", "--mount", "--pid", "--", "systemctl", "show",
             f"{app}.service", "-p", props).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_resource_isolators_are_set_on_the_app_unit(env: Rkt, aci: Path) -> None:
    """Memory/CPU limits cannot be enforced on these machines (cgroup v1 holds the controllers,
    pods are cgroup2-only): the unit properties are what can be checked. OOMScoreAdjust >= 0 is
    applied (negative values need CAP_SYS_RESOURCE, which this machine lacks)."""
    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--name=app",
                  "--memory=50M", "--cpu=500m", "--cpu-shares=2048", "--oom-score-adj=300",
                  "--exec", "/bin/sh", "--", "-c", "cat /proc/self/oom_score_adj; exec sleep 600")
    uuid = wait_file(uf)
    try:
        assert "state=running" in env("status", "--wait-ready=30s", uuid).stdout
        props = _app_show(uuid, "app", "MemoryMax,CPUQuotaPerSecUSec,CPUShares,OOMScoreAdjust,"
                                       "DevicePolicy,NoNewPrivileges")
        assert props == {"MemoryMax": "50000000", "CPUQuotaPerSecUSec": "500ms",
                         "CPUShares": "2048", "OOMScoreAdjust": "300", "DevicePolicy": "closed",
                         "NoNewPrivileges": "no"}, props
    finally:
        env("stop", "--force", uuid, check=False)
        out, _ = p.communicate(timeout=30)
    assert out.splitlines()[0] == "300", out


def test_enter_is_confined_like_the_app(env: Rkt, aci: Path) -> None:
    """CVE-2019-10144/10145/10147: rkt enter gave full capabilities, no filter, no cgroup."""
    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--name=app",
                  "--caps-remove=CAP_CHOWN", "--exec", "/bin/sh", "--", "-c", "exec sleep 600")
    uuid = wait_file(uf)
    try:
        assert "state=running" in env("status", "--wait-ready=30s", uuid).stdout
        s = status(env("enter", uuid, "/bin/sh", "-c",
                       STATUS + "; /probe mount-tmpfs /tmp; /probe chown /etc/probe-file; "
                       "/probe unshare-user; /probe ptrace; cat /proc/self/cgroup").stdout)
        assert s["CapBnd"] == "00000000a80425fa" and s["Seccomp"] == "2", s
        assert s["mount-tmpfs"] == "EPERM" and s["chown"] == "EPERM", s
        assert s["unshare-user"] == "EPERM" and s["ptrace"] == "EPERM", s
        assert s["0"].startswith(":/system.slice/rkt-enter-"), s  # a cgroup of the pod
    finally:
        env("stop", "--force", uuid, check=False)
        p.communicate(timeout=30)


def test_pod_holds_only_what_its_apps_and_stage1_need(env: Rkt, aci: Path) -> None:
    """nspawn's default set is narrowed (rkt passed --capability per app): the pod's systemd
    has neither CAP_SYS_PTRACE nor CAP_DAC_READ_SEARCH (open_by_handle_at) unless an app asks."""
    uf = env.uuid_file()
    p = env.popen("run", INSECURE, f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh",
                  "--", "-c", "exec sleep 600")
    uuid = wait_file(uf)
    try:
        assert "state=running" in env("status", "--wait-ready=30s", uuid).stdout
        leader = sh("machinectl", "show", "-p", "Leader", "--value", f"rkt-{uuid}").stdout.strip()
        capbnd = int(status(Path(f"/proc/{leader}/status").read_text())["CapBnd"], 16)
        for bit, name in ((19, "CAP_SYS_PTRACE"), (2, "CAP_DAC_READ_SEARCH"),
                          (16, "CAP_SYS_MODULE"), (9, "CAP_LINUX_IMMUTABLE")):
            assert not capbnd & (1 << bit), f"pod init holds {name}: {capbnd:016x}"
        assert capbnd & (1 << 21)  # CAP_SYS_ADMIN: the pod's systemd sets its apps up
    finally:
        env("stop", "--force", uuid, check=False)
        p.communicate(timeout=30)


def test_annotations_and_user_labels_reach_the_pod_manifest(env: Rkt) -> None:
    img = build_aci(env.work / "plain.aci", name="example.com/plain", version="1.0")
    uf = env.uuid_file()
    env("prepare", INSECURE, f"--uuid-file-save={uf}", str(img), "--annotation=example.com/a=1",
        "--user-annotation=owner=ops", "--user-label=tier=web")
    uuid = uf.read_text().strip()
    try:
        pm = json.loads(env("cat-manifest", uuid).stdout)
        app = pm["apps"][0]
        assert {"name": "example.com/a", "value": "1"} in app["annotations"]
        assert app["app"]["userAnnotations"] == {"owner": "ops"}
        assert app["app"]["userLabels"] == {"tier": "web"}
    finally:
        env("rm", uuid, check=False)


def test_ipc_namespace(env: Rkt, aci: Path) -> None:
    import os

    mine = os.readlink("/proc/self/ns/ipc")
    assert run_sh(env, aci, "readlink /proc/self/ns/ipc").stdout.strip() != mine
    assert run_sh(env, aci, "readlink /proc/self/ns/ipc", "--ipc=private").stdout.strip() != mine
    assert run_sh(env, aci, "readlink /proc/self/ns/ipc", "--ipc=parent").stdout.strip() == mine
    cp = env("run", INSECURE, "--ipc=shared", str(aci), check=False)
    assert cp.returncode == 254 and 'invalid --ipc "shared"' in cp.stderr, cp


def test_pod_manifest_isolators(env: Rkt, probe: Path) -> None:
    """--pod-manifest: the app's isolators apply (and the image's when the manifest gives no
    app); a bad one is refused before the pod exists."""
    img = build_probe_aci(env.work / "pmiso.aci", probe, name="example.com/pmiso", glibc=False,
                          app_extra={"exec": ["/bin/sh", "-c", STATUS], "isolators": [
                              {"name": "os/linux/capabilities-retain-set",
                               "value": {"set": ["CAP_KILL"]}}]})
    key = env("fetch", INSECURE, str(img)).stdout.strip()

    def manifest(app: dict[str, object] | None) -> Path:
        ra: dict[str, object] = {"name": "p", "image": {"id": key}}
        if app is not None:
            ra["app"] = app
        mf = env.work / "pm.json"
        mf.write_text(json.dumps({"acVersion": "0.8.11", "acKind": "PodManifest",
                                  "apps": [ra]}))
        return mf

    cmd = ["/bin/sh", "-c", STATUS]
    s = status(env("run", f"--pod-manifest={manifest({'exec': cmd, 'user': '0', 'group': '0'})}"
                   ).stdout)
    assert s["CapBnd"] == DEFAULT_CAPBND, s  # the manifest's app has no isolators
    s = status(env("run", f"--pod-manifest={manifest(None)}").stdout)
    assert s["CapBnd"] == "0000000000000020", s  # the image's: CAP_KILL only
    bad = manifest({"exec": cmd, "user": "0", "group": "0", "isolators": [
        {"name": "os/linux/seccomp-retain-set", "value": {"set": ["nosuchcall"]}}]})
    pods = env.pod_files()
    cp = env("run", f"--pod-manifest={bad}", check=False)
    assert cp.returncode == 254 and 'app "p": unknown syscall "nosuchcall"' in cp.stderr, cp
    assert env.pod_files() == pods
