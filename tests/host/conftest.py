"""Host tier: `rkt run` on the bare machine, where PID 1 is not systemd (sysv init, runit,
OpenRC, a plain container), proving the pod runs as rkt's did and leaves nothing behind.

    sudo bash scripts/host-tier.sh

Every test below this directory is marked `host`. They need root; without it the session stops
at once instead of skipping (a skipped tier would look green). Where a systemd manager is
reachable (/run/systemd/system exists) they refuse to run as well: scripts/host-tier.sh hides it
first on such machines.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration import rktenv

HERE = Path(__file__).resolve().parent
NEED_ROOT = "host tests need root: sudo .venv/bin/python -m pytest tests/host"
NO_SYSTEMD_ONLY = (
    "host tests prove rkt run where no systemd manager is reachable, but PID 1 here is "
    "systemd (/run/systemd/system exists): run them with scripts/host-tier.sh, which hides it"
)


def _is_host(item: pytest.Item) -> bool:
    return item.path.is_relative_to(HERE)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "host: needs root on a machine without systemd as PID 1")


def pytest_itemcollected(item: pytest.Item) -> None:
    if _is_host(item):
        item.add_marker(pytest.mark.host)


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselection: only what will really run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.collectonly or not any(_is_host(i) for i in items):
        return
    if os.geteuid() != 0:
        pytest.exit(NEED_ROOT, returncode=pytest.ExitCode.USAGE_ERROR)
    if Path("/run/systemd/system").is_dir():
        pytest.exit(NO_SYSTEMD_ONLY, returncode=pytest.ExitCode.USAGE_ERROR)


env = rktenv.env  # one rkt data dir per test module
