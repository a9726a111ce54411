"""TPM measurement of a pod before it starts (rkt measured stage1 args + pod manifest into PCR 15
and enforced nothing; reference packaging-tpm.md §3).

Configured in ``tpm.d/*.json`` of the system or local config dir (the local one wins per key)::

    {"rktKind": "tpm", "rktVersion": "v1",
     "tcti": "swtpm:host=127.0.0.1,port=2321",   # or "device:/dev/tpmrm0" (the default)
     "pcr": 15,                                   # rkt's; 16 and 23 are resettable
     "policy": "measure"}                         # measure | require | off

Without a config file, a machine with ``/dev/tpmrm0`` measures into PCR 15 with ``measure``.
``measure``: a failure is a warning and the pod runs; ``require``: the pod does not run.

What is measured, in order, each as one event: the stage1 image, every app's image (their store
IDs), the pod manifest (SHA-512 of the exact bytes of the pod's ``pod`` file), stage1's
arguments. An event's digest is SHA-256 of its canonical JSON; PCR ← SHA-256(PCR ‖ digest). The
pod's ``tpm-measure.log`` holds the events as RFC 7464 JSON text sequences (as systemd's
tpm2-measure.log), the PCR value before them first and after them last, so the log replays to
the PCR: :func:`replay`. Measurements of concurrent pods are serialized by a lock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.podpaths import PodPaths
from ..errors import RktError, UsageError

POLICIES = ("off", "measure", "require")
RS = b"\x1e"  # RFC 7464 record separator


@dataclass(frozen=True)
class TpmConfig:
    tcti: str
    pcr: int = 15
    policy: str = "measure"


def _bad(path: Path, msg: str) -> UsageError:
    return UsageError(f'invalid config file "{path}": {msg}')


def load_config(dirs: Sequence[Path | None], device: Path = Path("/dev/tpmrm0")
                ) -> TpmConfig | None:
    """The TPM configuration, or None when nothing is to be measured."""
    merged: dict[str, Any] = {}
    for base in dirs:
        if base is None:
            continue
        try:
            files = sorted(p for p in (base / "tpm.d").iterdir() if p.suffix == ".json")
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for path in files:
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise _bad(path, str(e)) from None
            if not isinstance(doc, dict) or doc.get("rktKind") != "tpm" or (
                    doc.get("rktVersion") != "v1"):
                raise _bad(path, 'expected {"rktKind": "tpm", "rktVersion": "v1", ...}')
            merged.update({k: v for k, v in doc.items() if k in ("tcti", "pcr", "policy")})
    policy = merged.get("policy", "measure")
    if policy not in POLICIES:
        raise UsageError(f'unknown TPM policy "{policy}"', hint="measure, require or off")
    pcr = merged.get("pcr", 15)
    if isinstance(pcr, bool) or not isinstance(pcr, int) or not 0 <= pcr <= 23:
        raise UsageError(f"invalid TPM PCR {pcr!r}", hint="a number from 0 to 23")
    tcti = merged.get("tcti")
    if tcti is None:
        if not device.exists() and policy != "require":
            return None
        tcti = f"device:{device}"
    if policy == "off":
        return None
    return TpmConfig(tcti=str(tcti), pcr=pcr, policy=policy)


def _canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def events(stage1_image: str, app_images: Sequence[tuple[str, str]], pod_manifest: bytes,
           stage1_args: Sequence[str]) -> list[dict[str, Any]]:
    """The measured events (pure)."""
    contents: list[dict[str, Any]] = [{"type": "stage1", "image": stage1_image}]
    contents += [{"type": "app", "name": n, "image": img} for n, img in app_images]
    contents.append({"type": "pod-manifest",
                     "sha512": hashlib.sha512(pod_manifest).hexdigest()})
    contents.append({"type": "stage1-args", "args": list(stage1_args)})
    return [{"content": c, "sha256": hashlib.sha256(_canonical(c)).hexdigest()}
            for c in contents]


def extend(value: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(value + digest).digest()


def log_text(pcr: int, before: bytes, evs: Sequence[Mapping[str, Any]], after: bytes) -> bytes:
    records: list[dict[str, Any]] = [{"pcr": pcr, "pcr_before": before.hex()}]
    records += [{"pcr": pcr, **e} for e in evs]
    records.append({"pcr": pcr, "pcr_after": after.hex()})
    return b"".join(RS + _canonical(r) + b"\n" for r in records)


def parse_log(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(rec) for rec in data.split(RS) if rec.strip()]


def replay(records: Sequence[Mapping[str, Any]]) -> tuple[int, bytes, bytes]:
    """(PCR, value replayed from the first record through every event, value logged last).
    Each event's digest is recomputed from its content, so an edited event does not replay."""
    pcr = int(records[0]["pcr"])
    value = bytes.fromhex(str(records[0]["pcr_before"]))
    for r in records[1:-1]:
        digest = hashlib.sha256(_canonical(r["content"])).digest()
        if digest.hex() != r["sha256"]:
            raise RktError("TPM event log: an event does not match its digest")
        value = extend(value, digest)
    return pcr, value, bytes.fromhex(str(records[-1]["pcr_after"]))


def measure(config: TpmConfig, lock: Path, poddir: Path, stage1_image: str,
            app_images: Sequence[tuple[str, str]], stage1_args: Sequence[str]) -> Path:
    """Extend the PCR with the pod's events and write its log; returns the log's path.
    ``lock`` serializes our measurements (its directory must exist)."""
    from ..fsio import replace_file
    from ..host import tpm
    from ..store.lock import flocked

    tcti = tpm.Tcti.parse(config.tcti)
    pp = PodPaths(poddir)
    evs = events(stage1_image, app_images, pp.manifest.read_bytes(), stage1_args)
    with flocked(lock):  # nothing else of ours extends in between
        before = tpm.pcr_read(tcti, config.pcr)
        for e in evs:
            tpm.pcr_extend(tcti, config.pcr, bytes.fromhex(e["sha256"]))
        after = tpm.pcr_read(tcti, config.pcr)
    path = pp.tpm_log
    replace_file(path, log_text(config.pcr, before, evs, after), durable=True)
    return path
