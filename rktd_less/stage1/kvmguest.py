"""The kvm stage1's guest kernel and initramfs, made from Debian's packages (reference
stage1-kvm.md): ``linux-image-amd64`` is downloaded (``apt-get download``), unpacked (not
installed on the host), its compressed kernel turned into the uncompressed ELF ``vmlinux``
(QEMU's PVH entry boots it without in-guest decompression), and the modules the guest needs
(9p over virtio, virtio-net, vsock, the virtio console, overlayfs) with their dependencies
kept in load order (``fetch``: by ``scripts/install.sh``, and into the .deb at its build). At
each pod start the kvm stage1 packs them with busybox-static and its image's guest ``/init``
into a newc initramfs (``initramfs``: ~4 MB, a few ms).

Pure Python (lzma, a cpio writer): no root needed to build, nothing of the host changed.
"""

from __future__ import annotations

import lzma
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import RktError
from ..host import proc

XZ_MAGIC = b"\xfd7zXZ\x00"
ELF_MAGIC = b"\x7fELF"
# what the guest loads, in an order that satisfies dependencies (checked at build time)
GUEST_MODULES = ("virtio_mmio", "virtio_pci", "9pnet_virtio", "9p", "virtio_net",
                 "vmw_vsock_virtio_transport", "virtio_console", "overlay")
KERNEL_PACKAGE = "linux-image-amd64"


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage whose payload is xz-compressed (Debian's)."""
    at = bzimage.find(XZ_MAGIC)
    while at != -1:
        try:
            out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(bzimage[at:])
        except lzma.LZMAError:
            out = b""
        if out.startswith(ELF_MAGIC):
            return out
        at = bzimage.find(XZ_MAGIC, at + 1)
    raise RktError("no xz-compressed ELF kernel found in the bzImage")


def module_depends(ko: bytes) -> list[str]:
    """The ``depends=`` of a kernel module's .modinfo."""
    at = ko.find(b"\x00depends=")
    if at == -1:
        return []
    end = ko.index(b"\x00", at + 1)
    value = ko[at + len(b"\x00depends="):end].decode()
    return [d for d in value.split(",") if d]


def load_order(moddir: Path, wanted: Iterable[str]) -> list[Path]:
    """The modules ``wanted`` and what they depend on, each after its dependencies."""
    index = {p.name.removesuffix(".ko").replace("-", "_"): p for p in moddir.rglob("*.ko")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        if key in chain:
            raise RktError(f"kernel module dependency loop: {' -> '.join((*chain, key))}")
        path = index.get(key)
        if path is None:
            raise RktError(f'kernel module "{name}" not found under {moddir}')
        for dep in module_depends(path.read_bytes()):
            visit(dep, (*chain, key))
        seen.add(key)
        order.append(path)

    for name in wanted:
        visit(name, ())
    return order


@dataclass(frozen=True)
class Entry:
    path: str  # in the archive, without a leading "/"
    mode: int  # with the file type bits
    data: bytes = b""


def newc(entries: Sequence[Entry]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks as initramfs."""
    out = bytearray()

    def pad(n: int) -> None:
        out.extend(b"\x00" * (-n % 4))

    for ino, e in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = e.path.encode() + b"\x00"
        fields = (ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, 0, 0, len(name), 0)
        header = b"070701" + b"".join(f"{f:08x}".encode() for f in fields)
        out.extend(header + name)
        pad(len(header) + len(name))
        out.extend(e.data)
        pad(len(e.data))
    return bytes(out)


def initramfs(busybox: bytes, modules: Sequence[Path], init: bytes) -> bytes:
    """busybox-static (with the applets /init uses), the modules under /lib/modules in load
    order (named in /lib/modules/load-order), and /init."""
    entries = [Entry(d, stat.S_IFDIR | 0o755) for d in
               ("bin", "dev", "proc", "sys", "run", "tmp", "lib", "lib/modules", "pod", "usr",
                "newroot")]
    entries.append(Entry("bin/busybox", stat.S_IFREG | 0o755, busybox))
    for applet in ("sh", "mount", "umount", "insmod", "switch_root", "mkdir", "cat", "echo",
                   "poweroff", "sleep", "ip", "ln", "chroot", "reboot"):
        entries.append(Entry(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox"))
    names = []
    for m in modules:
        entries.append(Entry(f"lib/modules/{m.name}", stat.S_IFREG | 0o644, m.read_bytes()))
        names.append(m.name)
    entries.append(Entry("lib/modules/load-order", stat.S_IFREG | 0o644,
                         ("\n".join(names) + "\n").encode()))
    entries.append(Entry("init", stat.S_IFREG | 0o755, init))
    return newc(entries)


def fetch(dest: Path, package: str = KERNEL_PACKAGE) -> Path:
    """Download ``package`` (its kernel image dependency), unpack it in a temporary directory
    and write ``vmlinux``, ``modules/`` (the guest's, with ``load-order``) and
    ``kernel-release`` to ``dest`` (each by a rename: a reader never sees half a file; the
    release last, marking it complete). Returns ``dest``."""
    with tempfile.TemporaryDirectory(prefix="rkt-kvm-kernel-") as tmp:
        work = Path(tmp)
        image = _kernel_image_package(package)
        proc.run(["apt-get", "download", "-q", image], cwd=work)
        (deb,) = work.glob("*.deb")
        proc.run(["dpkg-deb", "-x", str(deb), str(work / "x")])
        (vmlinuz,) = (work / "x" / "boot").glob("vmlinuz-*")
        release = vmlinuz.name.removeprefix("vmlinuz-")
        moddir = work / "x" / "lib" / "modules" / release
        mods = dest / "modules"
        mods.mkdir(parents=True, exist_ok=True)
        _write(dest / "vmlinux", extract_vmlinux(vmlinuz.read_bytes()))
        order = load_order(moddir, GUEST_MODULES)
        for m in order:
            _write(mods / m.name, m.read_bytes())
        _write(mods / "load-order", "".join(f"{m.name}\n" for m in order).encode())
        _write(dest / "kernel-release", f"{release}\n".encode())
    return dest


def guest_modules(kernel_dir: Path) -> list[Path]:
    """The modules ``fetch`` kept, in load order."""
    mods = kernel_dir / "modules"
    return [mods / n for n in (mods / "load-order").read_text().split()]


def _kernel_image_package(meta: str) -> str:
    """``linux-image-amd64`` → the versioned package it depends on."""
    out = proc.run(["apt-cache", "depends", meta]).stdout.decode()
    for line in out.splitlines():
        kind, _, name = line.strip().partition(": ")
        if kind == "Depends" and name.startswith("linux-image-"):
            return name
    raise RktError(f"{meta} names no kernel image package", hint="apt-get update")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    """``python -m rktd_less.stage1.kvmguest DEST``."""
    if len(argv) != 1:
        print("usage: python -m rktd_less.stage1.kvmguest DEST", file=sys.stderr)
        return 2
    try:
        dest = fetch(Path(argv[0]))
    except (RktError, OSError) as e:
        print(f"guest kernel: {e}", file=sys.stderr)
        return 1
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
