"""Store lookups: image ID prefixes, name + labels (rkt GetACI rules), image info."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from rktd_less.errors import Ambiguous, NotFound, UsageError
from rktd_less.paths import Paths
from rktd_less.store import Store
from rktd_less.store.index import Index, Remote
from tests.helpers.aci import build_aci


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(Paths(tmp_path / "data"))


def _import(store: Store, tmp_path: Path, tag: str, version: str,
            arch: str = "amd64") -> str:
    return store.import_aci(build_aci(tmp_path / f"{tag}.aci", busybox=False, version=version,
                                      arch=arch, files={"tag": tag.encode()}))


def test_resolve_full_key_prefix_and_full_digest(store: Store, tmp_path: Path) -> None:
    aci = build_aci(tmp_path / "a.aci", busybox=False)
    key = store.import_aci(aci)
    digest = hashlib.sha512(aci.read_bytes()).hexdigest()
    assert store.resolve_id(key) == key
    assert store.resolve_id(key[:9]) == key  # sha512-xx, the shortest accepted
    assert store.resolve_id(key[:19].upper().replace("SHA512", "sha512")) == key
    assert store.resolve_id("sha512-" + digest) == key  # the full 128-hex image ID


def test_resolve_unknown_ambiguous_and_invalid(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as nf:  # an empty store: nothing found, nothing created
        store.resolve_id("sha512-ab")
    assert not store.paths.cas.exists()
    assert str(nf.value) == 'no image found with ID "sha512-ab"'
    assert nf.value.hint is not None and "rkt image list" in nf.value.hint

    index = Index(store.paths.db)
    index.add("sha512-ab" + "1" * 62, "example.com/a", size=1, latest=False)
    index.add("sha512-ab" + "2" * 62, "example.com/b", size=1, latest=False)
    index.add("sha512-ac" + "3" * 62, "example.com/c", size=1, latest=False)
    with pytest.raises(Ambiguous) as amb:
        store.resolve_id("sha512-ab")
    assert str(amb.value) == 'ambiguous image ID "sha512-ab": matches 2 images'
    assert store.resolve_id("sha512-ab2") == "sha512-ab" + "2" * 62
    assert store.resolve_id("sha512-ac") == "sha512-ac" + "3" * 62
    with pytest.raises(NotFound, match=r'^no image found with ID "sha512-ad"$'):
        store.resolve_id("sha512-ad")
    for bad in ("sha512-a", "sha256-abcd", "abcdef", "sha512-xyz"):
        with pytest.raises(UsageError):
            store.resolve_id(bad)


def test_find_by_name_requires_every_requested_label(store: Store, tmp_path: Path) -> None:
    k1 = _import(store, tmp_path, "one", version="1.0")
    k2 = _import(store, tmp_path, "two", version="2.0", arch="aarch64")
    assert store.find_by_name("example.com/busybox", {"version": "1.0"}) == k1
    assert store.find_by_name("example.com/busybox", {"version": "2.0"}) == k2
    assert store.find_by_name("example.com/busybox", {"arch": "aarch64"}) == k2
    assert store.find_by_name("example.com/busybox",
                              {"version": "1.0", "os": "linux", "arch": "amd64"}) == k1
    assert store.find_by_name("example.com/busybox", {"version": "2.0", "arch": "amd64"}) is None
    assert store.find_by_name("example.com/busybox", {"flavour": "x"}) is None
    assert store.find_by_name("example.com/other", {}) is None


def test_find_by_name_prefers_latest_without_version_then_newest(store: Store,
                                                                 tmp_path: Path) -> None:
    old_latest = store.import_aci(build_aci(tmp_path / "a.aci", busybox=False, version="1.0"),
                                  latest=True)
    newer = store.import_aci(build_aci(tmp_path / "b.aci", busybox=False, version="2.0"))
    newest = store.import_aci(build_aci(tmp_path / "c.aci", busybox=False, version="3.0"))
    times = [store.get_image(k).import_time for k in (old_latest, newer, newest)]
    assert times == sorted(times)
    # no version asked: the one marked latest, although older
    assert store.find_by_name("example.com/busybox", {}) == old_latest
    assert store.find_by_name("example.com/busybox", {"os": "linux"}) == old_latest
    # a version asked: latest does not matter
    assert store.find_by_name("example.com/busybox", {"version": "2.0"}) == newer
    # without any latest image: the newest import
    store.index.remove(old_latest)
    assert store.find_by_name("example.com/busybox", {}) == newest
    # two images with the same version label: the newer import wins
    again = store.import_aci(build_aci(tmp_path / "d.aci", busybox=False, version="2.0",
                                       files={"x": b"y"}))
    assert store.find_by_name("example.com/busybox", {"version": "2.0"}) == again


def test_image_info_list_and_touch(store: Store, tmp_path: Path) -> None:
    assert store.list_images() == []
    assert store.find_by_name("example.com/busybox", {}) is None
    assert not store.paths.cas.exists()  # reads never create a store
    a = store.import_aci(build_aci(tmp_path / "a.aci", busybox=False, version="1.0"))
    b = store.import_aci(build_aci(tmp_path / "b.aci", busybox=False, version=None,
                                   name="example.com/noversion"))
    infos = store.list_images()
    assert [i.key for i in infos] == [a, b]
    assert infos[0].version == "1.0" and infos[1].version is None
    assert infos[1].name == "example.com/noversion"
    assert infos[0].size == store.paths.blob(a).stat().st_size
    assert infos[0].last_used == infos[0].import_time
    store.touch_last_used(a, now=infos[0].import_time + 100)
    assert store.get_image(a).last_used == infos[0].import_time + 100
    with pytest.raises(NotFound):
        store.get_image("sha512-" + "0" * 64)
    with pytest.raises(NotFound):
        store.manifest_bytes("sha512-" + "0" * 64)


def test_index_schema_wal_and_remote_cache(tmp_path: Path) -> None:
    db = tmp_path / "cas" / "db" / "images.sqlite"
    index = Index(db)
    assert index.get_remote("https://example.com/a.aci") is None
    r = Remote("https://example.com/a.aci", "https://example.com/a.aci.asc", '"etag"',
               "sha512-" + "a" * 64, 3600, 1234.5)
    index.put_remote(r)
    index.put_remote(r)
    assert index.get_remote(r.aci_url) == r
    index.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")}
        assert {"version", "aciinfo", "remote"} <= tables
        cols = [row[1] for row in conn.execute("PRAGMA table_info(aciinfo)")]
        assert cols == ["blobkey", "name", "importtime", "lastused", "latest", "size",
                        "treestoresize"]
        assert conn.execute("SELECT version FROM version").fetchall() == [(1,)]
    Index(db).get("sha512-" + "a" * 64)  # reopening keeps one version row
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM version").fetchone()[0] == 1
