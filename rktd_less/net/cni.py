"""Running one CNI plugin (ADD or DEL) as the CNI spec says, and reading its result.

The conf is the plugin's stdin; ``CNI_COMMAND``, ``CNI_CONTAINERID`` (the pod UUID, as rkt),
``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_ARGS`` and ``CNI_PATH`` its environment. A DEL of a conf of
spec 0.4.0 or later carries the ADD's result as ``prevResult``. Results of every spec version the
plugins speak are read: 0.1.0/0.2.0 (``ip4``) and 0.3.0 onwards (``ips`` + ``interfaces``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NetworkError
from ..host import proc
from .conf import PodNet, find_plugin


@dataclass(frozen=True)
class Dns:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.nameservers or self.domain or self.search or self.options)


@dataclass(frozen=True)
class Result:
    ip: str = ""  # the pod's IPv4 address, without prefix
    mask: str = ""  # dotted, as rkt's net-info.json
    gateway: str = ""
    dns: Dns = field(default_factory=Dns)
    raw: Mapping[str, Any] = field(default_factory=dict)


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


def has_prev_result(version: str) -> bool:
    return _version_tuple(version) >= (0, 4, 0)


def parse_result(doc: Mapping[str, Any]) -> Result:
    """The pod's IPv4 address, mask, gateway and DNS from a plugin's ADD result."""
    dns_doc = doc.get("dns") or {}
    dns = Dns(nameservers=tuple(dns_doc.get("nameservers") or ()),
              domain=str(dns_doc.get("domain") or ""),
              search=tuple(dns_doc.get("search") or ()),
              options=tuple(dns_doc.get("options") or ()))
    address, gateway = "", ""
    if isinstance(doc.get("ip4"), dict):  # 0.1.0 / 0.2.0
        address = str(doc["ip4"].get("ip") or "")
        gateway = str(doc["ip4"].get("gateway") or "")
    else:  # 0.3.0 onwards: the first IPv4 address on an interface inside the pod
        ifaces = doc.get("interfaces") or []
        for ip in doc.get("ips") or []:
            idx = ip.get("interface")
            inside = (idx is None or not isinstance(idx, int) or idx >= len(ifaces)
                      or bool(ifaces[idx].get("sandbox")))
            try:
                iface = ipaddress.ip_interface(str(ip.get("address")))
            except ValueError:
                continue
            if iface.version == 4 and inside:
                address, gateway = str(ip["address"]), str(ip.get("gateway") or "")
                break
    if not address:
        return Result(gateway=gateway, dns=dns, raw=dict(doc))
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError as e:
        raise NetworkError(f"the plugin's result has an invalid address {address!r}") from e
    return Result(ip=str(iface.ip), mask=str(iface.netmask), gateway=gateway, dns=dns,
                  raw=dict(doc))


def plugin_error(stdout: bytes, stderr: bytes, code: int) -> str:
    """The plugin's error as CNI reports it (``{code,msg,details}`` on stdout): ``msg; details``,
    else its stderr's last line, else the exit status."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("msg"):
        msg = str(doc["msg"])
        return f"{msg}; {doc['details']}" if doc.get("details") else msg
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {code}"


def cni_args(args: str) -> str:
    """``CNI_ARGS``: the ``--net`` arguments, with ``IgnoreUnknown=1`` first (as container
    runtimes pass them): the args reach the main plugin and its IPAM plugin alike, and a
    bridge plugin refused the IPAM's ``IP=`` otherwise (rkt passed them bare)."""
    if not args or any(a.split("=")[0] == "IgnoreUnknown" for a in args.split(";")):
        return args
    return f"IgnoreUnknown=1;{args}"


def plugin_env(command: str, pod: str, netns: str, net: PodNet,
               search: Sequence[str]) -> dict[str, str]:
    return proc.clean_env({
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod,
        "CNI_NETNS": netns,
        "CNI_IFNAME": net.ifname,
        "CNI_ARGS": cni_args(net.args),
        "CNI_PATH": ":".join(search),
    })


def _call(command: str, pod: str, netns: str, net: PodNet, search: Sequence[str],
          stdin: bytes) -> tuple[Path, bytes]:
    plugin = find_plugin(net.conf.type, search)
    cp = proc.run([str(plugin)], env=plugin_env(command, pod, netns, net, search), input=stdin,
                  check=False, cwd="/")
    if cp.returncode != 0:
        detail = plugin_error(cp.stdout or b"", cp.stderr or b"", cp.returncode)
        raise NetworkError(f'network "{net.conf.name}": {net.conf.type} plugin {command} '
                           f"failed: {detail}")
    return plugin, cp.stdout or b""


def add(pod: str, netns: Path, net: PodNet, search: Sequence[str]) -> tuple[Path, Result]:
    """ADD: the plugin that ran, and its result."""
    plugin, out = _call("ADD", pod, str(netns), net, search, json.dumps(net.conf.conf).encode())
    try:
        doc = json.loads(out)
    except ValueError as e:
        raise NetworkError(f'network "{net.conf.name}": the {net.conf.type} plugin returned '
                           f"no JSON result") from e
    if not isinstance(doc, dict):
        raise NetworkError(f'network "{net.conf.name}": the {net.conf.type} plugin returned '
                           "no result object")
    return plugin, parse_result(doc)


def delete(pod: str, netns: Path | None, net: PodNet, search: Sequence[str],
           prev_result: Mapping[str, Any] | None) -> None:
    """DEL. ``netns`` None: the namespace is gone (a reboot); the plugin still releases the
    address (CNI: DEL must succeed for what is already gone)."""
    conf = dict(net.conf.conf)
    if prev_result and has_prev_result(net.conf.version):
        conf["prevResult"] = dict(prev_result)
    _call("DEL", pod, str(netns) if netns is not None else "", net, search,
          json.dumps(conf).encode())
