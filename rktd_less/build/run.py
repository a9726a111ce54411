"""``acbuild run``: one build step, a command run in the image being built, through
systemd-nspawn (reference acbuild.md §1 "How run works"; the layers: :mod:`.layer`).

The step is the unit ``acbuild-run-<hash of the build's path>.service`` where systemd runs
(``systemctl status`` and ``journalctl -u`` show it; the caller's stdio is its stdio), or a
child process where it does not. Either way its command is ``unshare --mount`` then a
two-line shell that mounts the overlay and execs systemd-nspawn: the overlay lives in the
step's own mount namespace, so it is gone with the step and can never be left mounted on
the machine (acbuild's was, and an ``rm -rf`` of the build then went through it).

nspawn runs the command with its default confinement (no ``--capability=all``), the host's
network (no private network: the step may download), ``--as-pid2`` (signals and zombies
handled as a shell expects), and with ``--resolv-conf=off --timezone=off
--link-journal=no`` it writes nothing into the image: DNS comes from the scaffold layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SystemdError
from .context import BuildError, Context
from .layer import check_upper, clear, make_scaffold, merge

ENGINES = ("systemd-nspawn",)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RESOLV_CONF = Path("/etc/resolv.conf")
# $1 the overlay's options, $2 where, $3 "yes" for a tmpfs on /run; the rest is nspawn's argv
# (never interpreted by sh). A failed mount is status 125 (as podman's own errors), so as not
# to pass for the command's.
MOUNT_AND_EXEC = ('mount -t overlay -o "$1" overlay "$2" || exit 125; '
                  'if [ "$3" = yes ]; then '
                  'mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || exit 125; fi; '
                  'shift 3; exec "$@"')
SHOWN = 10  # deletions named one by one before "and N more"


@dataclass(frozen=True)
class Step:
    argv: tuple[str, ...]
    working_dir: str = ""
    env: tuple[tuple[str, str], ...] = ()
    interactive: bool = False
    debug: bool = False


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        hint = ("rktd-less's acbuild runs steps only through systemd-nspawn: a chroot would "
                "give the step's root the whole machine") if engine == "chroot" else None
        raise BuildError(f'no such engine "{engine}"', hint=hint)


def require_root() -> None:
    if os.geteuid() != 0:
        raise BuildError("acbuild run needs root: it mounts an overlay filesystem and starts "
                         "systemd-nspawn", hint="run it as root (e.g. with sudo); every other "
                         "command works without root")


def unit_for(ctx: Context) -> str:
    digest = hashlib.sha256(os.fsencode(os.path.realpath(ctx.dir))).hexdigest()[:16]
    return f"acbuild-run-{digest}.service"


UNSAFE_IN_OPTIONS = (",", ":", '"', "\\")


def overlay_options(lowers: Sequence[Path], upper: Path, work: Path) -> str:
    """overlayfs options: ``lowers`` top-most first. No metacopy (an upper file would hold
    only metadata, its data left in a lower layer) and no redirect_dir (a renamed directory
    would be a pointer to a lower one): every change is whole in the upper directory.
    mount(8) has no escape for "," (it splits the options on it), so a path with one of
    ``UNSAFE_IN_OPTIONS`` is refused rather than changing the options."""
    for p in (*lowers, upper, work):
        bad = next((c for c in UNSAFE_IN_OPTIONS if c in str(p)), None)
        if bad is not None:
            raise BuildError(f'acbuild run cannot use "{p}": overlayfs options cannot hold a '
                             f'path with "{bad}"', hint="use a work path (and rkt --dir) "
                             "without , : \" or \\")
    return (f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={upper},workdir={work}"
            ",redirect_dir=off,index=off,metacopy=off")


def nspawn_argv(step: Step, target: Path, machine: str, resolv_conf: Path | None) -> list[str]:
    """``resolv_conf``: the host's, bind-mounted read-only on the scaffold's mount point.
    CAP_LINUX_IMMUTABLE is dropped: an immutable file (chattr +i) could not be merged."""
    env = dict(step.env)
    env.setdefault("PATH", PATH)
    argv = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
            f"--machine={machine}", "-D", str(target), "--link-journal=no",
            "--resolv-conf=off", "--timezone=off", "--as-pid2",
            "--drop-capability=CAP_LINUX_IMMUTABLE",
            "--console=" + ("interactive" if step.interactive else "pipe")]
    if resolv_conf is not None:
        argv.append(f"--bind-ro={resolv_conf}:/etc/resolv.conf")
    if step.working_dir:
        argv.append(f"--chdir={step.working_dir}")
    argv += [f"--setenv={k}={v}" for k, v in env.items()]
    return [*argv, "--", *step.argv]


def step_argv(options: str, target: Path, nspawn: Sequence[str], *,
              private_run: bool) -> list[str]:
    """unshare + sh: the overlay mounted in the step's own mount namespace, then nspawn.
    ``private_run``: a tmpfs on /run there too, where no systemd runs (/run may then be a
    directory on disk, and nspawn's files under /run/systemd/nspawn would stay on it)."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    nspawn_path = shutil.which(nspawn[0]) or f"/usr/bin/{nspawn[0]}"
    return [unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            MOUNT_AND_EXEC, "acbuild-run", options, str(target),
            "yes" if private_run else "no", nspawn_path, *nspawn[1:]]


def step_env(debug: bool) -> dict[str, str]:
    return {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
            "SYSTEMD_LOG_LEVEL": "debug" if debug else "err"}


def run_step(ctx: Context, step: Step, deps: Sequence[Path],
             say: Callable[[str], None]) -> int:
    """Run ``step`` over the build (under its lock) with ``deps`` (the dependencies' trees,
    top-most first) below it; on success its changes become the build's. The exit status of
    the command (128 + signal when it was killed)."""
    from ..systemd import bus

    require_root()
    if shutil.which("systemd-nspawn") is None:
        raise BuildError("systemd-nspawn is not installed",
                         hint="install it: apt-get install systemd-container")
    ctx = Context(Path(os.path.abspath(ctx.work)))  # the step runs in / (the unit's cwd)
    unit = unit_for(ctx)
    use_unit = bus.available()
    if use_unit and asyncio.run(_still_running(unit)):
        raise BuildError(f"a step of this build is still running as {unit}",
                         hint=f"wait for it, or `systemctl stop {unit}`")
    root = ctx.dir / "run"
    clear(root)
    try:
        root.mkdir(mode=0o700)
        upper, work, target, scaffold = (root / n for n in ("upper", "work", "target",
                                                             "scaffold"))
        for d in (upper, work, target):
            d.mkdir(mode=0o755)
        own = os.lstat(ctx.rootfs)  # the overlay's "/" is the upper directory: as the image's
        os.chown(upper, own.st_uid, own.st_gid)
        os.chmod(upper, own.st_mode & 0o7777)
        lowers = [ctx.rootfs, *deps]
        resolv = root / "resolv.conf"
        try:
            resolv.write_bytes(RESOLV_CONF.read_bytes())  # the host's, now
            has_dns = True
        except OSError:
            has_dns = False  # the host has none: neither has the step
        has_dns = make_scaffold(scaffold, lowers) and has_dns
        argv = step_argv(overlay_options([scaffold, *lowers], upper, work), target,
                         nspawn_argv(step, target, unit.removesuffix(".service")[:64],
                                     resolv if has_dns else None),
                         # a tmpfs on /run would hide a build below /run
                         private_run=not use_unit
                         and not Path(os.path.realpath(target)).is_relative_to("/run"))
        env = step_env(step.debug)
        if use_unit:
            code = asyncio.run(_in_unit(unit, argv, env, str(ctx.work)))
        else:
            from ..host import proc

            code = proc.run_passthrough(argv, env=proc.clean_env(env))
        if code == 0:
            check_upper(upper)
            kept = merge(upper, ctx.rootfs, deps)
            if kept:
                named = ", ".join(f'"/{k}"' for k in kept[:SHOWN])
                more = f" and {len(kept) - SHOWN} more" if len(kept) > SHOWN else ""
                say(f"run: warning: the step deleted {named}{more}, which the dependencies "
                    "provide; an image cannot delete its dependencies' files, so they stay "
                    "in the image as the dependencies have them")
        return code
    finally:
        clear(root)


async def _still_running(unit: str) -> bool:
    from ..systemd.bus import Systemd

    sd = await Systemd.connect()
    try:
        st = await sd.status(unit)
    finally:
        sd.close()
    return st is not None and not st.ended


async def _in_unit(unit: str, argv: Sequence[str], env: dict[str, str], cwd: str) -> int:
    """Run ``argv`` as the transient service ``unit`` with our stdio; its exit status.
    SIGINT, SIGTERM, SIGHUP: the first stops the unit, the next kills it."""
    from ..systemd.bus import STDIO_FROM_CALLER, Prop, Systemd, exec_command

    props = [Prop("Description", "s", f"acbuild run in {cwd}"),
             Prop("Type", "s", "exec"),
             Prop("CollectMode", "s", "inactive-or-failed"),
             Prop("Delegate", "b", True),
             Prop("KillMode", "s", "mixed"),
             Prop("WorkingDirectory", "s", "/"),
             Prop("Environment", "as", [f"{k}={v}" for k, v in env.items()]),
             Prop("ExecStart", "a(sasb)", exec_command(argv)),
             Prop("AddRef", "b", True),
             *(Prop(*p) for p in STDIO_FROM_CALLER)]
    sd = await Systemd.connect()
    loop = asyncio.get_running_loop()
    signals = 0
    tasks: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        aw = (sd.stop_unit(unit) if signals == 1
              else sd.kill_unit(unit, "all", signal.SIGKILL))
        task = loop.create_task(_quietly(aw))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(s, on_signal)
    try:
        sys.stdout.flush()
        job = await sd.start_transient(unit, props, (0, 1, 2))
        if signals:  # a signal came before the unit existed: its stop failed then
            await _quietly(sd.stop_unit(unit))
        await sd.wait_job(job)
        st = await sd.wait_inactive(unit)
        if st is None:
            raise SystemdError(f"unit {unit} disappeared before its step ended",
                               hint=f"see `journalctl -u {unit}`")
        if st.exec_main_code == 0:  # never started: systemd says why in the journal
            raise BuildError(f"the step did not start ({st.result})",
                             hint=f"see `journalctl -u {unit}`")
        return st.exit_status
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(s)
        sd.close()


async def _quietly(aw: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):  # a failed stop or kill: the next signal retries
        await aw
