"""The kvm stage1's networking: the pod's CNI networks are set up as for nspawn (a namespace
with eth0, eth1, … made by the plugins); QEMU runs inside that namespace with one tap per
interface, and tc mirrors each interface and its tap both ways (what ingresses on eth0 leaves
by tap0 into the VM, and back), so the guest's virtio NIC, given the interface's MAC, address
and routes, is the pod on the network: the host reaches it, masquerading and --port forwards
apply (rkt's QEMU flavour never forwarded ports, rkt#3251). The guest's /init configures the
NICs from the kernel command line (``rkt.ip=eth0,ADDR/PREFIX``, ``rkt.route=eth0,DEST,GW``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import NetworkError
from ..host import proc


@dataclass(frozen=True)
class Nic:
    ifname: str  # in the pod's namespace and in the guest
    tap: str
    mac: str
    address: str  # ADDR/PREFIX
    routes: tuple[tuple[str, str], ...]  # (destination, gateway)

    def qemu_args(self, index: int) -> list[str]:
        return ["-netdev", f"tap,id=n{index},ifname={self.tap},script=no,downscript=no",
                "-device", f"virtio-net-device,netdev=n{index},mac={self.mac}"]

    def cmdline(self) -> list[str]:
        return [f"rkt.ip={self.ifname},{self.address}",
                *(f"rkt.route={self.ifname},{dst},{gw}" for dst, gw in self.routes)]


def _ip(ns: str, *args: str, tool: str = "ip") -> str:
    argv = [tool, "-n", ns, *args]
    return proc.run(argv, what=" ".join(argv), error=NetworkError).stdout.decode()


def parse_routes(text: str) -> tuple[tuple[str, str], ...]:
    """``ip -4 route show dev X``: the routes through a gateway, as (destination, gateway);
    the interface's own subnet comes with its address."""
    out = []
    for line in text.splitlines():
        w = line.split()
        if "via" in w:
            out.append((w[0], w[w.index("via") + 1]))
    return tuple(out)


def wire(ns: str, ifnames: Sequence[str]) -> list[Nic]:
    """A tap per interface in namespace ``ns``, mirrored to it both ways."""
    nics = []
    for i, ifname in enumerate(ifnames):
        tap = f"tap{i}"
        link = _ip(ns, "-o", "link", "show", "dev", ifname).split()
        mac = link[link.index("link/ether") + 1]
        mtu = link[link.index("mtu") + 1]
        addr = _ip(ns, "-4", "-o", "addr", "show", "dev", ifname).split()
        if "inet" not in addr:
            raise NetworkError(f"the pod's {ifname} has no IPv4 address for the VM")
        address = addr[addr.index("inet") + 1]
        routes = parse_routes(_ip(ns, "-4", "route", "show", "dev", ifname))
        _ip(ns, "tuntap", "add", "dev", tap, "mode", "tap")
        _ip(ns, "link", "set", "dev", tap, "mtu", mtu, "up")
        for a, b in ((ifname, tap), (tap, ifname)):
            _ip(ns, "qdisc", "add", "dev", a, "ingress", tool="tc")
            _ip(ns, "filter", "add", "dev", a, "parent", "ffff:", "protocol", "all", "u32",
                "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", b,
                tool="tc")
        nics.append(Nic(ifname, tap, mac, address, routes))
    return nics
