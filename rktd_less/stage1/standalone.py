"""A pod where no systemd manager is reachable (sysv init, runit, OpenRC, a plain container).

rkt exec'd nspawn in place and let the init system's cgroups be. Without systemd, nobody else
makes or removes cgroups for the pod and nspawn writes its runtime files under the host's
``/run`` (a plain directory on disk on such machines), so stage1 stays as the pod's supervisor:

- it makes the pod's own cgroup ``rkt-<uuid>`` below its current cgroup in the cgroup2
  hierarchy and in the v1 ``name=systemd`` hierarchy (the one nspawn reads its own cgroup
  from on a hybrid host), as the test bed does;
- it mounts a tmpfs on ``/run`` in its private mount namespace, so nspawn's files vanish with
  it (not when the pod's data dir itself is below ``/run``: there the tmpfs would hide it);
- it runs nspawn as its child, inside those cgroups; ``ppid`` names nspawn, whose only child
  is the pod's init (rkt's contract: ``rkt stop`` → SIGTERM, ``--force`` → SIGKILL to it);
- it passes SIGINT/SIGTERM/SIGHUP sent to it by a process (``kill``) on to nspawn, once the
  pod's init is up (as ``stage1 stop`` waits: earlier, the halt request would be lost);
  signals the terminal sends to the foreground process group reach nspawn by themselves;
- when nspawn ends it kills whatever is left in the cgroups, removes them, and ends as nspawn
  did: the same exit status, or the same signal.

The planning functions are pure (unit-tested); the work goes through ``host/``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..common.mountinfo import parse
from ..common.podstatus import is_ready
from ..ids import machine_name

CGROUPS_FILE = "standalone-cgroups"  # in the pod dir: the cgroups this stage1 made
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SI_KERNEL = 0x80  # si_code of a signal the kernel sent (a terminal's ^C, hangup)


@dataclass(frozen=True)
class Hierarchy:
    mountpoint: Path
    root: str  # the mount's root within the hierarchy (mountinfo field 4)
    key: str  # how /proc/self/cgroup names it: "" for cgroup2, "name=systemd"


def hierarchies(mountinfo: str) -> list[Hierarchy]:
    """The cgroup2 hierarchy (first) and the v1 ``name=systemd`` one, each once, from a
    ``/proc/self/mountinfo`` text."""
    found: dict[str, Hierarchy] = {}
    for m in parse(mountinfo):
        if m.fstype == "cgroup2":
            key = ""
        elif m.fstype == "cgroup" and "name=systemd" in m.super_options:
            key = "name=systemd"
        else:
            continue
        found.setdefault(key, Hierarchy(Path(m.point), m.root, key))
    return [found[k] for k in ("", "name=systemd") if k in found]


def own_cgroups(proc_cgroup: str) -> dict[str, str]:
    """hierarchy key → this process's cgroup path, from a ``/proc/self/cgroup`` text."""
    own: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _id, controllers, path = parts
        if controllers in ("", "name=systemd"):
            own[controllers] = path
    return own


def pod_cgroups(mountinfo: str, proc_cgroup: str, uuid: str) -> list[Path]:
    """Where the pod's cgroups go: ``rkt-<uuid>`` below our own cgroup in each hierarchy."""
    own = own_cgroups(proc_cgroup)
    dirs = []
    for h in hierarchies(mountinfo):
        if h.key not in own:
            continue
        path = PurePosixPath(own[h.key])
        root = PurePosixPath(h.root)
        rel = path.relative_to(root) if path.is_relative_to(root) else PurePosixPath(".")
        dirs.append(h.mountpoint / rel / machine_name(uuid))
    return dirs


def recorded_cgroups(text: str, uuid: str) -> list[Path]:
    """The pod's own cgroups from the pod dir's record: absolute paths under /sys/fs/cgroup
    named ``rkt-<uuid>`` only (gc must never remove anything else)."""
    out = []
    for line in text.splitlines():
        p = PurePosixPath(line.strip())
        if (p.is_absolute() and p.name == machine_name(uuid) and ".." not in p.parts
                and p.is_relative_to("/sys/fs/cgroup")):
            out.append(Path(p))
    return out


def gc(poddir: Path, uuid: str) -> None:
    """Remove the cgroups of a pod whose supervisor was killed before it could (gc of an
    exited pod: whatever is left in them is killed first)."""
    from ..host import cgroups_standalone

    try:
        text = (poddir / CGROUPS_FILE).read_text()
    except OSError:
        return
    dirs = [d for d in recorded_cgroups(text, uuid) if d.is_dir()]
    if dirs:
        cgroups_standalone.destroy(dirs)


def run_tmpfs_wanted(poddir: Path) -> bool:
    """A tmpfs on /run would hide a pod dir that lives below /run."""
    return not poddir.resolve().is_relative_to("/run")


def should_forward(signo: int, si_code: int) -> bool:
    """Pass a signal on to nspawn unless the terminal sent it to the whole foreground
    process group (nspawn got it too: twice would be one shutdown request too many)."""
    return signo in FORWARDED and si_code != SI_KERNEL


def run(argv: Sequence[str], env: Mapping[str, str], uuid: str, poddir: Path,
        started: Callable[[int], None],
        before_exit: Callable[[], None] | None = None, netns_fd: int | None = None) -> int:
    """Run nspawn ``argv`` supervised (see the module docstring). ``started(pid)`` records
    nspawn's pid (the ``ppid`` file). Returns nspawn's exit status; if nspawn was killed by
    a signal, this process ends by the same signal once everything is cleaned up."""
    from ..host import cgroups_standalone, mount, supervise

    dirs = pod_cgroups(Path("/proc/self/mountinfo").read_text(),
                       Path("/proc/self/cgroup").read_text(), uuid)
    # recorded for the gc entrypoint, in case this supervisor is killed before it cleans up
    (poddir / CGROUPS_FILE).write_text("".join(f"{d}\n" for d in dirs))
    if run_tmpfs_wanted(poddir):
        mount.mount("tmpfs", "/run", "tmpfs", mount.MS_NOSUID | mount.MS_NODEV, "mode=0755")
    supervise.block((*FORWARDED, signal.SIGCHLD))
    cgroups_standalone.make(dirs)
    try:
        pid = supervise.spawn_in_cgroups(argv, env, dirs, netns_fd=netns_fd)
        started(pid)
        code = supervise.wait_forwarding(pid, FORWARDED, should_forward,
                                         lambda: is_ready(poddir))
    finally:
        cgroups_standalone.destroy(dirs)
        if before_exit is not None:  # what the pod held outside (its networks) goes with it
            before_exit()
    return supervise.die_like(code)
