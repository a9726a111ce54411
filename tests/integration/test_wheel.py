"""A plain (non-editable) `pip install` of the wheel runs pods (issue 11): the stage1 images are
in the package, the entrypoints run the installed code, nothing comes from the checkout. The
wheel's dependencies are Debian 12's own python3-* packages (scripts/install.sh installs them):
the new environment sees them through --system-site-packages and pip installs nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.aci import build_aci
from tests.integration.rktenv import sh

REPO = Path(__file__).resolve().parents[2]


def test_wheel_install_runs_a_pod(scratch: Path) -> None:
    dist = scratch / "dist"
    # the build itself may fetch setuptools from PyPI (isolated build, as any user's pip does)
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
       "-w", str(dist), str(REPO), timeout=300)
    [wheel] = dist.glob("rktd_less-*.whl")
    venv = scratch / "venv"
    sh("/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # --no-index: every dependency must already be satisfied by Debian's packages (pip
    # refuses the install otherwise)
    sh(*pip, "install", "-q", "--no-index", str(wheel), timeout=300)
    aiohttp = sh(str(venv / "bin" / "python"), "-I", "-c",
                 "import aiohttp; print(aiohttp.__file__)").stdout
    assert aiohttp.startswith("/usr/lib/python3/dist-packages/"), aiohttp
    site = sh(str(venv / "bin" / "python"), "-I", "-c",
              "import rktd_less, os; print(os.path.dirname(rktd_less.__file__))").stdout.strip()
    assert site.startswith(str(venv)), site  # the installed copy, not the checkout
    assert (Path(site) / "stage1-images" / "stage1-nspawn.aci").is_file()

    aci = build_aci(scratch / "busybox.aci", name="example.com/busybox", version="1.0")
    away = scratch / "elsewhere"
    away.mkdir()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    rkt = [str(venv / "bin" / "rkt"), f"--dir={scratch / 'data'}",
           f"--local-config={scratch / 'etc'}", f"--system-config={scratch / 'usr-lib'}"]
    try:
        cp = subprocess.run([*rkt, "--insecure-options=image", "run", str(aci), "--exec",
                             "/bin/echo", "--", "from-the-wheel"], cwd=away, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
        assert cp.returncode == 0, cp
        assert "from-the-wheel" in cp.stdout
        listing = subprocess.run([*rkt, "image", "list", "--no-legend"], cwd=away, env=env,
                                 capture_output=True, text=True, check=True).stdout
        assert "rktd-less/stage1-nspawn" in listing
        # the second command of the package: a build from begin to write, then rkt runs it
        acbuild = str(venv / "bin" / "acbuild")
        for step in (["begin", str(aci)], ["set-name", "example.com/rebuilt"],
                     ["set-exec", "--", "/bin/echo", "rebuilt"],
                     ["write", str(scratch / "rebuilt.aci")], ["end"]):
            subprocess.run([acbuild, *step], cwd=away, env=env, capture_output=True, check=True)
        cp = subprocess.run([*rkt, "--insecure-options=image", "run",
                             str(scratch / "rebuilt.aci")], cwd=away, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
        assert cp.returncode == 0 and "rebuilt" in cp.stdout, cp
    finally:
        subprocess.run([*rkt, "gc", "--grace-period=0s"], cwd=away, env=env,
                       capture_output=True, check=False)
