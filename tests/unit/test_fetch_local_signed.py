"""`rkt fetch ./hello.aci` verifies ./hello.aci.asc (or --signature) against the trust store;
no root needed. Real gpg keys, real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from rktd_less.cli.main import main
from tests.helpers.aci import build_aci
from tests.helpers.gpg import session_keys


def _rkt(capsys: pytest.CaptureFixture[str], base: Path, *args: str) -> tuple[int, str, str]:
    code = main([f"--dir={base / 'data'}", f"--local-config={base / 'etc'}",
                 f"--system-config={base / 'lib'}", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trusted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    key = session_keys().alice.export(tmp_path / "alice.gpg")
    code, _, err = _rkt(capsys, tmp_path, "trust", "--prefix=example.com/hello",
                        "--skip-fingerprint-review", str(key))
    assert code == 0, err
    return tmp_path


def _blobs(base: Path) -> list[Path]:
    return list((base / "data" / "cas" / "blob").rglob("sha512-*"))


def test_signed_file_next_to_image(trusted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aci = build_aci(trusted / "hello.aci", name="example.com/hello")
    session_keys().alice.sign(aci)  # hello.aci.asc
    code, out, err = _rkt(capsys, trusted, "fetch", str(aci))
    assert code == 0, err
    assert out.startswith("sha512-")


def test_signature_flag_and_binary_signature(trusted: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    aci = build_aci(trusted / "hello.aci", name="example.com/hello", compress="xz")
    sig = session_keys().alice.sign(aci, trusted / "elsewhere.sig", armor=False)
    code, out, err = _rkt(capsys, trusted, "fetch", str(aci), f"--signature={sig}")
    assert code == 0, err
    assert out.startswith("sha512-")


@pytest.mark.parametrize("case", ["other-bytes", "untrusted-key", "other-prefix", "missing"])
def test_refused(trusted: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    name = "example.com/other" if case == "other-prefix" else "example.com/hello"
    aci = build_aci(trusted / "hello.aci", name=name)
    keys = session_keys()
    if case == "other-bytes":
        other = build_aci(trusted / "x.aci", name=name, version="9")
        keys.alice.sign(other, trusted / "hello.aci.asc")
    elif case == "untrusted-key":
        keys.stranger.sign(aci)
    elif case == "other-prefix":
        keys.alice.sign(aci)
    code, out, err = _rkt(capsys, trusted, "fetch", str(aci))
    assert code == 254 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("fetch: "), err
    assert _blobs(trusted) == []


def test_each_signature_goes_with_the_image_before_it(trusted: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    keys = session_keys()
    one = build_aci(trusted / "one.aci", name="example.com/hello", version="1")
    two = build_aci(trusted / "two.aci", name="example.com/hello", version="2")
    sig1 = keys.alice.sign(one, trusted / "s1.asc")
    sig2 = keys.alice.sign(two, trusted / "s2.asc")
    code, out, err = _rkt(capsys, trusted, "fetch", str(one), f"--signature={sig1}", str(two),
                          "--signature", str(sig2))
    assert code == 0, err
    assert len(out.split()) == 2
    # swapped signatures: the first image's signature does not match it
    code, out, err = _rkt(capsys, trusted, "fetch", "--pull-policy=update", str(one),
                          f"--signature={sig2}", str(two), f"--signature={sig1}")
    assert code == 254, err
    for args, message in (
            ([f"--signature={sig1}", str(one)], "--signature must follow an image"),
            ([str(one), f"--signature={sig1}", f"--signature={sig2}"],
             "--signature specified multiple times for the same image")):
        code, out, err = _rkt(capsys, trusted, "fetch", *args)
        assert code == 254 and message in err and len(err.splitlines()) == 1, err
