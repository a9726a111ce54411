"""rkt completion bash: the generated script completes verbs, flags and image subcommands in a
real bash."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rktd_less.cli.completion import script
from rktd_less.cli.main import main


def _complete(tmp_path: Path, *words: str) -> list[str]:
    f = tmp_path / "rkt.bash"
    f.write_text(script())
    arr = " ".join(f"'{w}'" for w in words)
    out = subprocess.run(
        ["bash", "-c", f'source {f}; COMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; '
                       '_rkt; printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, check=True).stdout
    return sorted(line for line in out.splitlines() if line)


def test_verbs_flags_and_image_subcommands(tmp_path: Path) -> None:
    assert _complete(tmp_path, "rkt", "ru") == ["run", "run-prepared"]
    assert _complete(tmp_path, "rkt", "run", "IMG", "--caps-r") == ["--caps-remove=",
                                                                    "--caps-retain="]
    assert _complete(tmp_path, "rkt", "--debug", "status", "--wait") == ["--wait-ready=",
                                                                         "--wait="]
    assert _complete(tmp_path, "rkt", "image", "r") == ["render", "rm"]
    assert "--follow" in _complete(tmp_path, "rkt", "logs", "--f")


def test_only_bash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    assert "complete -F _rkt rkt" in capsys.readouterr().out
    assert main(["completion", "zsh"]) == 254
    assert "only bash completion" in capsys.readouterr().err
