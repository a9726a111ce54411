"""`rkt` entry point: global flags, verb dispatch (unique prefixes work, as cobra's), and the
one place that turns errors into a one-line message and exit code 254."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from ..config import ConfigDirs, Insecure, load_paths
from ..errors import RktError, UsageError
from ..paths import DEFAULT_LOCAL_CONFIG, DEFAULT_SYSTEM_CONFIG, Paths
from .context import Context
from .flags import Flag, Kind, defaults, parse, take_flag

GLOBAL_FLAGS: dict[str, Flag] = {
    # unset: paths.d "data", else /var/lib/rkt (rkt's calculateDataDir)
    "dir": Flag(Kind.STR, None, "rkt data directory (default /var/lib/rkt)"),
    "system-config": Flag(Kind.STR, str(DEFAULT_SYSTEM_CONFIG), "system configuration directory"),
    "local-config": Flag(Kind.STR, str(DEFAULT_LOCAL_CONFIG), "local configuration directory"),
    "user-config": Flag(Kind.STR, "", "user configuration directory"),
    "insecure-options": Flag(Kind.LIST, [], "comma-separated list of security features to "
                             "disable: none,image,tls,http,pubkey,capabilities,paths,seccomp,all"),
    "trust-keys-from-https": Flag(Kind.BOOL, False, "automatically trust gpg keys fetched "
                                  "from https"),
    "debug": Flag(Kind.BOOL, False, "print out more debug information to stderr"),
}

# verb -> module under rktd_less.cli (imported lazily: start-up time matters)
VERBS = {
    "run": "run",
    "prepare": "prepare",
    "run-prepared": "run_prepared",
    "fetch": "fetch",
    "trust": "trust",
    "list": "list_",
    "status": "status",
    "enter": "enter",
    "stop": "stop",
    "rm": "rm",
    "gc": "gc",
    "cat-manifest": "cat_manifest",
    "logs": "logs",
    "export": "export",
    "image": "image",
    "version": "version",
    "completion": "completion",
    "config": "config",
}
HIDDEN = {"help"}


class Verb(Protocol):
    FLAGS: dict[str, Flag]
    SHORT: str
    USAGE: str

    def main(self, ctx: Context, values: dict[str, Any], args: list[str]) -> int: ...


def _usage() -> str:
    lines = ["Usage:", "  rkt [command]", "", "Available Commands:"]
    for verb, mod in VERBS.items():
        m = importlib.import_module(f"rktd_less.cli.{mod}")
        lines.append(f"  {verb:<14}{m.SHORT}")
    lines += ["", "Global Flags:"]
    for name, f in GLOBAL_FLAGS.items():
        lines.append(f"      --{name:<24}{f.help}")
    return "\n".join(lines)


def resolve_verb(word: str) -> str:
    if word in VERBS:
        return word
    matches = [v for v in VERBS if v.startswith(word)]
    if len(matches) == 1:
        return matches[0]
    raise UsageError(f'unknown command "{word}" for "rkt"', hint="run `rkt help` for usage")


def _split_globals(argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    values = defaults(GLOBAL_FLAGS)
    i = 0
    while i < len(argv) and argv[i].startswith("--") and argv[i] != "--":
        nxt = take_flag(GLOBAL_FLAGS, argv, i, values)
        if nxt is None:
            raise UsageError(f"unknown flag: {argv[i].split('=', 1)[0]}")
        i = nxt
    return values, list(argv[i:])


def _context(verb: str, g: dict[str, Any]) -> Context:
    if g["dir"] is not None and not g["dir"]:
        raise UsageError("--dir must not be empty")
    for flag in ("dir", "system-config", "local-config", "user-config"):
        # may not exist yet; what exists must be a directory
        if g[flag] and os.path.exists(g[flag]) and not os.path.isdir(g[flag]):
            raise UsageError(f'--{flag}: "{g[flag]}" is not a directory')
    config = ConfigDirs(system=Paths.from_dir(g["system-config"]).data,
                        local=Paths.from_dir(g["local-config"]).data,
                        user=Paths.from_dir(g["user-config"]).data if g["user-config"]
                        else None)
    paths_config = load_paths(config)
    return Context(
        verb=verb, paths=Paths.from_dir(g["dir"] or paths_config.data or None),
        config=config, insecure=Insecure.parse(g["insecure-options"]), debug=bool(g["debug"]),
        trust_keys_from_https=bool(g["trust-keys-from-https"]), paths_config=paths_config)


def _merge_globals(g: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    merged = dict(g)
    for k, f in GLOBAL_FLAGS.items():
        if k in values and values[k] != f.default and values[k] != []:
            merged[k] = values[k]
    return merged


def _setup_logging(debug: bool) -> None:
    if debug:
        import logging  # only for --debug: it costs ~10 ms at every start

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


def dispatch(argv: Sequence[str]) -> int:
    g, rest = _split_globals(argv)
    if not rest or rest[0] in ("help", "-h", "--help"):
        topic = rest[1] if len(rest) > 1 else None
        if topic:
            m: Any = importlib.import_module(f"rktd_less.cli.{VERBS[resolve_verb(topic)]}")
            print(m.USAGE)
        else:
            print(_usage())
        return 0 if rest else 2
    verb = resolve_verb(rest[0])
    mod: Any = importlib.import_module(f"rktd_less.cli.{VERBS[verb]}")
    args = rest[1:]
    if "-h" in args or "--help" in args[: args.index("--") if "--" in args else None]:
        print(mod.USAGE)
        return 0
    if getattr(mod, "RAW_ARGS", False):
        # run parses its own grammar; global flags may sit among the pod flags.
        def make_ctx(pod_values: dict[str, Any]) -> Context:
            merged = _merge_globals(g, pod_values)
            _setup_logging(merged["debug"])
            return _context(verb, merged)

        return int(mod.main_raw(args, {**GLOBAL_FLAGS, **mod.FLAGS}, make_ctx))
    values, pos = parse({**GLOBAL_FLAGS, **mod.FLAGS}, args)
    g = _merge_globals(g, values)
    _setup_logging(g["debug"])
    return int(mod.main(_context(verb, g), values, pos))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or "--debug=true" in args
    verb = "rkt"
    try:
        _g, rest = _split_globals(args)
        if rest and rest[0] not in ("help", "-h", "--help"):
            verb = resolve_verb(rest[0])
        code = dispatch(args)
    except RktError as e:
        if debug:
            import traceback

            traceback.print_exc()
        # One line: the problem, then the fix when there is one.
        print(f"{verb}: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as e:  # a defect, or an error no check foresaw: still one line, 254
        if debug:
            import traceback

            traceback.print_exc()
        detail = _describe(e)
        print(f"{verb}: unexpected error: {detail}" + ("" if debug else
              " (run with --debug for details, and please report it)"), file=sys.stderr)
        code = 254
    sys.stdout.flush()
    return code


def _describe(e: BaseException) -> str:
    """An unforeseen exception in one line: an OSError names its file and the system's
    message (ENOSPC reads as "No space left on device"), anything else its type and text."""
    if isinstance(e, OSError) and e.strerror:
        where = f" {e.filename}" if e.filename else ""
        return f"{e.strerror}{':' if where else ''}{where}"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def entry() -> None:
    code = main()
    # Leave without tearing the interpreter down: CPython's finalization (every module's
    # objects freed one by one) took ~25 ms after each `rkt run`, on the way of every script
    # that waits for rkt. What rkt wrote is closed by now; stdio is flushed and the exit
    # handlers run (logging's flush, weakref finalizers) as at a normal exit.
    import atexit
    import contextlib

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: say nothing, as
            stream.flush()                              # sys.exit would
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    entry()
