"""acbuild: build and modify App Container images from the shell, one command per step, the
build's state in ``<work-path>/.acbuild`` (reference acbuild.md §1; library: rktd_less.build).

Exit status, as acbuild's: 0 done; 1 refused or failed; 2 an ``rm`` of what the manifest does
not have; 3 a usage error (unknown command or flag, wrong number of arguments).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import APPC_VERSION, __version__
from ..appc.manifest import ImageManifest, dumps
from ..appc.types import NameValue
from ..build import edit
from ..build.context import Context
from ..errors import Absent, RktError, UsageError
from . import main as _rkt
from .flags import Flag, Kind, defaults, parse, take_flag

USAGE = """Usage:
  acbuild [--debug] [--work-path DIR] [--modify ACI] [--no-history] COMMAND [ARGS]

Commands:
  begin [ACI|DIR|NAME]          start a new build (empty, or from an ACI, a directory, an image)
  end                           end the build in this working directory
  write [--overwrite] [--sign KEYID] ACI
                                write the build as an ACI (signed: ACI.asc); prints its ID
  cat-manifest [--pretty-print] print the manifest
  replace-manifest FILE         replace the manifest
  set-name NAME                 set-exec -- CMD [ARGS]         set-user USER
  set-group GROUP               set-supp-groups [GID...]       set-working-directory DIR
  set-event-handler pre-start|post-stop -- CMD [ARGS]
  label|annotation|environment add NAME VALUE | rm NAME
  dependency add NAME|ACI [--image-id ID] [--label K=V] [--size N] | rm NAME
                                (fetched and verified at once; ACI: a file, ./ or /)
  mount add NAME PATH [--read-only] | rm NAME|PATH
  port add NAME PROTOCOL PORT [--count N] [--socket-activated] | rm NAME|PORT
  isolator add NAME JSON_FILE | rm NAME
  copy SRC DST                  copy-to-dir SRC... DIR
  run [--working-dir DIR] [--engine systemd-nspawn] -- CMD [ARGS]
                                run CMD in the image, its dependencies below (root)
  version

Global flags:
  --debug               tracebacks and the commands run
  --work-path DIR       where the build context (.acbuild) is (default ".")
  --modify ACI          edit the ACI in place: begin from it, run COMMAND, write it back
  --no-history          do not record the command in the manifest's build history
  --dir DIR             rkt's data directory: its image store holds the dependencies
  --local-config DIR, --system-config DIR, --user-config DIR
                        rkt's configuration: the keys trusted to sign dependencies
  --insecure-options L  as rkt's: image (no signature check), http, ...
  --trust-keys-from-https  trust the keys a dependency's discovery names, as rkt's"""

# rkt's own flags for its store, configuration and trust: dependencies are fetched by rkt's code
RKT_FLAGS = ("dir", "system-config", "local-config", "user-config", "insecure-options",
             "trust-keys-from-https")
GLOBAL_FLAGS = {
    "debug": Flag(Kind.BOOL, False),
    "work-path": Flag(Kind.STR, "."),
    "modify": Flag(Kind.STR, ""),
    "no-history": Flag(Kind.BOOL, False),
    **{k: _rkt.GLOBAL_FLAGS[k] for k in RKT_FLAGS},
}
GROUPS = {"label": "label", "annotation": "annotation", "environment": "environment",
          "env": "environment", "dependency": "dependency", "dep": "dependency",
          "mount": "mount", "volume": "mount", "port": "port", "isolator": "isolator"}
ALIASES = {"set-wd": "set-working-directory", "set-eh": "set-event-handler"}


class CommandUsage(UsageError):
    """The command line itself is wrong: exit 3."""


@dataclass(frozen=True)
class Cmd:
    run: Callable[[Call], int]
    nargs: tuple[int, int | None] = (0, 0)  # positional arguments: at least, at most
    flags: dict[str, Flag] = field(default_factory=dict)
    needs_build: bool = True  # (--modify gives it one)


@dataclass
class Call:
    path: tuple[str, ...]  # ("label", "add")
    args: list[str]
    opts: dict[str, Any]
    g: dict[str, Any]
    given: list[str] = field(default_factory=list)  # as typed, global flags left out

    @property
    def ctx(self) -> Context:
        return Context(Path(self.g["work-path"]))


def _edit(change: Callable[[ImageManifest, Call], ImageManifest]) -> Callable[[Call], int]:
    def run(call: Call) -> int:
        ctx = call.ctx
        with ctx.locked():
            m = change(ctx.load(), call)
            if not call.g["no-history"]:
                m = edit.with_history(m, call.path, call.given)
            ctx.save(m)
        return 0
    return run


def _e(f: Callable[..., ImageManifest]) -> Callable[[ImageManifest, Call], ImageManifest]:
    """The edit ``f``, given the command's positional arguments one by one."""
    return lambda m, call: f(m, *call.args)


def _set_list(f: Callable[[ImageManifest, Sequence[str]], ImageManifest]
              ) -> Callable[[ImageManifest, Call], ImageManifest]:
    """The edit ``f``, given the command's positional arguments as one list."""
    return lambda m, call: f(m, call.args)


def _event_handler(m: ImageManifest, call: Call) -> ImageManifest:
    return edit.set_event_handler(m, call.args[0], call.args[1:])


def _dep_add(m: ImageManifest, call: Call) -> ImageManifest:
    """The dependency is had at once (fetched and verified, or found in the store): one that
    cannot be had is refused. NAME may be an ACI file (a path, as ``begin`` takes one): it is
    verified (its NAME.asc) and stored, and the dependency names the image by name and ID."""
    from ..build.deps import fetch_dependency
    from ..store import Store

    size = call.opts["size"]
    if not str(size).isdigit():
        raise UsageError(f'invalid size "{size}": a number of bytes')
    target, image_id = call.args[0], call.opts["image-id"]
    labels = edit.parse_dep_labels(call.opts["label"])
    rkt = _rkt_context(call.g)
    store, settings = Store(rkt.paths), rkt.fetch_settings("new")
    if target.startswith((".", "/")):
        from ..fetch.resolve import resolve_image

        # a path, whatever it looks like (".base.aci" is a file, not an image name)
        key = resolve_image(store, target if "/" in target else "./" + target, settings)
        stored = store.manifest(key)
        target, image_id = stored.name, key
        version = stored.label("version")
        if version is not None and not any(lb.name == "version" for lb in labels):
            labels = (*labels, NameValue("version", version))
    m = edit.dep_add(m, target, image_id=image_id, labels=labels, size=int(size))
    fetch_dependency(store, settings, m.dependencies[-1], m.name)
    return m


def _mount_add(m: ImageManifest, call: Call) -> ImageManifest:
    return edit.mount_add(m, call.args[0], call.args[1], read_only=call.opts["read-only"])


def _port_add(m: ImageManifest, call: Call) -> ImageManifest:
    count = call.opts["count"]
    if not str(count).isdigit():
        raise UsageError(f'invalid count "{count}"')
    return edit.port_add(m, call.args[0], call.args[1], call.args[2], count=int(count),
                         socket_activated=call.opts["socket-activated"])


def _isolator_add(m: ImageManifest, call: Call) -> ImageManifest:
    path = Path(call.args[1])
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f'cannot read "{path}": {e.strerror}') from None
    return edit.isolator_add(m, call.args[0], text)


def _replace_manifest(m: ImageManifest, call: Call) -> ImageManifest:
    from ..build.context import check_manifest_text

    try:
        text = Path(call.args[0]).read_bytes()
    except OSError as e:
        raise UsageError(f'cannot read "{call.args[0]}": {e.strerror}') from None
    return check_manifest_text(text)


def _begin(call: Call) -> int:
    from ..build import aci, context
    from ..common.platform import host_arch

    ctx = call.ctx
    skeleton = edit.skeleton(host_arch())
    start = call.args[0] if call.args else ""
    if os.geteuid() != 0:
        print("begin: not running as root: files will be owned by root once written, and "
              "`acbuild run` needs root", file=sys.stderr)

    def fill(rootfs: Path) -> ImageManifest:
        if not start:
            return skeleton
        if start.startswith((".", "/")):
            src = Path(start)
            if src.is_dir():
                return aci.fill_from_dir(src, rootfs, skeleton)
            return aci.fill_from_file(src, rootfs, skeleton)
        from ..build.deps import fill_from_image
        from ..store import Store

        rkt = _rkt_context(call.g)
        return fill_from_image(Store(rkt.paths), rkt.fetch_settings("new"), start, rootfs)

    context.begin(ctx, fill)
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _rkt_context(g: dict[str, Any]) -> Any:
    """rkt's context (data directory, configuration, insecure options) for fetching images."""
    rg = defaults(_rkt.GLOBAL_FLAGS)
    rg.update({k: g[k] for k in (*RKT_FLAGS, "debug")})
    return _rkt._context("acbuild", rg)


def _end(call: Call) -> int:
    from ..build import context

    context.end(call.ctx)
    return 0


def _write(call: Call) -> int:
    from ..build import aci

    ctx = call.ctx
    with ctx.locked():
        m = ctx.load()
        if m.app is None or not m.app.exec:
            print("write: warning: the image has no exec (set-exec sets it)", file=sys.stderr)
        image_id = aci.write(ctx, Path(call.args[0]), overwrite=call.opts["overwrite"],
                             sign=call.opts["sign"], say=_say)
    print(image_id)
    return 0


def _cat_manifest(call: Call) -> int:
    ctx = call.ctx
    with ctx.locked():
        m = ctx.load()
    print(dumps(m, pretty=call.opts["pretty-print"]))
    return 0


def _copy(into_dir: bool) -> Callable[[Call], int]:
    def run(call: Call) -> int:
        from ..build import aci

        ctx = call.ctx
        with ctx.locked():
            aci.copy_in(ctx, [Path(a) for a in call.args[:-1]], call.args[-1],
                        into_dir=into_dir)
            if not call.g["no-history"]:
                ctx.save(edit.with_history(ctx.load(), call.path, call.given))
        return 0
    return run


def _run(call: Call) -> int:
    from ..build import run
    from ..build.deps import dependency_trees
    from ..store import Store

    run.check_engine(call.opts["engine"])
    run.require_root()
    ctx = call.ctx
    with ctx.locked():
        m = ctx.load()
        env = tuple((e.name, e.value) for e in m.app.environment) if m.app else ()
        step = run.Step(tuple(call.args), working_dir=call.opts["working-dir"], env=env,
                        interactive=os.isatty(0), debug=call.g["debug"])
        rkt = _rkt_context(call.g)
        with dependency_trees(Store(rkt.paths), rkt.fetch_settings("new"), m) as deps:
            code = run.run_step(ctx, step, deps, _say)
        if code == 0 and not call.g["no-history"]:
            ctx.save(edit.with_history(m, call.path, call.given))
    return code


def _version(_call: Call) -> int:
    print(f"acbuild version {__version__}\nappc version {APPC_VERSION}")
    return 0


B = Kind.BOOL
COMMANDS: dict[tuple[str, ...], Cmd] = {
    ("begin",): Cmd(_begin, (0, 1), needs_build=False),
    ("end",): Cmd(_end),
    ("write",): Cmd(_write, (1, 1), {"overwrite": Flag(B, False), "sign": Flag(Kind.STR, "")}),
    ("cat-manifest",): Cmd(_cat_manifest, flags={"pretty-print": Flag(B, False)}),
    ("replace-manifest",): Cmd(_edit(_replace_manifest), (1, 1)),
    ("set-name",): Cmd(_edit(_e(edit.set_name)), (1, 1)),
    ("set-exec",): Cmd(_edit(_set_list(edit.set_exec)), (1, None)),
    ("set-user",): Cmd(_edit(_e(edit.set_user)), (1, 1)),
    ("set-group",): Cmd(_edit(_e(edit.set_group)), (1, 1)),
    ("set-supp-groups",): Cmd(_edit(_set_list(edit.set_supp_groups)), (0, None)),
    ("set-working-directory",): Cmd(_edit(_e(edit.set_working_directory)), (1, 1)),
    ("set-event-handler",): Cmd(_edit(_event_handler), (2, None)),
    ("label", "add"): Cmd(_edit(_e(edit.label_add)), (2, 2)),
    ("label", "rm"): Cmd(_edit(_e(edit.label_rm)), (1, 1)),
    ("annotation", "add"): Cmd(_edit(_e(edit.annotation_add)), (2, 2)),
    ("annotation", "rm"): Cmd(_edit(_e(edit.annotation_rm)), (1, 1)),
    ("environment", "add"): Cmd(_edit(_e(edit.environment_add)), (2, 2)),
    ("environment", "rm"): Cmd(_edit(_e(edit.environment_rm)), (1, 1)),
    ("dependency", "add"): Cmd(_edit(_dep_add), (1, 1),
                               {"image-id": Flag(Kind.STR, ""), "label": Flag(Kind.MULTI, []),
                                "size": Flag(Kind.STR, "0")}),
    ("dependency", "rm"): Cmd(_edit(_e(edit.dep_rm)), (1, 1)),
    ("mount", "add"): Cmd(_edit(_mount_add), (2, 2), {"read-only": Flag(B, False)}),
    ("mount", "rm"): Cmd(_edit(_e(edit.mount_rm)), (1, 1)),
    ("port", "add"): Cmd(_edit(_port_add), (3, 3), {"count": Flag(Kind.STR, "1"),
                                                   "socket-activated": Flag(B, False)}),
    ("port", "rm"): Cmd(_edit(_e(edit.port_rm)), (1, 1)),
    ("isolator", "add"): Cmd(_edit(_isolator_add), (2, 2)),
    ("isolator", "rm"): Cmd(_edit(_e(edit.isolator_rm)), (1, 1)),
    ("copy",): Cmd(_copy(False), (2, 2)),
    ("copy-to-dir",): Cmd(_copy(True), (2, None)),
    ("run",): Cmd(_run, (1, None), {"engine": Flag(Kind.STR, "systemd-nspawn"),
                                     "working-dir": Flag(Kind.STR, "")}),
    ("version",): Cmd(_version, needs_build=False),
}


def split_command(argv: Sequence[str]) -> tuple[tuple[str, ...], list[str], list[str]]:
    """(command path, the global flags before it, the rest)."""
    i = 0
    while i < len(argv) and argv[i].startswith("--") and argv[i] != "--":
        try:
            nxt = take_flag(GLOBAL_FLAGS, argv, i, defaults(GLOBAL_FLAGS))
        except UsageError as e:
            raise CommandUsage(e.message) from None
        if nxt is None:
            raise CommandUsage(f"unknown flag: {argv[i].split('=', 1)[0]}")
        i = nxt
    lead = list(argv[:i])
    if i >= len(argv) or argv[i] == "--":
        return (), lead, []
    word = ALIASES.get(argv[i], argv[i])
    if word in GROUPS:
        group = GROUPS[word]
        if i + 1 >= len(argv) or argv[i + 1] not in ("add", "rm", "remove"):
            raise CommandUsage(f'"{word}" needs a subcommand: add or rm')
        sub = "rm" if argv[i + 1] == "remove" else argv[i + 1]
        return (group, sub), lead, list(argv[i + 2:])
    return (word,), lead, list(argv[i + 1:])


def dispatch(argv: Sequence[str]) -> int:
    path, lead, rest = split_command(argv)
    if not path or path[0] in ("help", "-h", "--help"):
        print(USAGE)
        return 0 if path or not lead else 3
    cmd = COMMANDS.get(path)
    if cmd is None:
        raise CommandUsage(f'unknown command "{" ".join(path)}"', hint="see `acbuild help`")
    own = rest[: rest.index("--")] if "--" in rest else rest  # after "--": the command's
    if "-h" in own or "--help" in own:
        print(USAGE)
        return 0
    try:
        g, _ = parse(GLOBAL_FLAGS, lead)
        values, args = parse({**GLOBAL_FLAGS, **cmd.flags}, rest)
    except CommandUsage:
        raise
    except UsageError as e:
        raise CommandUsage(e.message, hint=e.hint) from None
    for k in GLOBAL_FLAGS:
        if values[k] != GLOBAL_FLAGS[k].default:
            g[k] = values[k]
    lo, hi = cmd.nargs
    if len(args) < lo or (hi is not None and len(args) > hi):
        want = (f"{lo}" if lo == hi else f"at least {lo}" if hi is None
                else f"{lo} to {hi}")
        raise CommandUsage(f"{want} argument{'s' if (hi or lo) != 1 else ''} expected, "
                           f"{len(args)} given")
    if g["debug"]:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    call = Call(path, args, values, g, _without_globals(rest))
    if g["modify"] and cmd.needs_build:
        return _modify(call, cmd)
    return cmd.run(call)


def _without_globals(rest: Sequence[str]) -> list[str]:
    """The command's arguments as typed, for the build history (global flags are not the
    command's)."""
    out: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i] == "--":
            out += rest[i:]
            break
        nxt = take_flag(GLOBAL_FLAGS, rest, i, defaults(GLOBAL_FLAGS))
        if nxt is None:
            out.append(rest[i])
            i += 1
        else:
            i = nxt
    return out


def _modify(call: Call, cmd: Cmd) -> int:
    """--modify ACI: the command on the ACI itself (begun, edited, written back, ended)."""
    from ..build import aci, context
    from ..common.platform import host_arch

    target = Path(call.g["modify"])
    if not target.is_file():
        raise UsageError(f'--modify: "{target}" is not a file')
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.acbuild-", dir=target.parent))
    try:
        call.g["work-path"] = str(work)
        ctx = call.ctx
        context.begin(ctx, lambda rootfs: aci.fill_from_file(target, rootfs,
                                                              edit.skeleton(host_arch())))
        code = cmd.run(call)
        if code == 0:
            with ctx.locked():
                aci.write(ctx, target, overwrite=True, say=_say)
        return code
    finally:
        context.remove_tree(work)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or "--debug=true" in args
    label = "acbuild"
    try:
        path, _lead, _rest = split_command(args)
        label = " ".join(path) or label
        return dispatch(args)
    except RktError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"{label}: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
        return 2 if isinstance(e, Absent) else 3 if isinstance(e, CommandUsage) else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a defect, or an error no check foresaw: one line, exit 1
        if debug:
            import traceback

            traceback.print_exc()
        from .main import _describe

        print(f"{label}: unexpected error: {_describe(e)}" + ("" if debug else
              " (run with --debug for details, and please report it)"), file=sys.stderr)
        return 1


def entry() -> None:
    code = main()
    sys.stdout.flush()
    os._exit(code)
