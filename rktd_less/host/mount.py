"""Mount-namespace and mount(2) calls (through libc, no helper processes)."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import RktError

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

# the C library this interpreter is linked with (dlopen(NULL)): ctypes.util.find_library would
# run ldconfig at every stage1 start
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise RktError(f"{what}: {os.strerror(err)}")


def _b(p: str | os.PathLike[str] | None) -> bytes | None:
    return None if p is None else os.fsencode(p)


def unshare_mounts() -> None:
    """A private mount namespace whose mounts never reach the host, receiving host mounts."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None), "make / rslave")


def mount(source: str, target: str | os.PathLike[str], fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    rc = _libc.mount(_b(source), _b(target), _b(fstype), flags, data.encode() if data else None)
    _check(rc, f"mount {fstype or 'bind'} on {target}")


def bind(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
         recursive: bool = True, readonly: bool = False) -> None:
    flags = MS_BIND | (MS_REC if recursive else 0)
    mount(os.fspath(source), target, None, flags)
    if readonly:
        mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | (MS_REC if recursive else 0))


def remount_readonly(target: str | os.PathLike[str]) -> None:
    """Make one mount read-only (not its submounts)."""
    mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def overlay(lower: list[Path], upper: Path, work: Path, target: Path) -> None:
    """Mount an overlay. ``lower`` is listed top-most first, as overlayfs expects."""
    for p in (upper, work, target):
        p.mkdir(parents=True, exist_ok=True)
    opts = "lowerdir={},upperdir={},workdir={}".format(
        ":".join(_escape(str(p)) for p in lower), _escape(str(upper)), _escape(str(work)))
    mount("overlay", target, "overlay", 0, opts)


def _escape(p: str) -> str:
    # overlayfs splits options on ',' and lowerdir on ':'; both can be backslash-escaped.
    return p.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def umount(target: str | os.PathLike[str], lazy: bool = False) -> None:
    _check(_libc.umount2(_b(target), MNT_DETACH if lazy else 0), f"unmount {target}")


def run_over_overlay(lower: list[Path], target: Path, argv: list[str]) -> int:
    """Run ``argv`` while ``lower`` (top-most first) is mounted read-only at ``target`` in a
    private mount namespace of a child process: nothing is ever mounted on the host, so
    nothing can be left behind. Returns the command's exit status."""
    from . import proc

    proc.log.debug("exec over a read-only overlay %s: %s", target, argv)
    pid = os.fork()
    if pid == 0:  # child
        code = 127
        try:
            unshare_mounts()
            if len(lower) == 1:  # overlayfs needs two lower layers without an upper one
                bind(lower[0], target, recursive=True, readonly=True)
            else:
                opts = "lowerdir=" + ":".join(_escape(str(p)) for p in lower)
                mount("overlay", target, "overlay", MS_RDONLY, opts)
            os.execvpe(argv[0], argv, proc.clean_env())
        except BaseException as e:  # report and never return into the caller's stack
            os.write(2, f"{argv[0]}: {e}\n".encode())
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)




def in_child(fn: Callable[[], None]) -> str | None:
    """Run ``fn`` in a forked child (namespace changes that must not touch this process);
    returns the child's error message, or None when it succeeded."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report and never return into the caller's stack
        code = 1
        try:
            os.close(r)
            fn()
            code = 0
        except BaseException as e:
            os.write(w, (getattr(e, "message", None) or str(e) or type(e).__name__)
                     .encode()[:2000])
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        why = f.read().decode(errors="replace")
    _pid, status = os.waitpid(pid, 0)
    return None if os.waitstatus_to_exitcode(status) == 0 else (why or "failed")


def join_mount_ns(ns_fd: int) -> None:
    """This process (a child made for it) joins the mount namespace ``ns_fd``."""
    _check(_libc.setns(ns_fd, CLONE_NEWNS), "join the mount namespace")


def call_in_mount_ns(ns_fd: int, fn: Callable[[], None]) -> str | None:
    """Run ``fn`` in a child that first joins the mount namespace ``ns_fd`` (the machine's,
    kept open before :func:`unshare_mounts`): what a process that left it must still undo
    there. Returns the child's error message, or None."""

    def joined() -> None:
        join_mount_ns(ns_fd)
        fn()

    return in_child(joined)
