"""rkt image: list, cat-manifest, rm, gc, extract, render, export, verify (rkt/image_*.go).

Each subcommand has its own flags; messages go to stderr prefixed with the subcommand's name,
as rkt's (``rm: 1 image(s) successfully removed``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotFound, PermissionDenied, PodError, RktError, UsageError
from ..ids import short_id
from ..store import Store
from .context import Context
from .flags import Flag, Kind, parse, take_flag
from .output import dump_json, full_time, human_bytes, human_time, manifest_json, ns, table

RAW_ARGS = True  # subcommands parse their own flags (main_raw)
SHORT = "Operate on image(s) in the local store"
FLAGS: dict[str, Flag] = {}
FIELDS = {"id": "ID", "name": "NAME", "size": "SIZE", "importtime": "IMPORT TIME",
          "lastused": "LAST USED"}
SORT_KEYS = ("name", "importtime", "lastused", "size")
_OVERWRITE = Flag(Kind.BOOL, False, "overwrite the output")
_ROOTFS_ONLY = Flag(Kind.BOOL, False, "extract the rootfs only")

Handler = Callable[[Context, dict[str, Any], list[str]], int]


@dataclass(frozen=True)
class Sub:
    usage: str
    flags: dict[str, Flag]
    run: Handler
    hidden: bool = False


def _resolve(store: Store, text: str) -> str:
    """An image ID (prefix) or ``name[:version][,label=value]`` → store key."""
    from ..fetch.resolve import ImageKind, classify, parse_name

    if classify(text) == ImageKind.HASH:
        return store.resolve_id(text)
    name, labels = parse_name(text)
    key = store.find_by_name(name, labels)
    if key is None:
        raise NotFound(f'no image found for "{text}"', hint="see `rkt image list`")
    return key


def _msg(e: RktError) -> str:
    return e.message + (f" ({e.hint})" if e.hint else "")


# --- list, cat-manifest ---------------------------------------------------------------------
def _list(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    if args:
        raise UsageError("image list takes no arguments")
    fields = values["fields"] or ["id", "name", "size", "importtime", "lastused"]
    for f in fields:
        if f not in FIELDS:
            raise UsageError(f'unknown field "{f}"', hint="fields: " + ",".join(FIELDS))
    sort = values["sort"] or ["importtime"]
    for s in sort:
        if s not in SORT_KEYS:
            raise UsageError(f'unknown sort field "{s}"', hint="sort by: " + ",".join(SORT_KEYS))
    order = values["order"].lower()
    if order not in ("asc", "desc"):
        raise UsageError(f'invalid order "{values["order"]}"', hint="use asc or desc")
    images = Store(ctx.paths).list_images()
    keyf = {"name": lambda i: i.name, "importtime": lambda i: i.import_time,
            "lastused": lambda i: i.last_used, "size": lambda i: i.size + i.tree_size}
    images.sort(key=lambda i: tuple(keyf[s](i) for s in sort), reverse=order == "desc")
    if values["format"]:
        ctx.out(dump_json([{"id": i.key, "name": i.name + (f":{i.version}" if i.version else ""),
                            "import_time": ns(i.import_time), "last_used_time": ns(i.last_used),
                            "size": i.size + i.tree_size} for i in images], values["format"]))
        return 0
    full = values["full"]
    when = full_time if full else human_time
    rows = [] if values["no-legend"] else [[FIELDS[f] for f in fields]]
    for i in images:
        cell = {"id": i.key if full else short_id(i.key),
                "name": i.name + (f":{i.version}" if i.version else ""),
                "size": str(i.size + i.tree_size) if full else human_bytes(i.size + i.tree_size),
                "importtime": when(i.import_time), "lastused": when(i.last_used)}
        rows.append([cell[f] for f in fields])
    if rows:
        ctx.out(table(rows))
    return 0


def _cat_manifest(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    if len(args) != 1:
        raise UsageError("expected exactly one image")
    store = Store(ctx.paths)
    data = json.loads(store.manifest_bytes(_resolve(store, args[0])))
    ctx.out(manifest_json(data, values["pretty-print"]))
    return 0


# --- rm, gc ---------------------------------------------------------------------------------
def _remove(ctx: Context, store: Store, keys: Sequence[str], failed: int) -> int:
    """rkt's rmImages: remove ``keys`` (``failed`` arguments already failed to resolve),
    print rkt's per-image lines and summary.

    Trees go with their image unless a pod references them; deciding that holds the prepare
    lock, so no pod starts using a tree meanwhile. A caller who cannot manage the trees (a
    member of group rkt in root's store: ``cas/tree`` is root's) removes rows, blob and
    manifest only; root's ``image gc`` takes the trees once unreferenced."""
    from ..pod import refs
    from ..store import gc

    tree_dir = ctx.paths.tree_dir
    has_trees = tree_dir.is_dir()
    may_trees = not has_trees or os.access(tree_dir, os.R_OK | os.W_OK | os.X_OK)
    done = stale = 0
    with contextlib.ExitStack() as stack:
        if has_trees and may_trees:
            stack.enter_context(refs.prepare_lock(ctx.paths, exclusive=True))
        try:
            pods = refs.scan(ctx.paths) if keys else []
        except PermissionDenied:
            if has_trees and may_trees:
                raise
            pods = []  # trees we cannot touch are all a running pod could lose
        in_use = set().union(*(p.trees for p in pods))
        for key in keys:
            row = store.index.get(key)
            name = row.name if row else ""
            try:
                trees = store.trees.trees_of(key) if has_trees and may_trees else []
                uuid = refs.running_pod_using(pods, key, trees)
                if uuid is not None:
                    raise PodError(f'image is used by running pod "{uuid}"',
                                   hint="stop the pod first")
                r = gc.remove_image(store, key, keep_trees=in_use, remove_trees=may_trees)
            except RktError as e:
                ctx.err(f'error removing aci for image "{key}" ("{name}"): {_msg(e)}')
                failed += 1
                continue
            if r.stale:
                stale += 1
                ctx.err(f'some files cannot be removed for image "{key}" ("{name}"): '
                        + "; ".join(r.stale))
            ctx.out(f'successfully removed aci for image: "{key}"')
            done += 1
    if done:
        ctx.err(f"{done} image(s) successfully removed")
    if stale:
        ctx.err(f"{stale} image(s) removed but left some stale files")
    if failed:
        ctx.err(f"{failed} image(s) cannot be removed")
    if failed or stale:
        ctx.err("error(s) found while removing images")
        return 254
    return 0


def _rm(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    if not args:
        raise UsageError("must provide at least one image ID")
    store = Store(ctx.paths)
    keys: dict[str, None] = {}  # ordered, without duplicates
    failed = 0
    for a in args:
        try:
            keys.setdefault(_resolve(store, a))
        except RktError as e:
            ctx.err(_msg(e))
            failed += 1
    return _remove(ctx, store, list(keys), failed)


def _gc(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    from ..pod import refs
    from ..store import gc
    from .status import parse_duration

    if args:
        raise UsageError("image gc takes no arguments")
    grace = parse_duration(values["grace-period"])
    store = Store(ctx.paths)
    if not store.exists():
        return 0
    with refs.prepare_lock(ctx.paths, exclusive=True):
        try:
            pods = refs.scan(ctx.paths)
            ids = store.trees.ids()
        except RktError as e:
            ctx.err(f"failed to remove unreferenced treestores: {_msg(e)}")
            return 254
        for tid in gc.trees_to_collect(ids, set().union(*(p.trees for p in pods))):
            try:
                store.remove_tree(tid)
            except RktError as e:
                ctx.err(f'error removing treestore "{tid}": {_msg(e)}')
            else:
                ctx.err(f'removed treestore "{tid}"')
        for key, what in gc.sweep_orphans(store):
            ctx.err(f'removed orphaned {"blob" if what == "blob" else "index entry"} '
                    f'of image "{key}"')
        collect_temp(ctx)
        running = [p for p in pods if p.running]
        protected = set().union(*(p.images for p in running))
        for tid in set().union(*(p.trees for p in running)):
            owner = store.trees.image_of(tid)
            if owner is not None:
                protected.add(owner)
        keys = gc.images_to_collect(store.index.all(), now=time.time(), grace_period=grace,
                                    protected=protected)
    if not keys:
        return 0
    return _remove(ctx, store, keys, 0)


# --- extract, render, export, verify --------------------------------------------------------
def _two_args(args: list[str], sub: str) -> tuple[str, Path]:
    if len(args) != 2:
        raise UsageError("expected an image and an output path", hint=SUBS[sub].usage.strip())
    return args[0], Path(args[1])


def _unpack(sub: str, ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    """extract (the image's own files) and render (with its dependencies) share their flags."""
    from ..store import export

    image, dest = _two_args(args, sub)
    store = Store(ctx.paths)
    fn = export.extract if sub == "extract" else export.render
    fn(store, _resolve(store, image), dest, rootfs_only=values["rootfs-only"],
       overwrite=values["overwrite"])
    return 0


def _extract(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    return _unpack("extract", ctx, values, args)


def _render(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    return _unpack("render", ctx, values, args)


def _export(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    from ..store import export

    image, dest = _two_args(args, "export")
    store = Store(ctx.paths)
    export.export(store, _resolve(store, image), dest, overwrite=values["overwrite"])
    return 0


def _verify(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    """rkt image verify: each image's blob, then each of its rendered trees (store/treecheck);
    a tree that differs is rendered again, and the image verifies (rkt's wording)."""
    from ..store import export

    if not args:
        raise UsageError("must provide at least one image ID")
    store = Store(ctx.paths)
    tree_dir = ctx.paths.tree_dir
    trees_ok = not tree_dir.is_dir() or os.access(tree_dir, os.R_OK | os.W_OK | os.X_OK)
    if not trees_ok:  # a member of group rkt in root's store: cas/tree is root's
        ctx.err(f"warning: rendered trees not verified: cannot access {tree_dir} (run as root)")
    failed = 0
    for img in args:
        try:
            key = _resolve(store, img)
        except RktError as e:
            ctx.err(f"unable to resolve store key for image {img}: {_msg(e)}")
            failed += 1
            continue
        try:
            v = export.verify(store, key)
            if v.ok and trees_ok and not _verify_trees(ctx, store, img, key):
                failed += 1
                continue
        except RktError as e:
            ctx.err(f"unable to verify image {img}: {_msg(e)}")
            failed += 1
            continue
        if v.ok:
            ctx.out(f'successfully verified checksum for image: "{img}" ("{key}")')
        else:
            failed += 1
            ctx.err(f'checksum verification failed for image: "{img}" ("{key}"): its blob '
                    f'hashes to "{v.actual}" (remove it with `rkt image rm {key}` and fetch '
                    "it again)")
    return 254 if failed else 0


def _verify_trees(ctx: Context, store: Store, img: str, key: str) -> bool:
    """Verify the rendered trees of ``key``, rendering again those that differ; False (after
    saying why) if one cannot be repaired."""
    from ..pod import refs
    from ..store import treecheck

    for tid in store.trees.trees_of(key):
        def failing(why: str, tid: str = tid) -> None:
            ctx.out(f'tree cache verification failed for image {img}: tree "{tid}": {why}; '
                    "rebuilding...")

        try:
            v = treecheck.verify_tree(
                store, key, tid, failing=failing,
                in_use=lambda: refs.tree_ids_in_use(ctx.paths),
                pods_locked=lambda: refs.prepare_lock(ctx.paths, exclusive=True))
        except RktError as e:
            ctx.err(f"unable to repair cache for image {img}: {_msg(e)}")
            return False
        if v.note:
            ctx.out(v.note)
    return True


def _fetch(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    from . import fetch

    return int(fetch.main(ctx, values, args))


def _fetch_flags() -> dict[str, Flag]:
    from . import fetch

    return dict(fetch.FLAGS)


SUBS: dict[str, Sub] = {
    "list": Sub("  rkt image list [--fields=id,name,size,importtime,lastused] [--full] "
                "[--no-legend]\n      [--sort=importtime] [--order=asc|desc] "
                "[--format=json|json-pretty]", {
        "fields": Flag(Kind.LIST, [], "comma-separated fields: " + ",".join(FIELDS)),
        "full": Flag(Kind.BOOL, False, "use long output format"),
        "no-legend": Flag(Kind.BOOL, False, "suppress a legend with the list"),
        "format": Flag(Kind.STR, "", "choose the output format: json, json-pretty"),
        "sort": Flag(Kind.LIST, [], "sort by: " + ",".join(SORT_KEYS)),
        "order": Flag(Kind.STR, "asc", "asc or desc"),
    }, _list),
    "cat-manifest": Sub("  rkt image cat-manifest [--pretty-print=false] IMAGE", {
        "pretty-print": Flag(Kind.BOOL, True, "apply indent to format the output"),
    }, _cat_manifest),
    "rm": Sub("  rkt image rm IMAGE...", {}, _rm),
    "gc": Sub("  rkt image gc [--grace-period=24h0m0s]", {
        "grace-period": Flag(Kind.STR, "24h0m0s", "duration to wait since an image was last "
                             "used before removing it"),
    }, _gc),
    "extract": Sub("  rkt image extract [--rootfs-only] [--overwrite] IMAGE OUTPUT_DIR", {
        "rootfs-only": _ROOTFS_ONLY, "overwrite": _OVERWRITE}, _extract),
    "render": Sub("  rkt image render [--rootfs-only] [--overwrite] IMAGE OUTPUT_DIR", {
        "rootfs-only": _ROOTFS_ONLY, "overwrite": _OVERWRITE}, _render),
    "export": Sub("  rkt image export [--overwrite] IMAGE OUTPUT_ACI_FILE", {
        "overwrite": _OVERWRITE}, _export),
    "verify": Sub("  rkt image verify IMAGE...", {}, _verify),
    "fetch": Sub("  rkt image fetch IMAGE...", {}, _fetch, hidden=True),  # alias of rkt fetch
}
USAGE = "Usage:\n" + "\n".join(s.usage for s in SUBS.values() if not s.hidden)


def collect_temp(ctx: Context) -> None:
    """What killed fetches and imports left in cas/tmp (rkt gc and rkt image gc)."""
    from ..store import tmp

    for path in tmp.collect(ctx.paths):
        ctx.err(f'removed stale temporary file "{path}"')


def _sub(word: str) -> str:
    """A subcommand by name or unique prefix (cobra's prefix matching)."""
    if word in SUBS:
        return word
    matches = [s for s, v in SUBS.items() if s.startswith(word) and not v.hidden]
    if word and len(matches) == 1:
        return matches[0]
    if word and matches:
        raise UsageError(f'ambiguous image subcommand "{word}": ' + ", ".join(matches))
    raise UsageError(f'unknown image subcommand "{word}"',
                     hint="rkt image " + "|".join(s for s, v in SUBS.items() if not v.hidden))


def main_raw(args: list[str], spec: dict[str, Flag],
             make_ctx: Callable[[dict[str, Any]], Context]) -> int:
    # Global flags may come before the subcommand (rkt image --debug list).
    i, scratch = 0, {k: (list(f.default) if f.kind == Kind.LIST else f.default)
                     for k, f in spec.items()}
    while i < len(args) and args[i].startswith("--") and args[i] != "--":
        nxt = take_flag(spec, args, i, scratch)
        if nxt is None:
            raise UsageError(f"unknown flag: {args[i].split('=', 1)[0]}")
        i = nxt
    if i >= len(args):
        raise UsageError("missing image subcommand", hint=USAGE.replace("\n", " "))
    name = _sub(args[i])
    sub = SUBS[name]
    flags = _fetch_flags() if name == "fetch" else sub.flags
    values, pos = parse({**spec, **flags}, [*args[:i], *args[i + 1:]])
    ctx = dataclasses.replace(make_ctx(values), verb=name)
    try:
        return sub.run(ctx, values, pos)
    except RktError as e:
        if ctx.debug:
            traceback.print_exc()
        ctx.err(_msg(e))
        return e.exit_code

