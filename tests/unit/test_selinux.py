"""SELinux pod labels (pure: a fake root directory; these machines have SELinux off)."""

from __future__ import annotations

import random
from pathlib import Path

from rktd_less.common import selinux
from rktd_less.pod.launch import Launch, unit_properties
from rktd_less.stage1.nspawn import NspawnPlan, nspawn_argv

LXC = '''# /etc/selinux/targeted/contexts/lxc_contexts
process = "system_u:system_r:svirt_lxc_net_t:s0"
content = "system_u:object_r:virt_var_lib_t:s0"
file = "system_u:object_r:svirt_sandbox_file_t:s0"
'''


def _root(tmp_path: Path, *, enforce: bool = True, lxc: str | None = LXC) -> Path:
    if enforce:
        (tmp_path / "sys/fs/selinux").mkdir(parents=True)
        (tmp_path / "sys/fs/selinux/enforce").write_text("1")
    (tmp_path / "etc/selinux/targeted/contexts").mkdir(parents=True)
    (tmp_path / "etc/selinux/config").write_text("SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    if lxc is not None:
        (tmp_path / "etc/selinux/targeted/contexts/lxc_contexts").write_text(lxc)
    return tmp_path


def test_pod_labels_share_one_mcs_level(tmp_path: Path) -> None:
    labels = selinux.pod_labels(_root(tmp_path), random.Random(7))
    assert labels is not None
    p_user, p_role, p_type, p_level = labels.process.split(":", 3)
    f_type, f_level = labels.file.split(":", 3)[2:]
    assert (p_user, p_role, p_type) == ("system_u", "system_r", "svirt_lxc_net_t")
    assert f_type == "svirt_sandbox_file_t" and p_level == f_level
    sens, cats = p_level.split(":")
    a, b = (int(c.removeprefix("c")) for c in cats.split(","))
    assert sens == "s0" and 0 <= a < b < 1024


def test_levels_differ_between_pods(tmp_path: Path) -> None:
    root = _root(tmp_path)
    rng = random.Random(1)
    levels = {selinux.pod_labels(root, rng).process for _ in range(50)}  # type: ignore[union-attr]
    assert len(levels) == 50


def test_no_transition_without_selinux_or_lxc_contexts(tmp_path: Path) -> None:
    assert selinux.pod_labels(_root(tmp_path / "off", enforce=False)) is None
    assert selinux.pod_labels(_root(tmp_path / "nolxc", lxc=None)) is None
    assert selinux.pod_labels(_root(tmp_path / "half", lxc='process = "a:b:c:s0"\n')) is None
    assert selinux.pod_labels(Path("/")) is None or selinux.enabled()  # this machine: off


def test_labels_reach_nspawn_through_stage1_env() -> None:
    lx = Launch(uuid="u", poddir=Path("/p"), entrypoint=Path("/e"), args=("u",),
                env=((selinux.ENV_CONTEXT, "a:b:c:s0:c1,c2"),))
    props = {n: v for n, _, v in unit_properties(lx, description="d", add_ref=False,
                                                 pass_stdio=False, notify=False)}
    assert f"{selinux.ENV_CONTEXT}=a:b:c:s0:c1,c2" in props["Environment"]  # type: ignore[operator]
    argv = nspawn_argv(NspawnPlan(uuid="u", root="/r", hostname="h",
                                  selinux_context="a:b:c:s0:c1,c2",
                                  selinux_mount_context="a:o:f:s0:c1,c2"))
    assert "-Za:b:c:s0:c1,c2" in argv and "-La:o:f:s0:c1,c2" in argv
    assert not [a for a in nspawn_argv(NspawnPlan(uuid="u", root="/r", hostname="h"))
                if a.startswith(("-Z", "-L"))]
