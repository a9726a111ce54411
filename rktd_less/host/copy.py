"""Copying a rendered image tree into a pod (rkt's --no-overlay): GNU cp keeps owners, modes,
device nodes, hard links, xattrs and ACLs, and reflinks where the filesystem can. Never
Python's copytree (device nodes, speed)."""

from __future__ import annotations

from pathlib import Path

from . import proc

CP = "/usr/bin/cp"


def copy_tree(src: Path, dst: Path, *, what: str = "", keep_owner: bool = True) -> None:
    """``src`` copied as ``dst`` (into it, where it is a directory already). Without
    ``keep_owner`` (a caller without root) files become the caller's, and a file the caller
    cannot read is an error, not a silent gap."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    keep = ["-a"] if keep_owner else ["-dR", "--preserve=mode,timestamps,links"]
    proc.run([CP, *keep, "--reflink=auto", "--no-target-directory", str(src), str(dst)],
             what=what or f"copy image tree into the pod ({dst.name})")
