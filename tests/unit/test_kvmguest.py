"""The kvm stage1's guest kernel and initramfs builder (pure parts)."""

from __future__ import annotations

import lzma
import stat
from pathlib import Path

import pytest

from rktd_less.errors import RktError
from rktd_less.stage1 import kvmguest as k


def test_extract_vmlinux_finds_the_xz_payload() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    decoy = lzma.compress(b"not a kernel", format=lzma.FORMAT_XZ)
    bz = b"MZ setup code " + decoy + b"\x00" * 17 + lzma.compress(elf) + b"trailer"
    assert k.extract_vmlinux(bz) == elf
    with pytest.raises(RktError, match="no xz-compressed ELF kernel"):
        k.extract_vmlinux(b"MZ" + decoy)


def _ko(path: Path, depends: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF...\x00license=GPL\x00depends=" + depends.encode()
                     + b"\x00intree=Y\x00")


def test_load_order_puts_dependencies_first(tmp_path: Path) -> None:
    _ko(tmp_path / "kernel/fs/9p/9p.ko", "9pnet,netfs")
    _ko(tmp_path / "kernel/net/9p/9pnet.ko", "")
    _ko(tmp_path / "kernel/fs/netfs/netfs.ko", "fscache")
    _ko(tmp_path / "kernel/fs/fscache/fscache.ko", "")
    _ko(tmp_path / "kernel/net/9p/9pnet_virtio.ko", "9pnet,virtio_ring")
    _ko(tmp_path / "kernel/drivers/virtio/virtio_ring.ko", "")
    order = [p.name for p in k.load_order(tmp_path, ["9pnet_virtio", "9p"])]
    assert order == ["9pnet.ko", "virtio_ring.ko", "9pnet_virtio.ko", "fscache.ko",
                     "netfs.ko", "9p.ko"]
    with pytest.raises(RktError, match='kernel module "nosuch" not found'):
        k.load_order(tmp_path, ["nosuch"])
    _ko(tmp_path / "a.ko", "b")
    _ko(tmp_path / "b.ko", "a")
    with pytest.raises(RktError, match="dependency loop: a -> b -> a"):
        k.load_order(tmp_path, ["a"])


def _read_newc(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data): an independent reading of the newc format."""
    out, at = {}, 0
    while True:
        assert data[at:at + 6] == b"070701"
        fields = [int(data[at + 6 + 8 * i:at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[at + 110:at + 110 + namesize - 1].decode()
        at += 110 + namesize
        at += -at % 4
        body = data[at:at + size]
        at += size
        at += -at % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body)


def test_initramfs_is_a_newc_archive(tmp_path: Path) -> None:
    mod = tmp_path / "virtio.ko"
    mod.write_bytes(b"module")
    files = _read_newc(k.initramfs(b"\x7fELFbusybox", [mod], b"#!/bin/sh\necho hi\n"))
    assert files["init"] == (stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n")
    assert files["bin/busybox"][1] == b"\x7fELFbusybox"
    assert files["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox")
    assert files["lib/modules/virtio.ko"][1] == b"module"
    assert files["lib/modules/load-order"][1] == b"virtio.ko\n"
    assert stat.S_ISDIR(files["pod"][0]) and stat.S_ISDIR(files["newroot"][0])


def test_vm_memory_is_rkts() -> None:
    from rktd_less.stage1 import kvm

    def app(limit: str | None) -> dict[str, object]:
        isolators = [] if limit is None else [{"name": "resource/memory",
                                               "value": {"request": limit, "limit": limit}}]
        return {"name": "a", "app": {"isolators": isolators}}

    assert kvm.vm_memory({"apps": []}) == 128  # type: ignore[typeddict-item]
    assert kvm.vm_memory({"apps": [app(None), app("64Mi")]}) == 128 + 128 + 64  # type: ignore[typeddict-item,list-item]


def test_qemu_argv_shares_the_pod_root_and_usr_read_only(tmp_path: Path) -> None:
    from rktd_less.stage1 import kvm

    argv = kvm.qemu_argv("/usr/bin/qemu-system-x86_64", "tcg", 384, tmp_path / "vmlinux",
                         tmp_path / "initrd", tmp_path / "root")
    text = " ".join(argv)
    assert argv[:5] == ["/usr/bin/qemu-system-x86_64", "-M", "microvm", "-accel", "tcg"]
    assert "-m 384" in text and "-smp 1" in text and "-no-reboot" in text
    assert f"local,id=pod,path={tmp_path / 'root'},security_model=passthrough" in text
    assert "local,id=usr,path=/usr,security_model=passthrough,readonly=on" in text
    assert "quiet" in argv[argv.index("-append") + 1]


def test_no_guest_kernel_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rktd_less.stage1 import kvm

    monkeypatch.setattr(kvm, "KERNEL_DIR", tmp_path / "none")
    with pytest.raises(RktError, match=r"no guest kernel for the kvm stage1 \(in .*/cfg/stage1-kvm"
                                       r", .*/none\)"):
        kvm.kernel_dir(str(tmp_path / "cfg"))
    monkeypatch.setattr(kvm, "BUSYBOX", tmp_path / "no-busybox")
    with pytest.raises(RktError, match="busybox is missing"):
        kvm.make_initramfs(tmp_path, tmp_path / "init", tmp_path / "out")


def test_kvm_nics_for_qemu_and_the_guest() -> None:
    from rktd_less.stage1 import kvmnet

    routes = kvmnet.parse_routes("default via 172.16.28.1 \n"
                                 "172.16.28.0/24 via 172.16.28.1 src 172.16.28.5 \n"
                                 "172.16.28.1 proto kernel scope link src 172.16.28.5 \n")
    assert routes == (("default", "172.16.28.1"), ("172.16.28.0/24", "172.16.28.1"))
    nic = kvmnet.Nic("eth0", "tap0", "aa:bb:cc:dd:ee:ff", "172.16.28.5/24", routes)
    assert nic.qemu_args(0) == ["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
                                "-device", "virtio-net-device,netdev=n0,mac=aa:bb:cc:dd:ee:ff"]
    assert nic.cmdline() == ["rkt.ip=eth0,172.16.28.5/24", "rkt.route=eth0,default,172.16.28.1",
                             "rkt.route=eth0,172.16.28.0/24,172.16.28.1"]


def test_enter_argv_is_the_apps_context() -> None:
    from rktd_less.stage1 import kvm

    assert kvm.enter_argv(1000, 100, [("PATH", "/bin"), ("A", "b c")], ["/bin/sh", "-c", "x"]) \
        == ["/usr/bin/env", "-i", "PATH=/bin", "A=b c", "/usr/bin/nsenter", "--target=@PID@",
            "--mount", "--root", "--setuid=1000", "--setgid=100", "--", "/bin/sh", "-c", "x"]
    assert "--target=@PID@" in kvm.ENTER_SCRIPT  # the guest fills it in
    assert kvm.control_socket("u") != kvm.control_socket("u", "enter")


def test_qemu_argv_ports_and_console(tmp_path: Path) -> None:
    """The guest learns how many ports to name (rkt.ports=); --interactive gives a third port
    (piped input) or the caller's terminal as a console where Ctrl-C is the app's."""
    from rktd_less.stage1 import kvm

    def argv(**kw: str) -> list[str]:
        return kvm.qemu_argv("qemu", "tcg", 256, tmp_path / "k", tmp_path / "i", tmp_path / "r",
                             **kw)

    plain = argv(ports_of="u1")
    assert "rkt.ports=2" in plain[plain.index("-append") + 1]
    assert plain[plain.index("-serial") + 1] == "stdio"
    assert not any("rkt.stdin" in a for a in plain)
    piped = argv(ports_of="u1", console="pipe")
    assert "rkt.ports=3" in piped[piped.index("-append") + 1]
    assert f"socket,id=in,path={kvm.control_socket('u1', 'stdin')},server=on,wait=off" in piped
    assert "virtserialport,chardev=in,name=rkt.stdin" in piped
    tty = argv(ports_of="u1", console="tty")
    assert "stdio,id=con,mux=on,signal=off" in tty and tty[tty.index("-echr") + 1] == "0x1d"
    assert "rkt.ports" not in argv()[argv().index("-append") + 1]
