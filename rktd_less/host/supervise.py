"""Run one child (stage1's nspawn without systemd) inside given cgroups, pass signals on to it,
and wait for it: the parent side of ``stage1/standalone.py``."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from . import cgroups_standalone
from .proc import log

# Signals Python ignores for itself but a child must get with their default action.
_RESET_TO_DEFAULT = (signal.SIGPIPE, signal.SIGXFSZ)


def spawn_in_cgroups(argv: Sequence[str], env: Mapping[str, str],
                     cgroups: Sequence[Path], netns_fd: int | None = None) -> int:
    """Fork, move the child into ``cgroups`` *before* it execs ``argv`` (so nothing it
    starts is ever outside them) and return its pid. The signals the caller blocked (see
    :func:`block`) are unblocked in the child."""
    log.debug("exec in cgroups %s: %s", [str(c) for c in cgroups], shlex.join(argv))
    pid = os.fork()
    if pid:
        return pid
    code = 127
    try:
        cgroups_standalone.join(cgroups)
        if netns_fd is not None:  # the pod's network namespace, inherited by nspawn
            from .netns import join

            join(netns_fd)
        for s in _RESET_TO_DEFAULT:
            signal.signal(s, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.execve(argv[0], list(argv), dict(env))
    except BaseException as e:  # report, and never return into the caller's stack
        os.write(2, f"stage1: cannot start {argv[0]}: {e}\n".encode())
    finally:
        os._exit(code)


def block(mask: Collection[signal.Signals]) -> None:
    """Block ``mask`` so that :func:`wait_forwarding` receives them with sigwaitinfo."""
    signal.pthread_sigmask(signal.SIG_BLOCK, set(mask))


def wait_forwarding(pid: int, forward: Collection[signal.Signals],
                    should_forward: Callable[[int, int], bool],
                    ready: Callable[[], bool], patience: float = 10.0) -> int:
    """Wait for child ``pid``; meanwhile each signal of ``forward`` for which
    ``should_forward(signo, si_code)`` is true is sent on to it -- once ``ready()`` (a pod's
    init drops a halt request it gets before it handles signals), or after ``patience``
    seconds. Returns the child's wait status as :func:`os.waitstatus_to_exitcode` gives it
    (negative: killed)."""
    waited = {*forward, signal.SIGCHLD}
    held: list[int] = []
    deadline = 0.0
    while True:
        info = signal.sigtimedwait(waited, 0.05) if held else signal.sigwaitinfo(waited)
        if info is not None and info.si_signo == signal.SIGCHLD:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return os.waitstatus_to_exitcode(status)
            # else another child of ours (the stdin relay)
        elif info is not None and should_forward(info.si_signo, info.si_code):
            if not held:
                deadline = time.monotonic() + patience
            held.append(info.si_signo)
        if held and (ready() or time.monotonic() > deadline):
            for signo in held:
                log.debug("passing signal %d on to %d", signo, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signo)
            held.clear()


def die_like(code: int) -> int:
    """Exit status ``code`` as is; for a child killed by signal N (``code == -N``) end this
    process by the same signal, so our parent sees what it would have seen had the child been
    exec'd in place. Returns only if that signal did not end us."""
    if code >= 0:
        return code
    sig = signal.Signals(-code)
    if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught or blocked
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    return 128 + sig
