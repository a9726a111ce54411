"""Group `rkt` and modes of what the store creates (rktd_less.store.perms), no root needed:
the process's own group stands in for `rkt`."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from rktd_less.errors import StoreError
from rktd_less.paths import Paths
from rktd_less.store import Store, perms
from rktd_less.store.lock import flocked, makedirs
from rktd_less.store.perms import Perms, Role, decide
from rktd_less.store.tree import tar_extract_argv
from tests.helpers.aci import build_aci

RKT = 4242


@pytest.mark.parametrize(("role", "shared", "private"), [
    (Role.DATA_DIR, 0o2750, 0o755),
    (Role.DIR, 0o2775, 0o755),
    (Role.STICKY_DIR, 0o3775, 0o755),
    (Role.PRIVATE_DIR, 0o2700, 0o700),
    (Role.FILE, 0o644, 0o644),
    (Role.SHARED_FILE, 0o664, 0o644),
])
def test_decide(role: Role, shared: int, private: int) -> None:
    # root and members give what they create to group rkt
    assert decide(role, rkt_gid=RKT, euid=0, gids=[0]) == Perms(shared, RKT)
    assert decide(role, rkt_gid=RKT, euid=1000, gids=[100, RKT]) == Perms(shared, RKT)
    # a non-member cannot, and no group rkt at all: nothing is group-writable
    assert decide(role, rkt_gid=RKT, euid=1000, gids=[100]) == Perms(private, None)
    assert decide(role, rkt_gid=None, euid=0, gids=[0]) == Perms(private, None)


def test_blobs_are_never_group_writable() -> None:
    # a member must not rewrite the blob of a verified image that root later runs
    for euid, gids in ((0, [0]), (1000, [RKT])):
        assert not decide(Role.FILE, rkt_gid=RKT, euid=euid, gids=gids).mode & 0o022


def test_non_root_extraction_cannot_gain_privileges() -> None:
    user = tar_extract_argv(Path("/b"), Path("/d"), "rootfs", as_root=False)
    assert "--no-same-owner" in user and "--no-same-permissions" in user
    assert "--same-permissions" not in user and "--same-owner" not in user
    root = tar_extract_argv(Path("/b"), Path("/d"), ["manifest", "rootfs"], as_root=True)
    assert {"--same-owner", "--same-permissions", "--numeric-owner"} <= set(root)
    assert root[-2:] == ["manifest", "rootfs"]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


@pytest.fixture
def own_group(monkeypatch: pytest.MonkeyPatch) -> int:
    """Our own effective group plays group rkt: we may give files to it without root."""
    gid = os.getegid()
    monkeypatch.setattr(perms, "rkt_gid", lambda: gid)
    return gid


def test_store_layout_with_group_rkt(tmp_path: Path, own_group: int) -> None:
    paths = Paths(tmp_path / "data")
    s = Store(paths)
    key = s.import_aci(build_aci(tmp_path / "a.aci", name="example.com/a"))
    s.render(key)
    s.index.touch([key])  # a write: -wal and -shm exist while the connection is open
    assert _mode(paths.data) == 0o2750
    for d in (paths.db_dir, paths.blob_dir, paths.blob(key).parent, paths.manifest_dir):
        assert _mode(d) == 0o2775, d
        assert d.stat().st_gid == own_group
    for d in (paths.cas, paths.cas_tmp, paths.cas_locks):  # members cannot rename root's
        assert _mode(d) == 0o3775, d
        assert d.stat().st_gid == own_group
    assert _mode(paths.tree_dir) == 0o2700
    for f in (paths.blob(key), paths.image_manifest(key)):
        assert _mode(f) == 0o644, f
        assert f.stat().st_gid == own_group
    for name in ("images.sqlite", "images.sqlite-wal", "images.sqlite-shm"):
        f = paths.db_dir / name
        assert _mode(f) == 0o664, f
        assert f.stat().st_gid == own_group
    assert _mode(paths.cas_locks / key) == 0o664
    s.close()


def test_store_layout_without_group_rkt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perms, "rkt_gid", lambda: None)
    paths = Paths(tmp_path / "data")
    key = Store(paths).import_aci(build_aci(tmp_path / "a.aci", name="example.com/a"))
    assert _mode(paths.data) == 0o755 and _mode(paths.cas) == 0o755
    assert _mode(paths.blob(key)) == 0o644 and _mode(paths.db) == 0o644


def test_makedirs_leaves_existing_dirs_and_outside_parents_alone(tmp_path: Path,
                                                                 own_group: int) -> None:
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o711)
    existing.chmod(0o711)
    makedirs(existing / "a" / "b", Role.PRIVATE_DIR)
    assert _mode(existing) == 0o711
    assert _mode(existing / "a") == 0o2775 and _mode(existing / "a" / "b") == 0o2700
    makedirs(tmp_path / "x" / "data", Role.DATA_DIR, parents=None)
    assert _mode(tmp_path / "x") == 0o777 & ~_umask()
    with pytest.raises(StoreError, match="not a directory"):
        (tmp_path / "file").write_text("")
        makedirs(tmp_path / "file" / "sub")


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_lock_files_are_never_followed_through_symlinks(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "k").symlink_to(target)
    with pytest.raises(StoreError, match="cannot open lock file"), flocked(
            tmp_path / "locks" / "k"):
        pass
    assert not target.exists()


def test_the_index_is_not_opened_through_a_symlink(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "data")
    paths.db_dir.mkdir(parents=True)
    victim = tmp_path / "victim.db"
    paths.db.symlink_to(victim)
    with pytest.raises(StoreError, match="is a symbolic link"):
        Store(paths).index.all()
    assert not victim.exists()


def test_a_database_created_by_another_process_is_shared(tmp_path: Path,
                                                         own_group: int) -> None:
    """sqlite copies the database's mode to -wal/-shm: they stay group-writable."""
    paths = Paths(tmp_path / "data")
    Store(paths).import_aci(build_aci(tmp_path / "a.aci", name="example.com/a"))
    conn = sqlite3.connect(paths.db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("UPDATE aciinfo SET lastused = 1")
    conn.commit()
    assert _mode(paths.db_dir / "images.sqlite-wal") == 0o664
    conn.close()


def _tmpfiles_dirs() -> dict[str, int]:
    """units/tmpfiles.d's directories below /var/lib/rkt → mode."""
    text = (Path(__file__).parents[2] / "units" / "tmpfiles.d" / "rkt.conf").read_text()
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0] == "d" and f[1].startswith("/var/lib/rkt"):
            out[f[1].removeprefix("/var/lib/rkt").lstrip("/")] = int(f[2], 8)
    return out


def _first_commands(paths: Paths) -> dict[str, Callable[[], object]]:
    from rktd_less.pod import names, poddir, refs
    from rktd_less.store import tmp

    def prepare_lock() -> None:
        with refs.prepare_lock(paths, exclusive=False):
            pass

    return {
        "index lookup (https/discovery fetch)": lambda: Store(paths).index.get_remote("u"),
        "temp space (import, docker, stage1, export)": lambda: tmp.private_dir(paths),
        "pod dirs (prepare/run)": lambda: poddir.ensure_layout(paths),
        "pod name": lambda: names.claim(paths, "web", "0" * 8),
        "prepare lock (run, image gc)": prepare_lock,
    }


@pytest.mark.parametrize("which", list(_first_commands(Paths(Path("/x")))))
def test_each_first_command_makes_the_tmpfiles_d_layout(tmp_path: Path, own_group: int,
                                                         which: str) -> None:
    """Whichever command creates the data dir, what it creates has units/tmpfiles.d's modes
    and group (issue 9: an https fetch left cas/tmp 2755 and the data dir 2775)."""
    paths = Paths(tmp_path / "data")
    _first_commands(paths)[which]()
    # then a local fetch into the same store, as another command would
    Store(paths).import_aci(build_aci(tmp_path / "a.aci", name="example.com/a"))
    expected = _tmpfiles_dirs()
    assert {"", "cas", "cas/tmp", "pods"} <= set(expected)
    checked = 0
    for rel, mode in expected.items():
        d = paths.data / rel
        if d.exists():
            assert (_mode(d), d.stat().st_gid) == (mode, own_group), (which, rel)
            checked += 1
    assert checked >= 6


def test_role_of_follows_tmpfiles_d(tmp_path: Path) -> None:
    data = tmp_path / "d"
    want = {Role.DATA_DIR: 0o2750, Role.DIR: 0o2775, Role.PRIVATE_DIR: 0o2700,
            Role.STICKY_DIR: 0o3775}
    for rel, mode in _tmpfiles_dirs().items():
        role = perms.role_of(data, data / rel)
        assert want[role] == mode, rel


def test_sqlite_errors_name_their_real_cause() -> None:
    from rktd_less.store.index import LOW_SPACE, explain_sqlite_error

    # a write that failed with ENOSPC reaches sqlite as an I/O error
    assert explain_sqlite_error("SQLITE_IOERR_WRITE", "disk I/O error", 4096)[0] == \
        "no space left on device"
    assert explain_sqlite_error("SQLITE_FULL", "database or disk is full", None)[0] == \
        "no space left on device"
    # with space left, an I/O error stays one
    assert explain_sqlite_error("SQLITE_IOERR", "disk I/O error", LOW_SPACE * 100)[0] == \
        "disk I/O error"
    _msg, hint = explain_sqlite_error("SQLITE_READONLY", "attempt to write a readonly database",
                                     None)
    assert hint is not None and "permissions" in hint
    assert "permissions" not in (explain_sqlite_error("SQLITE_FULL", "", None)[1] or "")
