"""SELinux labels of a pod, as rkt made them (Documentation/selinux.md): where SELinux is on and
the policy has ``contexts/lxc_contexts``, every pod runs in that file's ``process`` context and
its files get its ``file`` context, both with a level of their own (``s0:cA,cB``: two distinct
MCS categories), so pods cannot reach each other's processes or files even as the same user.

stage0 picks the labels and hands them to stage1 in ``RKT_SELINUX_CONTEXT`` and
``RKT_SELINUX_MOUNT_CONTEXT`` (rkt's names); stage1 passes them to nspawn as ``-Z``/``-L``.
Pure functions over a root directory, so they are tested without SELinux.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

ENV_CONTEXT = "RKT_SELINUX_CONTEXT"
ENV_MOUNT_CONTEXT = "RKT_SELINUX_MOUNT_CONTEXT"
CATEGORIES = 1024  # c0..c1023, as rkt (and Docker, podman)

_PAIR = re.compile(r'^\s*([A-Za-z_]+)\s*=\s*"?([^"]*)"?\s*$')


@dataclass(frozen=True)
class Labels:
    process: str  # nspawn -Z
    file: str  # nspawn -L


def enabled(root: Path = Path("/")) -> bool:
    """SELinux is active: selinuxfs is mounted (libselinux's is_selinux_enabled)."""
    return (root / "sys/fs/selinux/enforce").exists()


def policy_type(root: Path = Path("/")) -> str | None:
    try:
        text = (root / "etc/selinux/config").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        m = _PAIR.match(line)
        if m and m.group(1) == "SELINUXTYPE":
            return m.group(2).strip() or None
    return None


def parse_contexts(text: str) -> dict[str, str]:
    """``key = "value"`` lines of lxc_contexts (comments and blanks skipped)."""
    out = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _PAIR.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def with_level(context: str, level: str) -> str:
    """``user:role:type:s0`` → ``user:role:type:<level>``."""
    parts = context.split(":", 3)
    if len(parts) < 3:
        raise ValueError(f"not an SELinux context: {context!r}")
    return ":".join([*parts[:3], level])


def mcs_level(rng: random.Random) -> str:
    a, b = sorted(rng.sample(range(CATEGORIES), 2))
    return f"s0:c{a},c{b}"


def pod_labels(root: Path = Path("/"), rng: random.Random | None = None) -> Labels | None:
    """The labels of a new pod, or None where rkt would do no transition (SELinux off, no
    policy type, no lxc_contexts, or it lacks process/file)."""
    if not enabled(root):
        return None
    policy = policy_type(root)
    if policy is None:
        return None
    try:
        text = (root / "etc/selinux" / policy / "contexts/lxc_contexts").read_text()
    except OSError:
        return None
    ctx = parse_contexts(text)
    if not ctx.get("process") or not ctx.get("file"):
        return None
    level = mcs_level(rng or random.SystemRandom())
    return Labels(process=with_level(ctx["process"], level), file=with_level(ctx["file"], level))
