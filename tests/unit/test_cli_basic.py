"""CLI behaviour that needs neither root nor systemd: version, errors, listings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rktd_less.cli.main import main
from tests.helpers.aci import build_aci


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "version")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("rkt Version: ") and lines[1] == "appc Version: 0.8.11"


def test_unknown_pod_is_one_line_254(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(capsys, f"--dir={tmp_path}", "status", "abc")
    assert code == 254 and out == ""
    assert err == 'status: no matches found for "abc" (see `rkt list` for pods)\n'


def test_debug_shows_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, f"--dir={tmp_path}", "--debug", "status", "abc")
    assert code == 254 and "Traceback" in err and err.rstrip().endswith("for pods)")


def test_fetch_list_and_cat_manifest_without_root(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    aci = build_aci(tmp_path / "b.aci", name="example.com/hello", version="0.1")
    code, out, err = _run(capsys, f"--dir={tmp_path / 'd'}", "fetch",
                          "--insecure-options=image", str(aci))
    assert code == 0, err
    image_id = out.strip()
    assert re.fullmatch(r"sha512-[0-9a-f]{32}", image_id)
    code, full, _ = _run(capsys, f"--dir={tmp_path / 'd'}", "fetch", "--full",
                         "--insecure-options=image", str(aci))
    assert re.fullmatch(r"sha512-[0-9a-f]{64}\n", full) and full.startswith(image_id)
    code, out, _ = _run(capsys, f"--dir={tmp_path / 'd'}", "image", "list", "--no-legend")
    (row,) = out.splitlines()
    cells = re.split(r"\t+", row)
    assert cells[0] == image_id[:19] and cells[1] == "example.com/hello:0.1"
    assert re.fullmatch(r"\d+(\.\d)?[KM]iB", cells[2])
    code, out, _ = _run(capsys, f"--dir={tmp_path / 'd'}", "image", "cat-manifest",
                        "example.com/hello:0.1")
    assert code == 0 and '"name": "example.com/hello"' in out
    code, out, _ = _run(capsys, f"--dir={tmp_path / 'd'}", "list", "--no-legend")
    assert code == 0 and out == ""


def test_prefix_matching_of_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "vers")[0] == 0
    code, _, err = _run(capsys, "s")  # status, stop: ambiguous
    assert code == 254 and 'unknown command "s"' in err


def test_an_unforeseen_error_is_one_line_254(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The catch-all keeps the promise for defects too: no traceback unless --debug."""
    from rktd_less.cli import version

    def boom(*_a: object) -> int:
        raise KeyError("no such thing")

    monkeypatch.setattr(version, "main", boom)
    code, out, err = _run(capsys, f"--dir={tmp_path}", "version")
    assert code == 254 and out == ""
    assert err == ("version: unexpected error: KeyError: 'no such thing' (run with --debug for "
                   "details, and please report it)\n")
    code, _, err = _run(capsys, f"--dir={tmp_path}", "--debug", "version")
    assert code == 254 and "Traceback" in err and "KeyError" in err


def test_a_data_dir_that_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    for verb in (["list"], ["image", "list"], ["gc"], ["fetch", "example.com/a"]):
        code, out, err = _run(capsys, f"--dir={f}", *verb)
        assert (code, out) == (254, ""), verb
        assert err == f'{verb[0]}: --dir: "{f}" is not a directory\n', verb
    assert f.read_text() == "x"


@pytest.mark.parametrize("name", ["example.com/ünïcode", "Example.com/App", "a..b", "-x"])
def test_an_invalid_image_name_is_refused_before_any_lookup(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str) -> None:
    code, out, err = _run(capsys, f"--dir={tmp_path / 'd'}", "fetch", name)
    assert (code, out) == (254, "")
    assert err.startswith(f'fetch: invalid image name "{name}"') and err.count("\n") == 1
    assert not (tmp_path / "d").exists()  # no store made, nothing fetched


def test_a_huge_image_manifest_is_refused(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    from rktd_less.appc.manifest import MAX_MANIFEST

    aci = build_aci(tmp_path / "big.aci", name="example.com/big", busybox=False,
                    manifest_extra={"annotations": [{"name": "x",
                                                     "value": "y" * (MAX_MANIFEST + 1)}]})
    code, _, err = _run(capsys, f"--dir={tmp_path / 'd'}", "fetch", "--insecure-options=image",
                        str(aci))
    assert code == 254 and err.endswith('"manifest" is too large\n')
    assert not list((tmp_path / "d" / "cas" / "blob").rglob("sha512-*"))
