"""Squash refuses unsafe and broken layers with one line naming the layer, and leaves no ACI."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rktd_less.convert.squash import squash
from rktd_less.errors import ImageError, ManifestError, StoreError
from tests.helpers.layers import (
    Compress,
    Entry,
    blockdev,
    build_layer,
    chardev,
    compress_bytes,
    d,
    f,
    hard,
    sym,
    tar_bytes,
    wh,
    write_raw,
    zstd_frame,
)
from tests.unit.test_convert_squash import MANIFEST, read_aci


def fails(tmp: Path, *layers: Sequence[Entry], compress: Compress = "gzip") -> str:
    blobs = [build_layer(tmp / f"layer{i}", list(ents), compress=compress)
             for i, ents in enumerate(layers)]
    return fails_blobs(tmp, blobs)


def fails_blobs(tmp: Path, blobs: list[tuple[Path, str]]) -> str:
    out = tmp / "out.aci"
    out.write_bytes(b"an older file")
    with pytest.raises(ImageError) as exc:
        squash(blobs, MANIFEST, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp.iterdir()) == sorted(p.name for p, _ in blobs)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("image error: layer ")
    return msg


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape", "a/../../escape", "./../x",
                                  "a/b/../../../x"])
def test_absolute_and_parent_paths(tmp_path: Path, name: str) -> None:
    msg = fails(tmp_path, [f("ok")], [f(name, b"x")])
    assert 'layer "layer1"' in msg and name in msg


def test_harmless_dot_forms_are_normalized(tmp_path: Path) -> None:
    out = tmp_path / "out.aci"
    squash([build_layer(tmp_path / "l", [d("./"), f("./a//b/./c", b"c"), f("x/", b"")])],
           MANIFEST, out)
    aci = read_aci(out)
    assert aci.content("a/b/c") == b"c" and "x" in aci.members


def test_entry_below_symlink_same_layer(tmp_path: Path) -> None:
    msg = fails(tmp_path, [sym("etc", "/host/etc"), f("etc/passwd", b"x")])
    assert "etc/passwd" in msg and "symlink" in msg


def test_entry_before_its_symlink_parent_same_layer(tmp_path: Path) -> None:
    msg = fails(tmp_path, [f("lib/x", b"x"), sym("lib", "/")])
    assert "symlink" in msg


def test_upper_entry_below_lower_symlink(tmp_path: Path) -> None:
    msg = fails(tmp_path, [sym("bin", "usr/bin"), d("usr/bin")], [f("bin/tool", b"x")])
    assert 'layer "layer0"' in msg and "symlink" in msg


def test_deep_symlink_ancestor(tmp_path: Path) -> None:
    fails(tmp_path, [d("a"), sym("a/b", "../../../..")], [d("a/b/c"), f("a/b/c/d")])


def test_symlink_whited_out_then_directory_is_fine(tmp_path: Path) -> None:
    out = tmp_path / "out.aci"
    squash([build_layer(tmp_path / "l0", [sym("bin", "usr/bin")]),
            build_layer(tmp_path / "l1", [wh("bin"), f("bin/tool", b"t")])], MANIFEST, out)
    aci = read_aci(out)
    assert aci.kind("bin") == "dir" and aci.content("bin/tool") == b"t"


@pytest.mark.parametrize("entry", [chardev("tmp/null", 1, 3), blockdev("sda", 8, 0),
                                   chardev("devices/tty", 5, 0)])
def test_device_outside_dev(tmp_path: Path, entry: Entry) -> None:
    msg = fails(tmp_path, [entry])
    assert "device node outside /dev" in msg and entry.name in msg


def test_device_outside_dev_even_if_deleted_later(tmp_path: Path) -> None:
    fails(tmp_path, [chardev("mem", 1, 1)], [wh("mem")])


def test_devices_under_dev_are_fine(tmp_path: Path) -> None:
    out = tmp_path / "out.aci"
    squash([build_layer(tmp_path / "l", [chardev("dev/null", 1, 3), blockdev("dev/sda", 8, 0),
                                         chardev("dev/pts/0", 136, 0)])], MANIFEST, out)
    aci = read_aci(out)
    assert aci.kind("dev/null") == "char" and aci.kind("dev/sda") == "block"


@pytest.mark.parametrize("entry", [f("dev", b"x"), sym("dev", "/tmp"), chardev("dev", 1, 3)])
def test_dev_must_be_a_directory(tmp_path: Path, entry: Entry) -> None:
    msg = fails(tmp_path, [f("a")], [entry])
    assert '\\"/dev\\" is not a directory' in msg or '"/dev" is not a directory' in msg


def test_dev_not_a_directory_in_a_lower_layer(tmp_path: Path) -> None:
    fails(tmp_path, [f("dev", b"x")], [d("dev")])


def test_hardlink_to_directory(tmp_path: Path) -> None:
    assert "hard link to a directory" in fails(tmp_path, [d("x"), hard("l", "x")])
    assert "hard link to a directory" in fails(tmp_path / "2", [d("x")], [hard("l", "x")])


def test_hardlink_to_nothing(tmp_path: Path) -> None:
    msg = fails(tmp_path, [f("a")], [hard("l", "missing")])
    assert 'layer "layer1"' in msg and "no such file" in msg and "missing" in msg


def test_hardlink_to_a_file_deleted_below_it(tmp_path: Path) -> None:
    msg = fails(tmp_path, [f("t")], [wh("t")], [hard("l", "t")])
    assert "no such file" in msg


def test_hardlink_through_a_symlink_finds_nothing(tmp_path: Path) -> None:
    fails(tmp_path, [d("real"), f("real/x"), sym("s", "real")], [hard("l", "s/x")])


def test_hardlink_escaping_target(tmp_path: Path) -> None:
    assert "escapes" in fails(tmp_path, [f("a"), hard("l", "../../etc/shadow")])


def test_hardlink_absolute_target_is_below_the_layer_root(tmp_path: Path) -> None:
    out = tmp_path / "out.aci"
    squash([build_layer(tmp_path / "l", [f("t", b"t"), hard("l", "/t")])], MANIFEST, out)
    assert read_aci(out).content("l") == b"t"


def test_hardlink_to_a_hidden_link_of_nothing_is_harmless(tmp_path: Path) -> None:
    # A broken link nobody sees (deleted above) does not fail the image.
    out = tmp_path / "out.aci"
    squash([build_layer(tmp_path / "l0", [hard("l", "missing")]),
            build_layer(tmp_path / "l1", [wh("l")])], MANIFEST, out)
    assert "l" not in read_aci(out).members


@pytest.mark.parametrize("name", [".wh..", "d/.wh."])
def test_invalid_whiteouts(tmp_path: Path, name: str) -> None:
    assert "invalid whiteout" in fails(tmp_path, [f(name)])


# --- broken data --------------------------------------------------------------------------


def layer_bytes(entries: Sequence[Entry], compress: Compress) -> bytes:
    return compress_bytes(tar_bytes(entries), compress)


BIG = [f(f"f{i}", bytes([i]) * 3000 + bytes(range(256)) * 10) for i in range(40)]


@pytest.mark.parametrize("compress", ["gzip", "zstd", None])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_layer(tmp_path: Path, compress: Compress, keep: float) -> None:
    data = layer_bytes(BIG, compress)
    msg = fails_blobs(tmp_path, [write_raw(tmp_path / "blob", data[: int(len(data) * keep)])])
    assert "truncated" in msg or "corrupt" in msg


def test_gzip_cut_before_its_trailer(tmp_path: Path) -> None:
    data = layer_bytes(BIG, "gzip")
    assert "truncated" in fails_blobs(tmp_path, [write_raw(tmp_path / "blob", data[:-4])])


def test_gzip_with_wrong_checksum(tmp_path: Path) -> None:
    data = bytearray(layer_bytes(BIG, "gzip"))
    data[-6] ^= 0xFF  # the CRC32 in the trailer
    assert "corrupt" in fails_blobs(tmp_path, [write_raw(tmp_path / "blob", bytes(data))])


def test_gzip_with_corrupt_stream(tmp_path: Path) -> None:
    data = bytearray(layer_bytes(BIG, "gzip"))
    for i in range(40, 60):
        data[i] ^= 0x55
    assert "corrupt" in fails_blobs(tmp_path, [write_raw(tmp_path / "blob", bytes(data))])


def test_gzip_of_something_else(tmp_path: Path) -> None:
    data = gzip.compress(b"this is not a tar archive at all " * 100)
    fails_blobs(tmp_path, [write_raw(tmp_path / "blob", data)])


def test_plain_garbage(tmp_path: Path) -> None:
    fails_blobs(tmp_path, [write_raw(tmp_path / "blob", b"garbage " * 1000)])


def test_plain_tar_cut_at_a_header_boundary(tmp_path: Path) -> None:
    data = tar_bytes([f("a", b"x" * 512), f("b", b"y" * 512)])
    # header a + data a: the archive stops where header b should be, with no end marker
    assert "truncated" in fails_blobs(tmp_path, [write_raw(tmp_path / "blob", data[:1024])])


def test_corrupt_header_after_the_first(tmp_path: Path) -> None:
    data = bytearray(tar_bytes([f("a", b"x" * 512), f("b", b"y")]))
    data[1024 + 148] ^= 0x01  # b's header checksum
    assert "corrupt tar data" in fails_blobs(tmp_path,
                                             [write_raw(tmp_path / "blob", bytes(data))])


def test_missing_layer_file(tmp_path: Path) -> None:
    out = tmp_path / "out.aci"
    with pytest.raises(ImageError, match="cannot read"):
        squash([(tmp_path / "nope", "x")], MANIFEST, out)
    assert not out.exists()


def test_unsupported_member_type(tmp_path: Path) -> None:
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        ti = tarfile.TarInfo("volume-label")
        ti.type = b"V"  # a GNU volume label
        tf.addfile(ti)
    assert "unsupported" in fails_blobs(tmp_path, [write_raw(tmp_path / "blob",
                                                             buf.getvalue())])


def test_bad_manifest_is_refused_before_reading(tmp_path: Path) -> None:
    bad: dict[str, Any] = {**MANIFEST, "name": "Not Valid"}
    with pytest.raises(ManifestError):
        squash([build_layer(tmp_path / "l", [f("a")])], bad, tmp_path / "out.aci")
    assert not (tmp_path / "out.aci").exists()


def test_unwritable_destination(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot write"):
        squash([build_layer(tmp_path / "l", [f("a")])], MANIFEST,
               tmp_path / "no-such-dir" / "out.aci")


@pytest.mark.parametrize("compress", ["gzip", "zstd", None])
def test_cut_anywhere_is_refused(tmp_path: Path, compress: Compress) -> None:
    data = layer_bytes(BIG[:5], compress)
    # A plain tar cut in its end-of-archive zeros still holds everything: it is fine.
    end = len(data.rstrip(b"\0")) if compress is None else len(data)
    for i, cut in enumerate(range(1, end, max(1, end // 23))):
        if compress is None and cut < tarfile.BLOCKSIZE:
            continue  # a few bytes of a plain tar are "not a tar", tested above
        fails_blobs(tmp_path / str(i), [write_raw(tmp_path / str(i) / "blob", data[:cut])])


def test_zstd_frames_checksums_and_skippable_frames(tmp_path: Path) -> None:
    data = tar_bytes([f("a", b"A" * 100_000), f("b", b"B")])
    skippable = (0x184D2A5A).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    blob = (zstd_frame(data[:50_000], checksum=True) + skippable
            + zstd_frame(data[50_000:], checksum=True))
    out = tmp_path / "out.aci"
    squash([write_raw(tmp_path / "blob", blob)], MANIFEST, out)
    assert read_aci(out).content("a") == b"A" * 100_000
    bad = bytearray(blob)
    bad[-2] ^= 0xFF  # the last frame's checksum
    assert "corrupt" in fails_blobs(tmp_path / "x", [write_raw(tmp_path / "x" / "blob",
                                                               bytes(bad))])
    fails_blobs(tmp_path / "y", [write_raw(tmp_path / "y" / "blob", blob + b"junk")])


def test_hardlink_to_a_device_outside_dev(tmp_path: Path) -> None:
    msg = fails(tmp_path, [chardev("dev/mem", 1, 1)], [hard("tmp/mem", "dev/mem")])
    assert "device node outside /dev" in msg and "tmp/mem" in msg
