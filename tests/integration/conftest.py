"""Integration tier: needs root and a real systemd as PID 1, i.e. the test bed.

    python3 tests/testbed.py run -- .venv/bin/python -m pytest tests/integration

Every test below this directory is marked `integration` (so `-m "not integration"` leaves the
tier out). If any of them is selected where PID 1 is not systemd, the session stops at once with
a clear message instead of skipping: a skipped tier would look green.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration import rktenv

HERE = Path(__file__).resolve().parent
NEED_SYSTEMD = (
    "integration tests need a real systemd: run them with python3 tests/testbed.py run -- ..."
)


def systemd_booted() -> bool:
    """What sd_booted() checks: PID 1 is systemd."""
    return Path("/run/systemd/system").is_dir()


def _is_integration(item: pytest.Item) -> bool:
    return item.path.is_relative_to(HERE)


def pytest_itemcollected(item: pytest.Item) -> None:
    if _is_integration(item):
        item.add_marker(pytest.mark.integration)


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselection: only what will really run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.collectonly or not any(_is_integration(i) for i in items):
        return
    if not systemd_booted():
        pytest.exit(NEED_SYSTEMD, returncode=pytest.ExitCode.USAGE_ERROR)
    if os.geteuid() != 0:
        pytest.exit("integration tests need root", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh directory on a real disk (not the test bed's overlay root, which cannot hold
    overlay upper dirs); the test bed exports it as RKT_TEST_SCRATCH and removes it at the end."""
    base = os.environ.get("RKT_TEST_SCRATCH")
    if base is None:
        return tmp_path_factory.mktemp("scratch")
    import tempfile

    return Path(tempfile.mkdtemp(prefix="t-", dir=base))


env = rktenv.env  # one rkt data dir per test module
