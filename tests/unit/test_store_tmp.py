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


def test_hostile_entries_never_block_nor_lead_collection_astray(tmp_path: Path) -> None:
    """cas/tmp is group-writable and root collects it: a FIFO must not block it, a planted
    symlink must not be followed, a swapped-in cas/tmp must not be collected through."""
    import pytest

    from rktd_less.errors import StoreError

    paths = Paths(tmp_path / "data")
    tmp.private_dir(paths)
    fifo = paths.cas_tmp / "import-fifo.tar"
    os.mkfifo(fifo)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    (paths.cas_tmp / "p-link").symlink_to(victim)
    t0 = time.monotonic()
    removed = tmp.collect(paths)  # (a blocking open of the FIFO would hang here)
    assert time.monotonic() - t0 < 5
    assert sorted(removed) == sorted([fifo, paths.cas_tmp / "p-link"])  # the entries only
    assert (victim / "precious").read_text() == "keep"
    # cas/tmp itself replaced by a symlink to a directory full of unlocked files
    (victim / "loose.tar").write_text("x")
    os.rename(paths.cas_tmp, tmp_path / "old-tmp")
    paths.cas_tmp.symlink_to(victim)
    with pytest.raises(StoreError, match="is not a directory"):
        tmp.collect(paths)
    assert sorted(p.name for p in victim.iterdir()) == ["loose.tar", "precious"]


def test_a_download_s_sidecar_temp_file_is_left_to_its_fetch(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "data")
    tmp.private_dir(paths)
    side_tmp = paths.cas_tmp / ("dl-" + "b" * 32 + ".aci.part.meta.tmp")
    side_tmp.write_text("{}")
    assert tmp.collect(paths) == []
    assert side_tmp.exists()


def test_collection_does_not_wait_for_a_held_collection_lock(tmp_path: Path) -> None:
    from rktd_less.store.lock import try_flock

    paths = Paths(tmp_path / "data")
    tmp.private_dir(paths)
    (paths.cas_tmp / "import-old.tar").write_text("x")
    fd = try_flock(paths.cas_locks / "tmp")  # someone else collects (or a member holds it)
    assert fd is not None
    try:
        t0 = time.monotonic()
        assert tmp.collect(paths) == []
        assert time.monotonic() - t0 < 1
    finally:
        os.close(fd)
    assert tmp.collect(paths) == [paths.cas_tmp / "import-old.tar"]
