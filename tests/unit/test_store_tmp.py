"""cas/tmp: what a killed process leaves is collected, what a live one holds is not (issue 9).
Real processes and real flocks; no root needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rktd_less.paths import Paths
from rktd_less.store import tmp

HOLDER = """
import sys, time
from pathlib import Path
from rktd_less.paths import Paths
from rktd_less.store import tmp
d = tmp.private_dir(Paths(Path(sys.argv[1])))
(d / "import-x.tar").write_bytes(b"x" * 4096)
print(d, flush=True)
time.sleep(60)
"""


def _holder(data: Path) -> tuple[subprocess.Popen[str], Path]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(data)], stdout=subprocess.PIPE,
                         text=True, cwd=Path(__file__).parents[2])
    assert p.stdout is not None
    return p, Path(p.stdout.readline().strip())


def test_a_killed_process_s_temp_dir_is_collected_a_live_one_is_not(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "data")
    live, live_dir = _holder(paths.data)
    dead, dead_dir = _holder(paths.data)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        assert (dead_dir / "import-x.tar").exists()  # SIGKILL: nothing cleaned up
        removed = tmp.collect(paths)
        assert removed == [dead_dir]
        assert not dead_dir.exists()
        assert (live_dir / "import-x.tar").exists()
    finally:
        live.kill()
        live.wait()


def test_loose_files_of_older_versions_are_collected_and_own_dir_kept(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "data")
    own = tmp.private_dir(paths)  # (collects first: nothing there yet)
    loose = paths.cas_tmp / "import-abc.tar"
    loose.write_bytes(b"x")
    assert tmp.collect(paths) == [loose]
    assert own.is_dir()  # held by this very process


def test_partials_stay_for_resuming_until_too_old_or_held(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "data")
    tmp.private_dir(paths)
    part = paths.cas_tmp / ("dl-" + "a" * 32 + ".aci.part")
    meta = part.with_name(part.name + ".meta")
    part.write_bytes(b"partial")
    meta.write_text("{}")
    assert tmp.collect(paths) == []  # a later fetch of the URL continues it
    old = time.time() - tmp.PARTIAL_MAX_AGE - 60
    for f in (part, meta):
        os.utime(f, (old, old))
    with tmp.hold_partial(paths, part):  # a fetch is using it: left alone
        assert tmp.collect(paths) == []
    assert sorted(tmp.collect(paths)) == sorted([part, meta])
