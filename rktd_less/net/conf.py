"""Network configurations (CNI ``*.conf`` files in ``net.d`` directories), as rkt loaded them
(``networking/podenv.go``; reference networking.md §1).

Directories are given lowest precedence first: the stage1 image's built-ins
(``<stage1>/etc/rkt/net.d``: ``default``, ``default-restricted``), then the system and the local
configuration's ``net.d``. Inside one directory the lexically first file wins for a network
name; a later directory overrides an earlier one by name. The networks a pod gets are ordered by
their file's basename across all directories, and their interfaces are ``eth0``, ``eth1``, ...
in that order. Reading only: nothing here runs a plugin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NetworkError
from .netlist import NetList

IFNAME = "eth{}"
# rkt's plugin directories, then where Debian's containernetworking-plugins and the CNI
# project's own packages install them
PLUGIN_DIRS = ("/usr/lib/rkt/plugins/net", "/usr/lib/cni", "/opt/cni/bin")


@dataclass(frozen=True)
class NetConf:
    name: str
    path: Path  # the file it came from
    conf: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.conf["type"])

    @property
    def version(self) -> str:
        """The CNI spec version of the conf; none given is 0.1.0 (as the plugins read it)."""
        return str(self.conf.get("cniVersion") or "0.1.0")

    @property
    def ip_masq(self) -> bool:
        return bool(self.conf.get("ipMasq"))


@dataclass(frozen=True)
class PodNet:
    """One network of a pod: its conf, interface and CNI_ARGS."""

    conf: NetConf
    ifname: str
    args: str = ""


def net_dirs(stage1_rootfs: Path, system: Path | None, local: Path | None) -> list[Path]:
    """Where networks are configured, lowest precedence first: the stage1 image's built-ins,
    the system configuration's ``net.d``, the local configuration's."""
    return [stage1_rootfs / "etc" / "rkt" / "net.d",
            *(d / "net.d" for d in (system, local) if d is not None)]


def pod_networks(nets: NetList, stage1_rootfs: Path, system: Path | None, local: Path | None,
                 warn: Callable[[str], None]) -> tuple[list[PodNet], tuple[str, ...]]:
    """The networks of a contained ``--net`` list from the stage1's, the system's and the local
    ``net.d`` (:func:`net_dirs`), and where their plugins are looked for (:func:`plugin_path`):
    stage0 checks them before the pod runs, stage1 sets them up."""
    chosen = select(nets, net_dirs(stage1_rootfs, system, local), warn)
    return chosen, plugin_path((local or Path("/etc/rkt")) / "net.d")


def check_plugins(nets: Sequence[PodNet], search: Sequence[str]) -> None:
    """Each network's plugin, and its IPAM plugin, can be found."""
    for n in nets:
        find_plugin(n.conf.type, search)
        ipam = n.conf.conf.get("ipam")
        if isinstance(ipam, dict) and isinstance(ipam.get("type"), str) and ipam["type"]:
            find_plugin(ipam["type"], search)


def read_conf(path: Path) -> NetConf:
    """One ``*.conf`` file, checked for what a plugin call needs (name and type)."""
    try:
        doc = json.loads(path.read_bytes())
    except OSError as e:
        raise NetworkError(f'cannot read network configuration "{path}": {e.strerror}') from None
    except ValueError as e:
        raise NetworkError(f'network configuration "{path}" is not valid JSON: {e}') from None
    if not isinstance(doc, dict):
        raise NetworkError(f'network configuration "{path}" is not a JSON object')
    for key in ("name", "type"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise NetworkError(f'network configuration "{path}" has no "{key}"',
                               hint='a CNI conf names its network ("name") and its plugin '
                                    '("type")')
    if "/" in doc["type"] or doc["type"] in (".", ".."):
        raise NetworkError(f'network configuration "{path}": plugin type "{doc["type"]}" is not '
                           "a plugin name")
    return NetConf(name=doc["name"], path=path, conf=doc)


def load_dir(directory: Path, warn: Callable[[str], None]) -> dict[str, NetConf]:
    """The networks of one directory: ``*.conf`` in lexical order, the first file per name."""
    try:
        files = sorted(f for f in os.listdir(directory) if f.endswith(".conf"))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as e:
        raise NetworkError(f'cannot read "{directory}": {e.strerror}') from None
    found: dict[str, NetConf] = {}
    for f in files:
        path = directory / f
        if not path.is_file():
            continue
        nc = read_conf(path)
        if nc.name in found:
            warn(f'"{nc.name}" network already defined, ignoring {path}')
            continue
        found[nc.name] = nc
    return found


def load(dirs: Sequence[Path], warn: Callable[[str], None]) -> list[NetConf]:
    """Every configured network, later directories overriding earlier ones by name, ordered by
    file basename (then name, for two equal basenames)."""
    merged: dict[str, NetConf] = {}
    for d in dirs:
        for name, nc in load_dir(d, warn).items():
            if name in merged and merged[name].path.parent != nc.path.parent:
                warn(f'overriding "{name}" network with one from {d}')
            merged[name] = nc
    return sorted(merged.values(), key=lambda n: (n.path.name, n.name))


def select(nets: NetList, dirs: Sequence[Path], warn: Callable[[str], None]) -> list[PodNet]:
    """The pod's networks for a contained ``--net`` list, in interface order."""
    available = load(dirs, warn)
    if nets.all:
        chosen = available
    else:
        by_name = {n.name: n for n in available}
        missing = [n for n in nets.names if n not in by_name]
        if missing:
            raise NetworkError("networks not found: " + ", ".join(missing),
                               hint="networks are *.conf files in the net.d directory of the "
                                    "local or system configuration (e.g. /etc/rkt/net.d)")
        wanted = set(nets.names)
        chosen = [n for n in available if n.name in wanted]
    return [PodNet(conf=nc, ifname=IFNAME.format(i), args=nets.args_of(nc.name))
            for i, nc in enumerate(chosen)]


def plugin_path(local_net_d: Path) -> tuple[str, ...]:
    """Where plugins are looked for (and ``CNI_PATH``): the local ``net.d`` first, as rkt."""
    return (str(local_net_d), *PLUGIN_DIRS)


def find_plugin(kind: str, search: Sequence[str]) -> Path:
    for d in search:
        p = Path(d) / kind
        if p.is_file() and os.access(p, os.X_OK):
            return p
    raise NetworkError(f'CNI plugin "{kind}" not found in {":".join(search)}',
                       hint="install containernetworking-plugins")
