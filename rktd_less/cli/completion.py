"""rkt completion bash: a bash completion script for rkt's commands, their flags and the
image subcommands (rkt printed cobra's; this one is generated from our own flag tables)."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import UsageError
from .context import Context
from .flags import Flag, Kind

SHORT = "Output shell completion code for bash"
USAGE = "Usage:\n  rkt completion bash\n\n  source <(rkt completion bash)   # or save it to " \
        "/usr/share/bash-completion/completions/rkt"
FLAGS: dict[str, Flag] = {}


def _flags(spec: dict[str, Flag]) -> str:
    return " ".join(f"--{name}" + ("" if f.kind == Kind.BOOL else "=") for name, f in
                    sorted(spec.items()))


def script() -> str:
    from .image import SUBS
    from .main import GLOBAL_FLAGS, HIDDEN, VERBS
    from .run_args import APP_FLAGS

    cases = []
    for verb, mod_name in VERBS.items():
        mod: Any = importlib.import_module(f"rktd_less.cli.{mod_name}")
        per_app = APP_FLAGS if verb in ("run", "prepare") else {}  # after an image
        cases.append(f'        {verb}) flags="{_flags({**GLOBAL_FLAGS, **mod.FLAGS, **per_app})}"'
                     " ;;")
    subs = " ".join(sorted(n for n, s in SUBS.items() if not s.hidden))
    verbs = " ".join(sorted(set(VERBS) - HIDDEN))
    return "\n".join([
        "# bash completion for rkt (rktd-less)",
        "_rkt() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" verb="" i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in -*) ;; *) verb="${COMP_WORDS[i]}"; break ;; esac',
        "    done",
        '    if [ -z "$verb" ]; then',
        f'        COMPREPLY=($(compgen -W "{verbs} {_flags(GLOBAL_FLAGS)}" -- "$cur"))',
        "        return",
        "    fi",
        '    if [ "$verb" = image ] && [ "$COMP_CWORD" -eq $((i + 1)) ]; then',
        f'        COMPREPLY=($(compgen -W "{subs}" -- "$cur"))',
        "        return",
        "    fi",
        '    local flags=""',
        '    case "$verb" in',
        *cases,
        "    esac",
        '    if [[ "$cur" == -* ]]; then',
        '        compopt -o nospace 2>/dev/null',
        '        COMPREPLY=($(compgen -W "$flags" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -f -- "$cur"))',
        "    fi",
        "}",
        "complete -F _rkt rkt",
    ]) + "\n"


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    if args != ["bash"]:
        raise UsageError("only bash completion is available", hint="rkt completion bash")
    print(script(), end="")
    return 0
