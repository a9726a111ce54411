"""rkt image: list and cat-manifest (the rest of the image verbs come with the store work)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import UsageError
from ..ids import short_id
from ..store import Store
from .context import Context
from .flags import Flag, Kind
from .output import dump_json, full_time, human_bytes, human_time, manifest_json, ns, table

SHORT = "Operate on image(s) in the local store"
USAGE = """Usage:
  rkt image list [--fields=...] [--full] [--no-legend] [--format=json|json-pretty]
  rkt image cat-manifest [--pretty-print=false] IMAGE"""
FLAGS: dict[str, Flag] = {
    "fields": Flag(Kind.LIST, [], "comma-separated fields: id,name,size,importtime,lastused"),
    "full": Flag(Kind.BOOL, False, "use long output format"),
    "no-legend": Flag(Kind.BOOL, False, "suppress a legend with the list"),
    "format": Flag(Kind.STR, "", "choose the output format: json, json-pretty"),
    "sort": Flag(Kind.LIST, [], "sort by: name, importtime, lastused, size"),
    "order": Flag(Kind.STR, "asc", "asc or desc"),
    "pretty-print": Flag(Kind.BOOL, True, "apply indent to format the output"),
}
FIELDS = {"id": "ID", "name": "NAME", "size": "SIZE", "importtime": "IMPORT TIME",
          "lastused": "LAST USED"}
SORT_KEYS = {"name", "importtime", "lastused", "size"}


def _resolve(store: Store, text: str) -> str:
    from ..fetch.resolve import ImageKind, classify, parse_name

    if classify(text) == ImageKind.HASH:
        return store.resolve_id(text)
    name, labels = parse_name(text)
    key = store.find_by_name(name, labels)
    if key is None:
        from ..errors import NotFound

        raise NotFound(f'no image found for "{text}"', hint="see `rkt image list`")
    return key


def _list(ctx: Context, values: dict[str, Any]) -> int:
    fields = values["fields"] or ["id", "name", "size", "importtime", "lastused"]
    for f in fields:
        if f not in FIELDS:
            raise UsageError(f'unknown field "{f}"', hint="fields: " + ",".join(FIELDS))
    sort = values["sort"] or ["importtime"]
    for s in sort:
        if s not in SORT_KEYS:
            raise UsageError(f'unknown sort field "{s}"', hint="sort by: " + ",".join(SORT_KEYS))
    if values["order"] not in ("asc", "desc"):
        raise UsageError(f'invalid order "{values["order"]}"', hint="use asc or desc")
    images = Store(ctx.paths).list_images()
    keyf = {"name": lambda i: i.name, "importtime": lambda i: i.import_time,
            "lastused": lambda i: i.last_used, "size": lambda i: i.size + i.tree_size}
    images.sort(key=lambda i: tuple(keyf[s](i) for s in sort),
                reverse=values["order"] == "desc")
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


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    if not args:
        raise UsageError("missing image subcommand", hint="rkt image list|cat-manifest")
    sub, rest = args[0], args[1:]
    if "list".startswith(sub) and sub:
        return _list(ctx, values)
    if sub == "cat-manifest":
        if len(rest) != 1:
            raise UsageError("expected exactly one image")
        store = Store(ctx.paths)
        data = json.loads(store.manifest_bytes(_resolve(store, rest[0])))
        ctx.out(manifest_json(data, values["pretty-print"]))
        return 0
    raise UsageError(f'unknown image subcommand "{sub}"', hint="rkt image list|cat-manifest")
