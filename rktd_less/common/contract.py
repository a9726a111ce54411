"""What stage0 hands every stage1 entrypoint beyond rkt's contract (reference §2.3)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import Stage1Error

if TYPE_CHECKING:
    from .manifests import ImageManifestDoc

# The interpreter stage0 runs under: the entrypoints of our stage1 images run the stage1 code
# of the same installation with it (a virtual environment's, or the system's).
PYTHON_ENV = "RKTD_LESS_PYTHON"


def stage1_image_name(flavour: str) -> str:
    """The name of our stage1 image of a flavour (``rktd-less/stage1-nspawn``)."""
    return f"rktd-less/stage1-{flavour}"


def stage1_file_name(flavour: str) -> str:
    """Its file in the stage1 images directory (``stage1-nspawn.aci``)."""
    return f"stage1-{flavour}.aci"


# rkt's --ipc values, passed to the run entrypoint (auto: the flavour's default)
IPC_MODES = ("auto", "private", "parent")


def entry_env() -> dict[str, str]:
    return {PYTHON_ENV: sys.executable}


# --- what a stage1 image asks of the pod unit stage0 starts for it ------------------------
# rkt's stage0 exec'd stage1 and knew nothing of units; here stage0 starts the pod as a
# transient unit, so a stage1 says in its manifest what that unit needs (nspawn: a delegated
# cgroup, its device policy, cgroup2), and whether it reports readiness (sd_notify READY=1 once
# the apps are up), instead of stage0 knowing each flavour.
UNIT_ANNOTATION = "rktd-less.io/stage1/unit-properties"  # a JSON object: property -> value
NOTIFY_ANNOTATION = "rktd-less.io/stage1/notify-ready"  # "true": --detach waits for READY=1
# An entrypoint (a path in the stage1 rootfs, as rkt's entrypoint annotations) that stage0 runs
# as the pod unit's ExecStopPost= with the pod UUID: it releases what the run entrypoint took
# outside the pod (its networks) as soon as the pod ends, not only at gc.
STOP_POST_ANNOTATION = "rktd-less.io/stage1/stop-post"
# "true": the stop-post entrypoint runs for every pod, not only for pods with networks (fly
# records the app's exit status there).
STOP_POST_ALWAYS_ANNOTATION = "rktd-less.io/stage1/stop-post-always"
# "true": the flavour runs every pod on the machine's network (fly): --net does not apply and
# --port is refused.
HOST_NETWORK_ANNOTATION = "rktd-less.io/stage1/host-network"
# The unit properties a stage1 may ask for, with their D-Bus signatures; stage0 sets the
# others itself (Description, Slice, Type, ExecStart, WorkingDirectory, stdio, CollectMode).
UNIT_PROPERTY_TYPES = {
    "Delegate": "b",
    "KillMode": "s",
    "NotifyAccess": "s",
    "DevicePolicy": "s",
    "DeviceAllow": "a(ss)",
    "Environment": "as",
    "TasksMax": "t",
    "LimitNOFILE": "t",
}


@dataclass(frozen=True)
class Stage1Unit:
    properties: tuple[tuple[str, str, object], ...] = ()  # (name, D-Bus signature, value)
    notify_ready: bool = False
    stop_post_always: bool = False
    host_network: bool = False


def _typed(sig: str, value: object) -> bool:
    if sig == "b":
        return isinstance(value, bool)
    if sig == "s":
        return isinstance(value, str)
    if sig == "t":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if sig == "as":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    # a(ss)
    return isinstance(value, list) and all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
        for v in value)


def stage1_unit(manifest: ImageManifestDoc) -> Stage1Unit:
    """The pod-unit needs a stage1 image's manifest states; Stage1Error for what stage0 cannot
    set (an unknown property or a value of the wrong type)."""
    ann = {str(a.get("name")): a.get("value") for a in manifest.get("annotations", []) or []}
    raw = ann.get(UNIT_ANNOTATION)
    props: list[tuple[str, str, object]] = []
    if raw is not None:
        try:
            doc = json.loads(str(raw))
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise Stage1Error(f'stage1 image: annotation "{UNIT_ANNOTATION}" is not a JSON '
                              "object")
        for name, value in doc.items():
            sig = UNIT_PROPERTY_TYPES.get(name)
            if sig is None:
                raise Stage1Error(f'stage1 image asks for unit property "{name}", which stage0 '
                                  "does not set for a stage1",
                                  hint="known: " + ", ".join(UNIT_PROPERTY_TYPES))
            if not _typed(sig, value):
                raise Stage1Error(f'stage1 image: unit property "{name}" needs a value of '
                                  f"D-Bus type {sig}, not {json.dumps(value)}")
            props.append((name, sig, value))
    return Stage1Unit(tuple(props), ann.get(NOTIFY_ANNOTATION) == "true",
                      stop_post_always=ann.get(STOP_POST_ALWAYS_ANNOTATION) == "true",
                      host_network=ann.get(HOST_NETWORK_ANNOTATION) == "true")
