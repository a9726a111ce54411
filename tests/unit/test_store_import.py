"""Store import: one streaming pass, content-addressed, idempotent, and all-or-nothing."""

from __future__ import annotations

import gzip
import hashlib
import io
import sqlite3
from pathlib import Path

import pytest

from rktd_less.errors import ImageError, ManifestError, StoreError
from rktd_less.paths import Paths
from rktd_less.store import Store
from rktd_less.store.index import Index
from tests.helpers.aci import (
    RawMember,
    build_aci,
    build_raw_tar,
    manifest_bytes,
    raw_dir,
    raw_file,
    raw_hardlink,
    raw_manifest,
    raw_symlink,
    truncate,
)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(Paths(tmp_path / "data"))


def files_under(p: Path) -> list[Path]:
    return sorted(x for x in p.rglob("*") if not x.is_dir()) if p.exists() else []


def assert_clean(store: Store) -> None:
    """Nothing of a failed import anywhere: no temp file, no blob, no manifest, no row."""
    paths = store.paths
    assert files_under(paths.cas_tmp) == []
    assert files_under(paths.blob_dir) == []
    assert files_under(paths.manifest_dir) == []
    if paths.db.exists():
        with sqlite3.connect(paths.db) as db:
            assert db.execute("SELECT count(*) FROM aciinfo").fetchone()[0] == 0


def plain_sha(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


def test_all_compressions_give_the_key_of_the_uncompressed_tar(store: Store,
                                                               tmp_path: Path) -> None:
    plain = build_aci(tmp_path / "plain.aci")
    key = store.import_aci(plain)
    assert key == "sha512-" + plain_sha(plain)[:64]
    for c in ("gzip", "bzip2", "xz"):
        packed = build_aci(tmp_path / f"{c}.aci", compress=c)
        assert packed.read_bytes() != plain.read_bytes()
        assert store.import_aci(packed) == key
    assert store.paths.blob(key).read_bytes() == plain.read_bytes()
    assert len(store.list_images()) == 1
    assert files_under(store.paths.cas_tmp) == []


def test_import_from_a_non_seekable_stream(store: Store, tmp_path: Path) -> None:
    aci = build_aci(tmp_path / "a.aci", compress="gzip", busybox=False, files={"x": b"1"})

    class Pipe(io.RawIOBase):  # read() only, like a socket or HTTP body
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            n = min(len(b), 1000, len(self.data))  # short reads, too
            b[:n] = self.data[:n]
            self.data = self.data[n:]
            return n

        def seekable(self) -> bool:
            return False

    key = store.import_aci(io.BufferedReader(Pipe(aci.read_bytes()), 7))
    assert key == "sha512-" + hashlib.sha512(gzip.decompress(aci.read_bytes())).hexdigest()[:64]


def test_import_is_idempotent_and_keeps_one_row(store: Store, tmp_path: Path) -> None:
    aci = build_aci(tmp_path / "a.aci", busybox=False, files={"etc/motd": b"hi\n"})
    key = store.import_aci(aci)
    first = store.get_image(key)
    assert store.import_aci(aci) == key
    assert store.import_aci(build_aci(tmp_path / "b.aci", busybox=False,
                                      files={"etc/motd": b"hi\n"}, compress="xz")) == key
    assert store.get_image(key) == first  # nothing refreshed
    assert [i.key for i in store.list_images()] == [key]
    assert store.manifest_bytes(key) == manifest_bytes()
    assert store.manifest(key).name == "example.com/busybox"
    assert first.size == aci.stat().st_size == store.paths.blob(key).stat().st_size
    assert first.version == "1.0" and first.tree_size == 0 and not first.latest
    assert files_under(store.paths.cas_tmp) == []


def test_latest_flag_is_raised_by_a_later_import_never_cleared(store: Store,
                                                               tmp_path: Path) -> None:
    aci = build_aci(tmp_path / "a.aci", busybox=False)
    key = store.import_aci(aci)
    assert not store.get_image(key).latest
    store.import_aci(aci, latest=True)
    store.import_aci(aci)
    assert store.get_image(key).latest


def test_dot_prefixed_archives_are_accepted(store: Store, tmp_path: Path) -> None:
    key = store.import_aci(build_aci(tmp_path / "a.aci", dot_prefix=True, busybox=False,
                                     files={"a/b": b"x"}))
    assert store.manifest(key).name == "example.com/busybox"


def test_odd_but_safe_member_names_survive_the_listing(store: Store, tmp_path: Path) -> None:
    names = {'we"ird\nname\x01': b"1", "sp ace -> x": b"2", "ünï/cødé": b"3", "back\\slash": b"4"}
    key = store.import_aci(build_aci(tmp_path / "a.aci", busybox=False, files=names,
                                     links={"l -> x": "sp ace -> x"}))
    root = store.tree_rootfs(store.render(key))
    for name, data in names.items():
        assert (root / name).read_bytes() == data
    assert (root / "l -> x").read_bytes() == b"2"


M = raw_manifest()
R = raw_dir("rootfs")
MALICIOUS: dict[str, tuple[list[RawMember], str]] = {
    "absolute": ([M, R, raw_file("/etc/evil", b"x")], 'unsafe member "/etc/evil": absolute'),
    "dotdot": ([M, R, raw_file("rootfs/../../evil", b"x")],
               'unsafe member "rootfs/../../evil": path escapes the image'),
    "dotdot-top": ([M, R, raw_file("../evil", b"x")], "path escapes the image"),
    "symlink-escape-abs": ([M, R, raw_symlink("rootfs/etc", "/etc"),
                            raw_file("rootfs/etc/passwd", b"x")],
                           'unsafe member "rootfs/etc/passwd": path goes through the symlink '
                           '"rootfs/etc"'),
    "symlink-escape-rel": ([M, R, raw_symlink("rootfs/up", "../../../.."),
                            raw_file("rootfs/up/tmp/evil", b"x")],
                           'path goes through the symlink "rootfs/up"'),
    "symlink-after-dir": ([M, R, raw_dir("rootfs/d"), raw_file("rootfs/d/x", b"x"),
                           raw_symlink("rootfs/d", "/")],
                          'unsafe member "rootfs/d": is both a symlink and a directory'),
    "symlink-after-file": ([M, R, raw_file("rootfs/d/x", b"x"), raw_symlink("rootfs/d", "/")],
                           'unsafe member "rootfs/d/x": path goes through the symlink '
                           '"rootfs/d"'),
    "symlink-then-dir": ([M, R, raw_symlink("rootfs/d", "/tmp"), raw_dir("rootfs/d")],
                         'unsafe member "rootfs/d": is both a symlink and a directory'),
    "symlink-dot-path": ([M, R, raw_symlink("rootfs/s", "/"), raw_file("rootfs/./s/x", b"x")],
                         'path goes through the symlink "rootfs/s"'),
    # GNU tar lists "/etc/shadow" without its "/": either way it is refused
    "hardlink-abs": ([M, R, raw_hardlink("rootfs/h", "/etc/shadow")],
                     'unsafe member "rootfs/h": hard link'),
    "hardlink-outside": ([M, R, raw_hardlink("rootfs/h", "manifest")],
                         "hard link target outside rootfs"),
    "hardlink-dotdot": ([M, R, raw_hardlink("rootfs/h", "rootfs/../../../etc/shadow")],
                        "hard link target outside rootfs"),
    "hardlink-via-symlink": ([M, R, raw_symlink("rootfs/l", "/etc"),
                              raw_hardlink("rootfs/h", "rootfs/l/shadow")],
                             'hard link target goes through the symlink "rootfs/l"'),
    "rootfs-symlink": ([M, raw_symlink("rootfs", "/")], '"rootfs" must be a directory'),
    "missing-manifest": ([R, raw_file("rootfs/x", b"x")], 'missing "manifest"'),
    "missing-rootfs": ([M], 'missing "rootfs/"'),
    "two-manifests": ([M, R, M], 'more than one "manifest"'),
    "manifest-dir": ([raw_dir("manifest"), R], '"manifest" must be a regular file'),
    "extra-top-level": ([M, R, raw_file("etc/passwd", b"x")],
                        'unexpected top-level entry "etc"'),
    "mixed-forms": ([M, R, raw_file("./rootfs/x", b"x")], 'mix "./name" and "name" forms'),
    "root-symlink": ([raw_symlink("./", "/"), M, R], "the archive root must be a directory"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
@pytest.mark.parametrize("compress", [None, "gzip"])
def test_malicious_archives_are_rejected_leaving_nothing(store: Store, tmp_path: Path,
                                                         case: str, compress: str | None) -> None:
    members, message = MALICIOUS[case]
    aci = build_raw_tar(tmp_path / "evil.aci", members, compress=compress)  # type: ignore[arg-type]
    with pytest.raises(ImageError) as ei:
        store.import_aci(aci)
    text = str(ei.value)
    assert text.startswith(f'image error: "{aci}": ')
    assert message in text
    assert "\n" not in text
    assert_clean(store)


def test_unsafe_name_with_control_characters_is_reported_on_one_line(store: Store,
                                                                      tmp_path: Path) -> None:
    aci = build_raw_tar(tmp_path / "evil.aci", [M, R, raw_file("/x\ny", b"")])
    with pytest.raises(ImageError, match=r'unsafe member "/x\\ny": absolute path$'):
        store.import_aci(aci)


def _corrupt_middle(p: Path) -> Path:
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    p.write_bytes(bytes(data))
    return p


@pytest.mark.parametrize(("make", "message"), [
    (lambda t: truncate(build_aci(t / "a.aci", compress="gzip"), -5000), "truncated gzip data"),
    (lambda t: _corrupt_middle(build_aci(t / "a.aci", compress="gzip")), "corrupt gzip data"),
    (lambda t: truncate(build_aci(t / "a.aci", compress="bzip2"), -5000),
     "truncated bzip2 data"),
    (lambda t: truncate(build_aci(t / "a.aci", compress="xz"), -5000), "truncated xz data"),
    (lambda t: truncate(build_aci(t / "a.aci"), -700_000), "corrupt tar data"),
    (lambda t: _write(t / "a.aci", b"hello, this is not an image\n" * 40), "not a tar archive"),
    (lambda t: _write(t / "a.aci", b""), "empty file"),
    (lambda t: _write(t / "a.aci", gzip.compress(build_aci(t / "i.aci", compress="gzip")
                                                 .read_bytes())),
     "not a tar archive inside the gzip data"),
])
def test_corrupt_archives(store: Store, tmp_path: Path, make: object, message: str) -> None:
    aci = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ImageError) as ei:
        store.import_aci(aci)
    assert str(ei.value) == f'image error: "{aci}": {message}' or (
        message == "corrupt tar data" and str(ei.value).startswith(
            f'image error: "{aci}": corrupt tar data ('))
    assert_clean(store)


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(("manifest", "message"), [
    (b'{"acKind": "ImageManifest", ', "image manifest: invalid JSON: "),
    (manifest_bytes(name="Example.com/x"),
     'image manifest: "name" "Example.com/x" is not a valid AC Identifier'),
    (manifest_bytes(arch="sparc"), 'image manifest: "labels" bad arch "sparc" for linux'),
])
def test_bad_manifests_are_rejected_leaving_nothing(store: Store, tmp_path: Path,
                                                    manifest: bytes, message: str) -> None:
    aci = build_raw_tar(tmp_path / "bad.aci", [raw_file("manifest", manifest), R,
                                                raw_file("rootfs/x", b"x")])
    with pytest.raises(ManifestError) as ei:
        store.import_aci(aci)
    assert str(ei.value).startswith(message)
    assert_clean(store)


def test_index_failure_removes_the_blob_and_manifest(store: Store, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> bool:
        raise StoreError("disk on fire")

    monkeypatch.setattr(Index, "add", boom)
    with pytest.raises(StoreError, match="disk on fire"):
        store.import_aci(build_aci(tmp_path / "a.aci", busybox=False))
    assert_clean(store)


def test_missing_file_is_an_image_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read: No such file or directory"):
        store.import_aci(tmp_path / "nope.aci")
    assert_clean(store)


def test_oversized_manifest_is_refused_before_reading_it(store: Store, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from rktd_less.store import blobs

    monkeypatch.setattr(blobs, "MAX_MANIFEST", 100)
    with pytest.raises(ImageError, match=r'"manifest" is too large$'):
        store.import_aci(build_aci(tmp_path / "a.aci", busybox=False))
    assert_clean(store)
