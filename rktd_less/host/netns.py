"""Network namespace files, as ``ip netns`` makes them: a namespace kept alive by a bind
mount of its nsfs file on ``/run/netns/<name>``, so ``ip netns exec`` works on a pod's network.

Created by a forked child that unshares its network namespace and binds it (3.5 ms; pyroute2's
``netns.create`` costs its 0.2 s import first). Python 3.11 has no ``os.unshare``: libc it is.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import RktError
from .mount import MS_BIND, MS_REC, MS_SHARED, _check, _libc, in_child, mount, umount

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _loopback_up() -> None:
    """``lo`` up in this process's network namespace (rkt did so; nothing in the pod does it
    for a namespace it did not make): SIOCSIFFLAGS on a socket, no helper process."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def join(fd: int) -> None:
    """Move this process into the network namespace ``fd`` (before exec'ing nspawn, which then
    inherits it, as rkt's stage1 did: with --private-users nspawn could not join it itself)."""
    _check(_libc.setns(fd, CLONE_NEWNET), "join the pod's network namespace")


def _shared_dir() -> None:
    """/run/netns as ``ip netns`` leaves it: a shared mount of its own, so that a namespace
    unmounted here is also released in the mount namespaces made since (stage1's, nspawn's)."""
    NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        mount("none", NETNS_DIR, None, MS_SHARED | MS_REC)
    except RktError:  # not a mount point yet
        mount(str(NETNS_DIR), NETNS_DIR, None, MS_BIND | MS_REC)
        mount("none", NETNS_DIR, None, MS_SHARED | MS_REC)


def create(name: str) -> Path:
    """A new, empty network namespace bound at ``/run/netns/<name>``."""
    _shared_dir()
    path = NETNS_DIR / name
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)

    def make() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare")
        _loopback_up()
        mount("/proc/self/ns/net", path, None, MS_BIND)

    why = in_child(make)
    if why is not None:
        path.unlink(missing_ok=True)
        raise RktError(f"cannot create network namespace {path}: {why}")
    return path


def remove(path: Path) -> None:
    """Unbind and delete a namespace file; the namespace goes with its last user."""
    if not path.exists():
        return
    with contextlib.suppress(RktError):
        umount(path, lazy=True)
    path.unlink(missing_ok=True)


def is_netns(path: Path) -> bool:
    """``path`` is a bound network namespace (not the empty file left by a failed bind or by
    a reboot of a /run that is not a tmpfs)."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:
        return False
