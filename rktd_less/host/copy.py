"""Copying a rendered image tree into a pod (rkt's --no-overlay): GNU cp keeps owners, modes,
device nodes, hard links, xattrs and ACLs, and reflinks where the filesystem can. Never
Python's copytree (device nodes, speed)."""

from __future__ import annotations

from pathlib import Path

from . import proc

CP = "/usr/bin/cp"


def copy_tree(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    proc.run([CP, "-a", "--reflink=auto", "--no-target-directory", str(src), str(dst)],
             what=f"copy image tree into the pod ({dst.name})")
