"""One door for processes: argv lists in, no shell, a clean environment, logged under --debug."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import IO

from ..errors import RktError

log = logging.getLogger("rktd_less.host")

# The environment children get unless the caller passes one: nothing inherited but a sane PATH
# and locale, so a user's environment cannot change what a helper tool does.
_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
}


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(_BASE_ENV)
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    capture: bool = True,
    input: bytes | None = None,
    what: str | None = None,
    error: type[RktError] = RktError,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion. On failure (``check``) raise ``error`` (a RktError) with the
    tool's stderr.

    ``what`` names the action for the error message ("extract image", ...).
    """
    log.debug("exec: %s", shlex.join(argv))
    try:
        cp = subprocess.run(
            list(argv),
            env=dict(env) if env is not None else clean_env(),
            cwd=cwd,
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            check=False,
        )
    except FileNotFoundError as e:
        raise error(f"cannot run {argv[0]}: not found",
                    hint="install the package that provides it") from e
    if check and cp.returncode != 0:
        raise error(f"{what or argv[0]} failed: {last_error(cp)}")
    return cp


def last_error(cp: subprocess.CompletedProcess[bytes]) -> str:
    """The last line a tool wrote on stderr, or its exit status."""
    err = (cp.stderr or b"").decode(errors="replace").strip().splitlines()
    return err[-1] if err else f"exit status {cp.returncode}"


def exec_(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Replace this process (stage0 → stage1, stage1 → nspawn). Never returns."""
    log.debug("exec (replacing process): %s", shlex.join(argv))
    os.execve(argv[0], list(argv), dict(env))


def run_passthrough(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """Run ``argv`` with this process's stdin/stdout/stderr and return its exit status
    (128 + signal number when it was killed, as a shell reports it)."""
    log.debug("exec (stdio passed through): %s", shlex.join(argv))
    try:
        cp = subprocess.run(list(argv), env=dict(env) if env is not None else clean_env(),
                            cwd=cwd, check=False)
    except FileNotFoundError as e:
        raise RktError(f"cannot run {argv[0]}: not found") from e
    return cp.returncode if cp.returncode >= 0 else 128 - cp.returncode


@contextlib.contextmanager
def stdout_of(argv: Sequence[str], *, what: str, error: type[RktError] = RktError,
              cwd: str | os.PathLike[str] | None = None) -> Iterator[IO[bytes]]:
    """``argv``'s output as a stream (a tar being written, ...); once the caller is done, a
    failure of the tool raises ``error`` with its last line on stderr."""
    log.debug("exec (reading its output): %s", shlex.join(argv))
    with tempfile.TemporaryFile() as err:
        try:
            p = subprocess.Popen(list(argv), env=clean_env(), cwd=cwd, stdout=subprocess.PIPE,
                                 stderr=err, stdin=subprocess.DEVNULL)
        except FileNotFoundError as e:
            raise error(f"cannot run {argv[0]}: not found",
                        hint="install the package that provides it") from e
        assert p.stdout is not None
        try:
            yield p.stdout
        finally:
            p.stdout.close()
            code = p.wait()
        if code != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            raise error(f"{what} failed: {lines[-1] if lines else f'exit status {code}'}")
