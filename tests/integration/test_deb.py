"""The Debian package: scripts/build-deb.sh, then the .deb installed with apt-get (nothing else
fetched: Debian's own python3-* packages are already on this machine) into the test bed's throw-away
root and used as a user of it would: /usr/bin/rkt from a directory outside the checkout with a
clean environment, the default data directory /var/lib/rkt, the groups, rkt-gc.timer; then the
maintainer scripts: removal refused while a pod runs, purge removes /var/lib/rkt.

Installing a package system-wide is only allowed in the test bed (its / is an overlay thrown
away at the end); anywhere else the module fails at once. What the package sets up is undone
at the end (purge, groups) for the tests that share the bed.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import stat
import subprocess
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rktd_less import __version__
from tests.helpers.aci import build_aci
from tests.integration import rktenv

REPO = Path(__file__).resolve().parents[2]
BUILD_DEB = REPO / "scripts" / "build-deb.sh"
RKT = "/usr/bin/rkt"
DATA = Path("/var/lib/rkt")
ETC = Path("/etc/rkt")
DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
IMAGES = Path("/usr/lib/rkt/stage1-images")
KVM_KERNEL = Path("/usr/lib/rkt/stage1-kvm")
GROUPS = ("rkt", "rkt-admin")
POLICY = Path("/usr/sbin/policy-rc.d")
INSECURE = "--insecure-options=image"
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What a login shell of root has: no virtual environment, no PYTHONPATH.
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": "/root", "LANG": "C.UTF-8"}


def sh(*argv: str, cwd: Path | None = None, check: bool = True, timeout: float = 120,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """rktenv.sh in the clean environment a user's shell would give the package's commands."""
    return rktenv.sh(*argv, cwd=cwd, check=check, timeout=timeout,
                     env=env if env is not None else CLEAN_ENV)


def _status(package: str = "rktd-less") -> str:
    """dpkg's status of the package ("install ok installed", ...), "" when dpkg knows none."""
    cp = sh("dpkg-query", "-W", "-f=${Status}", package, check=False)
    return cp.stdout.strip() if cp.returncode == 0 else ""


def mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    base = rktenv.scratch() / f"deb-{uuidlib.uuid4().hex[:8]}"
    (base / "elsewhere").mkdir(parents=True)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def outside(work: Path) -> Path:
    """The directory the user runs rkt from: not the checkout, not below it."""
    return work / "elsewhere"


@pytest.fixture(scope="module")
def deb(work: Path) -> Path:
    out = work / "out"
    # the guest kernel install.sh fetched (the bed has no network to download it again)
    cp = sh("bash", str(BUILD_DEB), "--out", str(out), "--guest-kernel", str(KVM_KERNEL),
            cwd=work, timeout=600)
    debs = sorted(out.glob("*.deb"))
    assert [d.name for d in debs] == [
        f"rktd-less_{__version__}_{sh('dpkg', '--print-architecture').stdout.strip()}.deb"]
    assert cp.stdout.strip() == str(debs[0])  # the script prints what it wrote
    return debs[0]


@pytest.fixture(scope="module")
def aci(work: Path) -> Path:
    return build_aci(work / "busybox.aci", name="example.com/busybox", version="1.0",
                     exec_=("/bin/sh",))


@pytest.fixture(scope="module")
def installed(deb: Path, work: Path) -> Iterator[subprocess.CompletedProcess[str]]:
    if not (os.environ.get("RKT_TESTBED") and Path("/run/systemd/container").exists()):
        pytest.fail("test_deb.py installs a package system-wide: run it in the test bed "
                    "(python3 tests/testbed.py run -- ...)", pytrace=False)
    assert _status() == "", "rktd-less is already installed in the test bed"
    assert not Path(RKT).exists() and not DATA.exists()
    had_groups = {g for g in GROUPS if rktenv.group_exists(g)}
    env = {**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    # The bed's / is an overlay, which cannot hold the upper dirs of the pods' overlays; a
    # machine's /var/lib is a disk. Give /var/lib/rkt one (the scratch disk) before installing.
    DATA.mkdir()
    sh("mount", "--bind", str(mkdir(work / "var-lib-rkt")), str(DATA))
    # This machine is a container image whose policy-rc.d forbids starting services from
    # maintainer scripts (Debian's invoke-rc.d policy); a Debian machine has none.
    hidden = POLICY.with_name(POLICY.name + ".test-deb")
    if POLICY.exists():
        POLICY.rename(hidden)
    # install.sh's guest kernel (the kvm tests use it): the package brings its own at that
    # path and takes it away when purged; this one is put aside meanwhile
    kvm_aside = work / "stage1-kvm-before"
    if KVM_KERNEL.exists():
        sh("cp", "-a", str(KVM_KERNEL), str(kvm_aside))
    try:
        cp = sh("apt-get", "install", "-y", str(deb), env=env, timeout=300)
        # nothing else fetched or changed: every Depends is a Debian package already here
        assert "0 upgraded, 1 newly installed, 0 to remove" in cp.stdout, cp.stdout
        yield cp
    finally:  # leave the bed as the other tests expect it
        if _status():
            for line in sh(RKT, "list", "--no-legend", "--full", check=False).stdout.splitlines():
                if "running" in line.split():
                    sh(RKT, "stop", "--force", line.split()[0], check=False)
            sh("dpkg", "--purge", "rktd-less", env=env, check=False, timeout=300)
        for g in GROUPS:
            if g not in had_groups and rktenv.group_exists(g):
                sh("groupdel", g, check=False)
        sh("umount", str(DATA), check=False)
        DATA.rmdir()
        if hidden.exists():
            hidden.rename(POLICY)
        if kvm_aside.exists():
            sh("rm", "-rf", str(KVM_KERNEL), check=False)
            KVM_KERNEL.parent.mkdir(parents=True, exist_ok=True)
            sh("cp", "-a", str(kvm_aside), str(KVM_KERNEL))
            sh("rm", "-rf", str(kvm_aside))


def test_package_contents(deb: Path) -> None:
    fields = dict(
        line.split(": ", 1) for line in sh("dpkg-deb", "--field", str(deb)).stdout.splitlines()
        if ": " in line and not line.startswith(" "))
    assert fields["Package"] == "rktd-less"
    assert fields["Architecture"] == sh("dpkg", "--print-architecture").stdout.strip()
    assert fields["Section"] == "admin" and fields["Priority"] == "optional"
    depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    for need in ("python3", "python3-dbus-next", "python3-systemd", "python3-pyroute2",
                 "python3-gnupg", "python3-aiohttp", "python3-zstandard", "systemd",
                 "systemd-container", "gpg"):
        assert need in depends, fields["Depends"]
    # no Python package from PyPI, no virtual environment: Debian's own packages only
    assert "python3 (>= 3.11)" in fields["Depends"]

    entries: dict[str, str] = {}  # path -> mode string, or "-> target" for links
    for line in sh("dpkg-deb", "--contents", str(deb)).stdout.splitlines():
        mode, owner, _size, _date, _time, rest = line.split(None, 5)
        assert owner == "root/root", line
        path, _, target = rest.partition(" -> ")
        entries[path.removeprefix(".").rstrip("/") or "/"] = f"-> {target}" if target else mode
    for path, mode in {
        "/usr/bin/rkt": "-rwxr-xr-x",
        "/usr/bin/acbuild": "-rwxr-xr-x",
        "/usr/lib/rkt/stage1-images/stage1-nspawn.aci": "-rw-r--r--",
        "/usr/lib/rkt/stage1-images/stage1-fly.aci": "-rw-r--r--",
        "/usr/lib/rkt/stage1-images/stage1-kvm.aci": "-rw-r--r--",
        # the kvm stage1's guest kernel, Debian's, fetched at the package's build
        "/usr/lib/rkt/stage1-kvm/vmlinux": "-rw-r--r--",
        "/usr/lib/rkt/stage1-kvm/modules/load-order": "-rw-r--r--",
        "/usr/lib/python3/dist-packages/rktd_less/__init__.py": "-rw-r--r--",
        "/usr/lib/python3/dist-packages/rktd_less/cli/main.py": "-rw-r--r--",
        f"/usr/lib/python3/dist-packages/rktd_less-{__version__}.dist-info/METADATA":
            "-rw-r--r--",
        "/lib/systemd/system/rkt-gc.service": "-rw-r--r--",
        "/lib/systemd/system/rkt-gc.timer": "-rw-r--r--",
        "/usr/lib/tmpfiles.d/rkt.conf": "-rw-r--r--",
        "/usr/share/bash-completion/completions/rkt": "-rw-r--r--",
    }.items():
        assert entries.get(path) == mode, (path, entries.get(path))
    link = entries["/usr/lib/python3/dist-packages/rktd_less/stage1-images"]
    assert os.path.normpath(os.path.join("/usr/lib/python3/dist-packages/rktd_less",
                                         link.removeprefix("-> "))) == str(IMAGES)
    assert not [p for p in entries if "__pycache__" in p or p.endswith(".pyc")]
    assert not [p for p in entries if p.startswith("/etc")]  # no conffiles
    assert not [p for p in entries if p.startswith("/usr/lib/python3/dist-packages/bin")]
    # only stage1 images in the images directory; none left inside the Python package
    shipped = [Path(p).name for p in entries if p.startswith(f"{IMAGES}/")]
    assert "stage1-nspawn.aci" in shipped
    assert all(re.fullmatch(r"stage1-[a-z0-9]+\.aci", n) for n in shipped), shipped
    assert not [p for p in entries if p.endswith(".aci") and "dist-packages" in p]

    unpacked = Path(sh("mktemp", "-d", "-p", str(deb.parent)).stdout.strip())
    sh("dpkg-deb", "--extract", str(deb), str(unpacked))
    service = (unpacked / "lib/systemd/system/rkt-gc.service").read_text()
    assert "ExecStart=/usr/bin/rkt gc --grace-period=${GRACE_PERIOD}" in service
    assert "@" not in service
    assert (unpacked / "usr/bin/rkt").read_text().startswith("#!/usr/bin/python3")
    completion = unpacked / "usr/share/bash-completion/completions/rkt"
    assert sh("bash", "-c", f"source {completion} && complete -p rkt").stdout.startswith(
        "complete -F")


def test_install_sets_up_the_host(installed: subprocess.CompletedProcess[str],
                                  outside: Path) -> None:
    assert _status() == "install ok installed"
    version = sh(RKT, "version", cwd=outside).stdout
    assert f"rkt Version: {__version__}" in version
    assert sh("/usr/bin/acbuild", "version", cwd=outside).stdout.startswith(
        f"acbuild version {__version__}\n")
    # the code runs from the system's dist-packages, under the system's python3
    cp = sh("/usr/bin/python3", "-I", "-c", "import rktd_less, sys; print(rktd_less.__file__)",
            cwd=outside)
    assert cp.stdout.strip() == f"{DIST_PACKAGES}/rktd_less/__init__.py"
    assert (DIST_PACKAGES / "rktd_less" / "stage1-images").resolve() == IMAGES
    assert re.search(rf"^rktd-less +{re.escape(__version__)}$",
                     sh("/usr/bin/python3", "-m", "pip", "list", cwd=outside).stdout, re.M)

    assert sh("getent", "group", *GROUPS).stdout.count("\n") == 2
    assert sh("systemctl", "is-enabled", "rkt-gc.timer").stdout.strip() == "enabled"
    assert sh("systemctl", "is-active", "rkt-gc.timer").stdout.strip() == "active"
    # tmpfiles.d applied: the data directory and /etc/rkt with rkt's groups and modes
    for path, group, mode in ((DATA, "rkt", 0o2750), (DATA / "pods" / "run", "rkt", 0o2750),
                              (DATA / "cas" / "tree", "rkt", 0o2700),
                              (ETC, "rkt-admin", 0o2775)):
        st = path.stat()
        assert (grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)) == (group, mode), path


def test_pod_runs_with_the_default_data_dir(installed: subprocess.CompletedProcess[str],
                                            aci: Path, outside: Path) -> None:
    cp = sh(RKT, INSECURE, "run", str(aci), "--exec", "/bin/echo", "--", "hello-from-deb",
            cwd=outside, timeout=180)
    assert "hello-from-deb" in cp.stdout
    rows = [line.split() for line in
            sh(RKT, "list", "--no-legend", cwd=outside).stdout.splitlines()]
    assert len(rows) == 1 and rows[0][1] == "busybox" and "exited" in rows[0], rows
    assert len(list((DATA / "pods" / "run").iterdir())) == 1  # the default --dir
    images = sh(RKT, "image", "list", "--no-legend", cwd=outside).stdout
    assert "rktd-less/stage1-nspawn" in images  # the stage1 of /usr/lib/rkt/stage1-images


def test_remove_refused_while_a_pod_runs_and_purge(
        installed: subprocess.CompletedProcess[str], aci: Path, outside: Path) -> None:
    env = {**CLEAN_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    uuid = sh(RKT, INSECURE, "run", "--detach", str(aci), "--exec", "/bin/sleep", "--", "600",
              cwd=outside, timeout=180).stdout.strip()
    assert re.fullmatch(UUID_RE, uuid)
    try:
        refused = sh("dpkg", "--remove", "rktd-less", env=env, check=False, timeout=300)
        assert refused.returncode != 0
        message = [line for line in refused.stderr.splitlines() if uuid in line]
        assert len(message) == 1 and f"rkt stop {uuid}" in message[0], refused.stderr
        assert _status().endswith(" ok installed") and Path(RKT).exists()
        assert "state=running" in sh(RKT, "status", uuid, cwd=outside).stdout
    finally:
        sh(RKT, "stop", uuid, cwd=outside, check=False)
    assert rktenv.wait_for(
        lambda: "state=running" not in sh(RKT, "status", uuid, check=False).stdout, 30)

    sh("dpkg", "--remove", "rktd-less", env=env, timeout=300)
    assert not Path(RKT).exists()
    assert not (DIST_PACKAGES / "rktd_less").exists()  # nothing left behind, not even .pyc
    assert not IMAGES.exists()
    assert (DATA / "cas" / "blob").is_dir()  # removal keeps the data; purge removes it
    assert all(rktenv.group_exists(g) for g in GROUPS)

    sh("dpkg", "--purge", "rktd-less", env=env, timeout=300)
    assert _status() in ("", "unknown ok not-installed")
    # /var/lib/rkt is a mount point here (see `installed`): purge empties it, as rkt's did
    assert list(DATA.iterdir()) == []
    assert not ETC.exists()  # empty, so gone with the package
    enabled = sh("systemctl", "is-enabled", "rkt-gc.timer", check=False)
    assert enabled.returncode != 0
    assert all(rktenv.group_exists(g) for g in GROUPS)  # as rkt's package: groups stay
