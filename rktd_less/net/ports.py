"""``--port=NAME:[HOSTIP:]HOSTPORT`` (pure): the flag, and which app port each forward reaches
(rkt's rkt/run.go portList and common/networking ForwardedPorts, reference networking.md).

A forward names an app port declared in an image (appc ``ports``, docker2aci's ``80-tcp``); the
pod manifest keeps it as ``ports[{name, hostPort, hostIP?}]``, resolved again by stage1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..common.manifests import ExposedPortDoc
    from .netlist import NetList

ANY = "0.0.0.0"


def parse_flag(value: str) -> ExposedPortDoc:
    """One ``--port`` value, with rkt's messages."""
    parts = value.split(":", 2)
    if len(parts) < 2:
        raise UsageError(f'--port: "{value}" is not in name:[ip:]port format')
    name, port_text = parts[0], parts[-1]
    from ..appc.types import is_ac_name  # stage0 only: its regexps stay off stage1's path

    if not is_ac_name(name):
        raise UsageError(f'--port: "{name}" is not a valid port name',
                         hint="lower case letters, digits and dashes, as the image names it")
    doc: ExposedPortDoc = {"name": name, "hostPort": 0}
    if len(parts) == 3:
        import ipaddress

        try:
            ip = ipaddress.ip_address(parts[1])
        except ValueError:
            raise UsageError(f'--port: "{parts[1]}" is not a valid IP') from None
        if ip.version != 4:
            raise UsageError(f'--port: "{parts[1]}": only IPv4 host addresses are forwarded')
        doc["hostIP"] = str(ip)
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise UsageError(f'--port: "{port_text}" is not a valid port number',
                         hint="1 to 65535")
    doc["hostPort"] = int(port_text)
    return doc


def check_net(nets: NetList) -> None:
    """rkt: forwarded ports need a network of the pod's own."""
    for mode in ("none", "host"):
        if getattr(nets, mode):
            raise UsageError(f"--port flag does not work with '{mode}' networking",
                             hint="forward ports from a pod network such as --net=default")


@dataclass(frozen=True)
class Forward:
    """A host port forwarded to an app's port."""

    name: str
    protocol: str  # tcp | udp
    host_ip: str  # 0.0.0.0: every address of the machine
    host_port: int
    pod_port: int
    socket_activated: bool = False

    def describe(self) -> str:
        return f"{self.protocol} {self.host_ip}:{self.host_port}"

    def conflicts(self, other: Forward) -> bool:
        """rkt: the same protocol and host port, on the same address or on 0.0.0.0."""
        if self.protocol != other.protocol or self.host_port != other.host_port:
            return False
        return ANY in (self.host_ip, other.host_ip) or self.host_ip == other.host_ip


def _ipv4(value: object) -> str:
    """A forward's host address: an IPv4 literal (iptables would resolve a name)."""
    if value is None or value == "":
        return ANY
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise UsageError(f'--port: host IP "{value}" is not an IPv4 address') from None


def _port(value: object, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
        return value
    raise UsageError(f"--port: {what} {value!r} is not a port number (1 to 65535)")


def _app_port(apps: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    found: list[tuple[str, Mapping[str, Any]]] = []
    for ra in apps:
        for p in (ra.get("app") or {}).get("ports") or []:
            if p.get("name") == name:
                found.append((str(ra.get("name")), p))
    if not found:
        raise UsageError(f'--port: no app of the pod declares a port named "{name}"',
                         hint="`rkt image cat-manifest IMAGE` lists the image's ports")
    if len(found) > 1:
        raise UsageError(f'--port: port name "{name}" is declared by several apps ('
                         + ", ".join(a for a, _p in found) + ")")
    return found[0][1]


def forwards(manifest: Mapping[str, Any]) -> list[Forward]:
    """The pod manifest's forwards, each resolved to its app port; refused as rkt: an unknown
    or ambiguous name, two forwards of one host port."""
    out: list[Forward] = []
    for ep in manifest.get("ports") or []:
        port = ep.get("podPort") or _app_port(manifest.get("apps") or [], str(ep["name"]))
        proto = str(port.get("protocol") or "tcp")
        if proto not in ("tcp", "udp"):
            raise UsageError(f'--port: port "{ep["name"]}" has protocol "{proto}": only tcp and '
                             "udp are forwarded")
        fw = Forward(name=str(ep["name"]), protocol=proto, host_ip=_ipv4(ep.get("hostIP")),
                     host_port=_port(ep.get("hostPort"), f'port "{ep["name"]}" hostPort'),
                     pod_port=_port(port.get("port"), f'app port "{ep["name"]}"'),
                     socket_activated=bool(port.get("socketActivated")))
        for prev in out:
            if fw.conflicts(prev):
                raise UsageError(f"--port: {fw.describe()} is already mapped to pod port "
                                 f"{prev.pod_port} ({prev.name})")
        out.append(fw)
    return out
