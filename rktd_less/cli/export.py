"""rkt export: an exited pod's app (image content plus the app's changes) as a new ACI."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..common.podpaths import PodPaths
from ..errors import PodError, UsageError
from ..pod import poddir
from ..pod.state import is_exited
from .context import Context
from .flags import Flag, Kind

SHORT = "Export an app from an exited pod to an ACI file"
USAGE = "Usage:\n  rkt export [--app=NAME] [--overwrite] UUID OUTPUT.aci"
FLAGS: dict[str, Flag] = {
    "app": Flag(Kind.STR, "", "name of the app to export within the specified pod"),
    "overwrite": Flag(Kind.BOOL, False, "overwrite output ACI"),
}


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    from ..host.mount import run_over_overlay

    if len(args) != 2:
        raise UsageError("expected a pod UUID and an output file", hint=USAGE.splitlines()[-1])
    ctx.require_root()
    out = Path(args[1])
    if out.exists() and not values["overwrite"]:
        raise UsageError(f'output ACI file "{out}" exists (try --overwrite)')
    ref = poddir.resolve(ctx.paths, args[0])
    if not is_exited(ref.state()):
        raise PodError(f'pod "{ref.uuid}" is not exited', hint="stop it first: rkt stop")
    apps = [a["name"] for a in json.loads(PodPaths(ref.path).manifest.read_text()).get("apps", [])]
    app = values["app"] or (apps[0] if len(apps) == 1 else "")
    if not app:
        raise UsageError("pod has more than one app", hint="choose one with --app=NAME")
    if app not in apps:
        raise UsageError(f'pod "{ref.uuid}" has no app "{app}"')
    pp = PodPaths(ref.path)
    tree = pp.app_tree_id(app).read_text().strip()
    upper = pp.overlay(tree) / "upper" / app
    lower = ctx.paths.tree(tree) / "rootfs"
    if not pp.overlay_prepared.exists():  # --no-overlay: the app's own copy
        upper = lower = pp.app_rootfs(app)
    if not lower.is_dir():
        raise PodError(f'the image tree of app "{app}" is gone (image gc?)')
    out.parent.mkdir(parents=True, exist_ok=True)
    from ..store.tmp import private_dir

    stage = Path(tempfile.mkdtemp(prefix="export-", dir=private_dir(ctx.paths)))
    tmp_out = out.with_name(f".{out.name}.tmp")
    try:
        shutil.copyfile(pp.app_image_manifest(app), stage / "manifest")
        (stage / "rootfs").mkdir()
        layers = [upper, lower] if upper.is_dir() and upper != lower else [lower]
        code = run_over_overlay(layers, stage / "rootfs",
                                ["tar", "-c", "-f", str(tmp_out), "-C", str(stage),
                                 "--numeric-owner", "--xattrs", "--xattrs-include=*",
                                 "manifest", "rootfs"])
        if code != 0:
            raise PodError(f'exporting app "{app}" failed (tar exit status {code})')
        os.replace(tmp_out, out)
    finally:
        tmp_out.unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
    return 0
