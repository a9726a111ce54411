"""Registering a pod that no systemd-nspawn registers (the fly and kvm stage1s) with
systemd-machined, through ``busctl`` (the stage1 start path imports no D-Bus library): its
leader's cgroup names its unit, and machined forgets the machine when that unit ends."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import RktError
from ..ids import machine_name
from . import proc


def register(uuid: str, leader: int, klass: str, root: Path | None = None) -> str | None:
    """RegisterMachine as ``rkt-<uuid>`` of class ``klass`` (container, vm). Returns why it
    failed (the pod runs all the same), or None; nothing to do without systemd."""
    if not os.path.isdir("/run/systemd/system"):
        return None
    uid = bytes.fromhex(uuid.replace("-", ""))
    argv = ["busctl", "call", "--quiet", "org.freedesktop.machine1",
            "/org/freedesktop/machine1", "org.freedesktop.machine1.Manager", "RegisterMachine",
            "sayssus", machine_name(uuid), str(len(uid)), *(str(b) for b in uid), "rkt", klass,
            str(leader), str(root or "")]
    try:
        cp = proc.run(argv, check=False)
    except RktError as e:  # no busctl
        return e.message
    return None if cp.returncode == 0 else proc.last_error(cp)
