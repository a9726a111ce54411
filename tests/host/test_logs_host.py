"""rkt logs where no systemd runs: pods keep no journal on the machine, and logs says so."""

from __future__ import annotations

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt


def test_logs_without_systemd_is_one_clear_error(env: Rkt) -> None:
    aci = build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0")
    uf = env.uuid_file()
    env("run", "--insecure-options=image", f"--uuid-file-save={uf}", str(aci), "--exec",
        "/bin/echo", "--", "hi")
    cp = env("logs", uf.read_text().strip(), check=False)
    assert cp.returncode == 254, cp
    assert "has no journal on this machine" in cp.stderr and len(cp.stderr.splitlines()) == 1
