"""Who may use the store: group ``rkt`` and the modes of what the store creates (rkt §1.1, §3.1).

rkt lets members of group ``rkt`` fetch, list, extract, render and export without root: the
store belongs to that group (tmpfiles.d: ``d /var/lib/rkt/cas 2770 root rkt``). Here the store
itself gives what it creates to the group when the group exists and the caller may use it
(root, or a member): directories setgid so everything below inherits the group, the index and
lock files group-writable. Otherwise it keeps plain private-to-the-owner modes.

Two deliberate exceptions to "group-writable":

* blobs and manifest copies are written once and never modified, so they are group-*readable*
  only: a member must not be able to rewrite the blob of a signature-verified image that root
  later renders and runs (removal needs only the directory's write bit);
* rendered trees (``cas/tree``) keep the images' setuid-root files when root renders them, so
  the tree directory admits its owner only (rkt: ``2700``); non-root extraction never writes
  there (``image extract``/``render`` write straight to the caller's directory).

:func:`decide` is the pure decision; :func:`current` applies it to this process.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import os
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

RKT_GROUP = "rkt"


class Role(StrEnum):
    DATA_DIR = "data-dir"  # --dir itself: members enter it, only root adds to it (pods!)
    DIR = "dir"  # db/, blob/, imageManifest/
    # cas, cas/tmp, cas/locks, locks: group-writable, and sticky so that a member can neither
    # rename nor remove what root made there (root's temp dirs, lock files others wait on)
    STICKY_DIR = "sticky-dir"
    PRIVATE_DIR = "private-dir"  # cas/tree: rendered trees with setuid-root files
    FILE = "file"  # write-once content: blobs, manifest copies
    SHARED_FILE = "shared-file"  # rewritten by every user: the index db, lock files


@dataclass(frozen=True)
class Perms:
    mode: int
    gid: int | None  # give the file to this group; None: leave the group as created


def decide(role: Role, *, rkt_gid: int | None, euid: int, gids: Collection[int]) -> Perms:
    """The mode and group of a store path created by a process with ``euid`` and ``gids``.

    Group ``rkt`` is used when it exists and the process may give files to it (root, or a
    member); otherwise nothing is group-writable, since the owner's own group is nobody's
    business.
    """
    shared = rkt_gid is not None and (euid == 0 or rkt_gid in gids)
    gid = rkt_gid if shared else None
    match role:
        case Role.DATA_DIR:
            return Perms(0o2750 if shared else 0o755, gid)
        case Role.DIR:
            return Perms(0o2775 if shared else 0o755, gid)
        case Role.STICKY_DIR:
            return Perms(0o3775 if shared else 0o755, gid)
        case Role.PRIVATE_DIR:
            return Perms(0o2700 if shared else 0o700, gid)
        case Role.FILE:
            return Perms(0o644, gid)
        case Role.SHARED_FILE:
            return Perms(0o664 if shared else 0o644, gid)
    raise ValueError(role)


def role_of(data: Path, path: Path) -> Role:
    """The role of a directory of the data dir ``data`` (units/tmpfiles.d): the data dir, the
    pod phase dirs and the pod names 2750 (members enter and list, only root adds), rendered
    trees 2700, cas, cas/tmp and the lock dirs 3775, the rest of the store 2775."""
    rel = path.relative_to(data).parts
    if not rel or rel[0] in ("pods", "names"):
        return Role.DATA_DIR
    if rel == ("cas", "tree"):
        return Role.PRIVATE_DIR
    if rel in (("cas",), ("cas", "tmp"), ("cas", "locks"), ("locks",)):
        return Role.STICKY_DIR
    return Role.DIR


@functools.cache
def rkt_gid() -> int | None:
    try:
        return grp.getgrnam(RKT_GROUP).gr_gid
    except KeyError:
        return None


def current(role: Role) -> Perms:
    return decide(role, rkt_gid=rkt_gid(), euid=os.geteuid(),
                  gids={os.getegid(), *os.getgroups()})


def apply_fd(fd: int, perms: Perms) -> None:
    """Group first (chown may clear setgid), then mode. Only the owner (or root) can do this:
    the caller applies it to what it has just created."""
    if perms.gid is not None and os.fstat(fd).st_gid != perms.gid:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, perms.gid)
    os.fchmod(fd, perms.mode)
