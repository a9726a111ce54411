"""Running the real `rkt` CLI in integration tests, against a data dir on the scratch disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

RKT = str(Path(sys.executable).parent / "rkt")


def scratch() -> Path:
    root = Path(os.environ.get("RKT_TEST_SCRATCH") or "/var/tmp/rktd-less-tests")
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class Rkt:
    data: Path
    work: Path
    extra_env: dict[str, str] | None = None  # the environment of every call unless given

    @property
    def local_config(self) -> Path:
        return self.data.parent / "etc-rkt"

    @property
    def system_config(self) -> Path:
        return self.data.parent / "usr-lib-rkt"

    def argv(self, *args: str) -> list[str]:
        return [RKT, f"--dir={self.data}", f"--local-config={self.local_config}",
                f"--system-config={self.system_config}", *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120,
                 input: str | None = None, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                            input=input, env=env if env is not None else self.extra_env,
                            stdin=None if input is not None else subprocess.DEVNULL)
        if check and cp.returncode != 0:
            raise AssertionError(f"rkt {' '.join(args)} exited {cp.returncode}\n"
                                 f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
        return cp

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,  # type: ignore[call-overload]
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, **kw)

    def pod_files(self) -> list[str]:
        """Every path below the pods directory: compared before and after a refused command,
        to show that it left nothing on disk."""
        pods = self.data / "pods"
        return sorted(str(p.relative_to(pods)) for p in pods.rglob("*")) if pods.exists() else []

    def pod_mounts(self) -> list[str]:
        """This machine's mounts below the pods directory (a stage1 that keeps its mounts in
        a namespace of its own, fly's or kvm's, leaves none)."""
        pods = str(self.data / "pods")
        return [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                if pods in ln]

    def uuid_file(self) -> Path:
        return self.work / f"uuid-{uuidlib.uuid4().hex[:8]}"


def new_env(tag: str) -> Rkt:
    base = scratch() / f"{tag}-{uuidlib.uuid4().hex[:8]}"
    (base / "data").mkdir(parents=True)
    (base / "work").mkdir()
    return Rkt(data=base / "data", work=base / "work")


def destroy(env: Rkt) -> None:
    env("gc", "--grace-period=0s", check=False)
    shutil.rmtree(env.data.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest) -> Iterator[Rkt]:
    """One rkt data dir per test module (named after it), its pods collected afterwards.
    The conftests of tests/integration and tests/host offer it; a module that wants a fresh
    one per test, or a different environment, defines its own `env`."""
    e = new_env(request.module.__name__.rpartition(".")[2].removeprefix("test_"))
    try:
        yield e
    finally:
        destroy(e)


def wait_for(pred: Callable[[], bool], timeout: float = 30, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def sh(*argv: str, check: bool = True, timeout: float = 60, cwd: Path | None = None,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                        stdin=subprocess.DEVNULL, cwd=cwd, env=env)
    if check and cp.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {cp.returncode}\n"
                             f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
    return cp


def group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def wait_file(path: Path, timeout: float = 30) -> str:
    assert wait_for(lambda: path.exists() and path.read_text().strip() != "", timeout), path
    return path.read_text().strip()


__all__: Sequence[str] = ["RKT", "Rkt", "destroy", "group_exists", "new_env", "sh", "wait_file",
                          "wait_for"]
