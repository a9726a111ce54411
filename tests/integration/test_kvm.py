"""stage1-kvm in the test bed: each pod a QEMU VM with its own kernel (TCG here: these machines
have no vmx/svm), systemd inside running the apps' units as the nspawn stage1 does. Slow (a
pod boots in ~10 s under TCG): one VM at a time."""

from __future__ import annotations

import shutil
import termios
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, sh, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86_64 is not installed: no VM can run here"),
]
INSECURE = "--insecure-options=image"
KVM = "--stage1-from-dir=stage1-kvm.aci"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0",
                     exec_=("/bin/sh", "-c", "echo image default"))


def test_a_pod_in_its_own_kernel_with_two_apps_and_a_volume(env: Rkt, aci: Path,
                                                             tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in").write_text("from-the-host\n")
    other = build_aci(env.work / "other.aci", name="example.com/other", version="1.0",
                      exec_=("/bin/sh", "-c", "echo second-app; exit 0"))
    cp = env("run", INSECURE, KVM, "--net=none", f"--volume=data,kind=host,source={vol}",
             str(aci), "--mount=volume=data,target=/data", "--exec", "/bin/sh", "--", "-c",
             "cat /proc/version; cat /data/in; echo from-the-vm > /data/out; sleep 1; exit 7",
             "---", str(other), check=False, timeout=240)
    assert cp.returncode == 7, cp
    assert "Linux version" in cp.stdout
    guest = next(ln for ln in cp.stdout.splitlines() if "Linux version" in ln)
    assert guest.strip() != Path("/proc/version").read_text().strip()  # not the host's
    assert "from-the-host" in cp.stdout and "second-app" in cp.stdout
    assert (vol / "out").read_text() == "from-the-vm\n"
    # said once, where there is no hardware virtualization (as on these machines)
    assert cp.stderr.count("QEMU's TCG emulation") <= 1
    uuid = next(ln.split("\t")[0] for ln in env("list", "--no-legend", "--full").stdout
                .splitlines() if "\texited\t" in ln)
    status = env("status", uuid).stdout
    assert "app-busybox=7" in status and "app-other=0" in status, status
    assert env.pod_mounts() == []


def test_detached_vm_is_a_machine_of_class_vm_and_stops(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    env("run", INSECURE, KVM, "--net=none", "--detach", f"--uuid-file-save={uf}", str(aci),
        "--exec", "/bin/sleep", "--", "600", timeout=240)
    uuid = uf.read_text().strip()
    unit = f"rkt-{uuid}.service"
    try:
        assert wait_for(lambda: f"rkt-{uuid}" in sh("machinectl", "list", "--no-legend")
                        .stdout, 30)
        row = next(ln for ln in sh("machinectl", "list", "--no-legend").stdout.splitlines()
                   if f"rkt-{uuid}" in ln)
        assert row.split()[1] == "vm", row
        # rkt enter: in the guest, in the app's root (its /proc: the VM's kernel), its status
        cp = env("enter", uuid, "/bin/sh", "-c", "cat /proc/version; ls /proc/1/exe >/dev/null "
                 "&& echo in-the-app; exit 5", check=False, timeout=60)
        assert cp.returncode == 5, cp
        assert "in-the-app" in cp.stdout
        assert cp.stdout.splitlines()[0] != Path("/proc/version").read_text().strip()
        assert env("enter", uuid, "/bin/echo", "again", timeout=60).stdout == "again\n"
        env("stop", uuid)  # a clean shutdown of the guest: its systemd stops the app
        assert wait_for(lambda: "state=exited" in env("status", uuid).stdout, 60)
        status = env("status", uuid).stdout
        assert "app-busybox=143" in status, status  # recorded by the guest's reaper
    finally:
        sh("systemctl", "stop", unit, check=False)
    env("gc", "--grace-period=0s")
    assert not any((env.data / "pods").glob(f"*/{uuid}"))
    assert env.pod_mounts() == []


def test_refused_with_host_network(env: Rkt, aci: Path) -> None:
    before = sorted(p.name for p in (env.data / "pods").glob("*/*"))
    cp = env("run", INSECURE, KVM, "--net=host", str(aci), check=False)
    assert cp.returncode == 254, cp
    assert cp.stderr.strip().splitlines()[-1] == \
        "stage1: flavor kvm requires private network configuration (try --net)", cp.stderr
    assert sorted(p.name for p in (env.data / "pods").glob("*/*")) == before


def test_the_vm_on_the_default_network_both_ways(env: Rkt, aci: Path) -> None:
    """The pod's default network reaches the VM: the host reaches a listener in the VM at the
    pod's address, and the VM reaches one on the host (the gateway); nothing is left after."""
    import subprocess

    from tests.integration.test_net import _fetch, census, default_ip

    before = census()
    host = subprocess.Popen(["python3", "-c",
                             "import socket\n"
                             "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                             "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 7101)); s.listen(1)\n"
                             "print('ready', flush=True)\n"
                             "c, a = s.accept(); print(a[0], c.recv(64).decode().strip(), "
                             "flush=True)\n"], stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None and host.stdout.readline().strip() == "ready"
    uf = env.uuid_file()
    env("run", INSECURE, KVM, "--detach", f"--uuid-file-save={uf}", str(aci), "--exec",
        "/bin/sh", "--", "-c",
        "echo from-the-vm | nc 172.16.28.1 7101; "
        "while true; do echo hello-vm | nc -l -p 8080; done", timeout=240)
    uuid = uf.read_text().strip()
    try:
        ip = default_ip(env, uuid)

        assert wait_for(lambda: _fetch(ip, 8080) == "hello-vm", 90)
        out, _ = host.communicate(timeout=60)
        assert out.strip() == f"{ip} from-the-vm", out
    finally:
        host.kill()
        env("stop", uuid)
        env("status", "--wait=60s", uuid)
    assert wait_for(lambda: census() == before, 20), (census(), before)


def test_refused_without_qemu_or_guest_kernel(env: Rkt, aci: Path, tmp_path: Path) -> None:
    """What a machine without them looks like, made in the bed for the test: an empty
    directory over the guest kernel's, /dev/null over QEMU (both undone after)."""
    before = sorted(p.name for p in (env.data / "pods").glob("*/*"))
    for target, source, needle in (
            ("/usr/lib/rkt/stage1-kvm", str(tmp_path), "no guest kernel for the kvm stage1"),
            ("/usr/bin/qemu-system-x86_64", "/dev/null",
             "qemu-system-x86_64 is not installed")):
        sh("mount", "--bind", source, target)
        try:
            cp = env("run", INSECURE, KVM, "--net=none", str(aci), check=False)
        finally:
            sh("umount", target)
        assert cp.returncode == 254, cp
        lines = [ln for ln in cp.stderr.strip().splitlines() if "TCG" not in ln]
        assert len(lines) == 1 and needle in lines[0], cp.stderr
    assert sorted(p.name for p in (env.data / "pods").glob("*/*")) == before


def test_interactive_on_a_terminal_is_the_guest_console(env: Rkt, aci: Path) -> None:
    """--interactive: the caller's terminal is the app's (the VM's console, a tty in the
    guest), what is typed reaches it, Ctrl-C is the app's, and the terminal's settings come
    back after."""
    from tests.integration.test_interactive import Terminal

    t = Terminal(env.argv("run", "--interactive", INSECURE, KVM, "--net=none", str(aci),
                          "--exec", "/bin/sh", "--", "-c",
                          "[ -t 0 ] && echo tty-in-vm; read -r line; echo got-$line; "
                          "trap 'echo interrupted; exit 9' INT; echo waiting; "
                          "while :; do sleep 0.2; done"))
    try:
        t.expect(b"tty-in-vm", timeout=180)
        t.send(b"hello\r")
        t.expect(b"got-hello")
        t.expect(b"waiting")
        t.send(b"\x03")  # Ctrl-C: the app's, through the guest's terminal
        t.expect(b"interrupted")
        assert t.wait(timeout=60) == 9
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()


def test_interactive_with_piped_input(env: Rkt, aci: Path) -> None:
    """`... | rkt run --interactive` under kvm: the app reads all of it, then EOF."""
    text = "".join(f"line {i}\n" for i in range(2000))  # more than one chunk
    cp = env("run", "--interactive", INSECURE, KVM, "--net=none", str(aci), "--exec",
             "/bin/sh", "--", "-c", "cat; echo eof-seen", input=text, check=False, timeout=240)
    assert cp.returncode == 0, cp
    assert cp.stdout.endswith(text + "eof-seen\n"), cp.stdout[-300:]


def test_interactive_console_escape_ends_the_vm(env: Rkt, aci: Path) -> None:
    """^] x on the console ends the VM (as ^]^]^] ends an nspawn pod): the app counts as
    terminated, the terminal is restored, no mount is left."""
    from tests.integration.test_interactive import Terminal

    uf = env.uuid_file()
    t = Terminal(env.argv("run", "--interactive", INSECURE, KVM, "--net=none",
                          f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh", "--", "-c",
                          "echo up; exec sleep 600"))
    try:
        t.expect(b"up", timeout=180)
        env("status", "--wait-ready=60s", uf.read_text().strip())
        t.send(b"\x1dx")
        assert t.wait(timeout=60) == 143, t.seen[-300:]
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()
    assert env.pod_mounts() == []
