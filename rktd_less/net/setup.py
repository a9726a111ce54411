"""A pod's CNI networks up and down, recorded in the pod directory so that whatever can outlive
a crash (host-local leases, the plugins' iptables chains, the namespace) is found again.

Up (stage1's run entrypoint, before nspawn): a namespace ``/run/netns/rkt-<uuid>``, named in
``<pod>/netns``; per network a record ``<pod>/net/NN-<name>.json`` written *before* its ADD,
then the ADD, then the record again with the result; ``net-info.json`` (rkt's) at the end. An
ADD that fails undoes everything done so far.

Ports (``--port``, net/portfwd.py) are forwarded once every network is up, to the forwardable
network's address, and are the first thing to go down.

Down (``teardown``: the pod unit's ExecStopPost on exit, and stage1 gc for a pod that was
killed or whose machine rebooted): DEL per record in reverse, each record removed once its DEL
succeeded, then the namespace. DEL comes before the namespace goes: ptp learns the address to
unmasquerade from the link inside it (reference networking.md §3, the crash case).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.podpaths import PodPaths
from ..errors import NetworkError
from ..fsio import replace_file
from ..host import netns as nsfile
from . import cni, portfwd
from .conf import NetConf, PodNet
from .ports import Forward


@dataclass(frozen=True)
class Attached:
    """A network the pod is on (one ``net-info.json`` entry)."""

    net: PodNet
    plugin: str
    result: cni.Result

    def info(self) -> dict[str, str]:
        return {"netName": self.net.conf.name, "netConf": str(self.net.conf.path),
                "pluginPath": self.plugin, "ifName": self.net.ifname, "ip": self.result.ip,
                "args": self.net.args, "mask": self.result.mask}


def netns_name(uuid: str) -> str:
    return f"rkt-{uuid}"


def _record_path(pp: PodPaths, index: int, net: PodNet) -> Path:
    return pp.net_dir / f"{index:02d}-{net.conf.name}.json"


def _write_record(path: Path, net: PodNet, search: Sequence[str],
                  result: dict[str, Any] | None) -> None:
    doc = {"name": net.conf.name, "confPath": str(net.conf.path), "conf": net.conf.conf,
           "ifName": net.ifname, "args": net.args, "cniPath": list(search), "result": result}
    replace_file(path, json.dumps(doc, indent=1) + "\n", mode=0o600, durable=True)


def _read_record(path: Path) -> tuple[PodNet, list[str], dict[str, Any] | None]:
    doc = json.loads(path.read_bytes())
    conf = NetConf(name=doc["name"], path=Path(doc["confPath"]), conf=doc["conf"])
    return (PodNet(conf=conf, ifname=doc["ifName"], args=doc.get("args", "")),
            list(doc.get("cniPath") or ()), doc.get("result"))


@contextlib.contextmanager
def _locked(pp: PodPaths) -> Any:
    """Setup and teardown of one pod never overlap (ExecStopPost and a `rkt gc`)."""
    pp.net_dir.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(pp.net_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def forwardable(attached: Sequence[Attached]) -> Attached:
    """rkt: ports are forwarded to the first network with ipMasq, else to the last one."""
    return next((a for a in attached if a.net.conf.ip_masq), attached[-1])


def setup(poddir: Path, uuid: str, nets: Sequence[PodNet], search: Sequence[str],
          forwards: Sequence[Forward] = ()) -> tuple[Path, list[Attached]]:
    """Create the pod's namespace, ADD each network to it and forward ``forwards`` to it.
    Returns the namespace file and the attached networks. On failure nothing is left
    (everything done is undone)."""
    pp = PodPaths(poddir)
    attached: list[Attached] = []
    with _locked(pp):
        try:
            path = nsfile.create(netns_name(uuid))
            replace_file(pp.netns, str(path), durable=True)
            for i, net in enumerate(nets):
                rec = _record_path(pp, i, net)
                _write_record(rec, net, search, None)  # before: a crash in ADD is undone too
                plugin, result = cni.add(uuid, path, net, search)
                _write_record(rec, net, search, dict(result.raw))
                attached.append(Attached(net=net, plugin=str(plugin), result=result))
            if forwards and attached:
                portfwd.install(pp, uuid, forwards, forwardable(attached).result.ip)
            replace_file(pp.net_info, json.dumps([a.info() for a in attached]) + "\n")
        except BaseException:
            with contextlib.suppress(Exception):
                _teardown_locked(pp, uuid)
            raise
    return path, attached


def _netns_of(pp: PodPaths, uuid: str) -> Path | None:
    try:
        path = Path(pp.netns.read_text().strip())
    except OSError:
        path = nsfile.NETNS_DIR / netns_name(uuid)  # made, not yet named (a crash between)
    return path if path.is_absolute() else None


def teardown(poddir: Path, uuid: str) -> None:
    """Release everything the pod's networks hold; idempotent. Raises NetworkError naming the
    DELs that failed (their records stay for the next try)."""
    pp = PodPaths(poddir)
    if not pp.net_dir.is_dir() and not pp.netns.exists():
        return
    with _locked(pp):
        _teardown_locked(pp, uuid)


def _teardown_locked(pp: PodPaths, uuid: str) -> None:
    failed: list[str] = []
    if pp.net_dir.is_dir():
        try:  # first, as rkt: no forward to an address about to be released
            portfwd.remove(pp)
        except NetworkError as e:
            failed.append(e.message)
    ns = _netns_of(pp, uuid)
    live = ns if ns is not None and nsfile.is_netns(ns) else None
    records = sorted((p for p in pp.net_dir.glob("*.json") if p.name[:2].isdigit()),
                     reverse=True) if pp.net_dir.is_dir() else []
    for rec in records:
        try:
            net, search, result = _read_record(rec)
        except (OSError, ValueError, KeyError):
            rec.unlink(missing_ok=True)  # torn before its ADD could have run
            continue
        try:
            cni.delete(uuid, live, net, search, result)
        except NetworkError as e:
            failed.append(e.message)
            continue
        rec.unlink(missing_ok=True)
    if failed:
        raise NetworkError("; ".join(failed), hint="`rkt gc` tries again")
    if ns is not None:
        nsfile.remove(ns)
    pp.netns.unlink(missing_ok=True)
