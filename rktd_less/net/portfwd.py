"""Host ports forwarded to a pod, as rkt's networking/portfwd.go did it (reference
networking.md): nat chains ``RKT-PFWD-DNAT-<uuid[0:8]>`` (jumped to from PREROUTING and OUTPUT
for local destinations) and ``RKT-PFWD-SNAT-<uuid[0:8]>`` (from POSTROUTING for connections from
127.0.0.1), and ``route_localnet=1`` on the interface that leads to the pod so that a connection
to 127.0.0.1:HOSTPORT may leave loopback.

Beyond rkt, a fix: ``route_localnet=1`` also let packets *from* the pod to 127.0.0.0/8 in
through that interface, so root in the pod (raw sockets) reached the machine's services bound
to loopback only (kube-proxy's CVE-2020-8558). A raw-table PREROUTING rule, per pod, drops
them before conntrack (the replies of forwarded connections are addressed to the interface's
own address there, so they pass).

Beyond rkt: the rules go in with one ``iptables-restore --noflush`` (all or nothing); a host
port that a process of the machine listens on, or that another forward already takes, is
refused, under a machine-wide lock; the chains are recorded in the pod's ``net/`` before they
are made, so teardown (on exit, or gc after a crash) finds them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..common.podpaths import PodPaths
from ..errors import NetworkError
from ..fsio import replace_file
from ..host import proc
from .ports import ANY, Forward

LOCK = Path("/run/rkt/portfwd.lock")
JUMPS = (("PREROUTING", "DNAT"), ("OUTPUT", "DNAT"), ("POSTROUTING", "SNAT"))


def chain(uuid: str, kind: str) -> str:
    return f"RKT-PFWD-{kind}-{uuid[:8]}"


def _jump(uuid: str, kind: str) -> list[str]:
    if kind == "SNAT":
        return ["-s", "127.0.0.1", "!", "-d", "127.0.0.1", "-j", chain(uuid, kind)]
    return ["-m", "addrtype", "--dst-type", "LOCAL", "-j", chain(uuid, kind)]


def _rules(uuid: str, fw: Forward, pod_ip: str) -> list[list[str]]:
    dst = "0.0.0.0/0" if fw.host_ip == ANY else fw.host_ip
    return [
        ["-A", chain(uuid, "DNAT"), "-d", dst, "-p", fw.protocol, "--dport", str(fw.host_port),
         "-j", "DNAT", "--to-destination", f"{pod_ip}:{fw.pod_port}"],
        ["-A", chain(uuid, "SNAT"), "-p", fw.protocol, "-s", "127.0.0.1", "-d", pod_ip,
         "--dport", str(fw.pod_port), "-j", "MASQUERADE"],
    ]


def _restore(tables: dict[str, list[list[str]]]) -> None:
    """One transaction per table (``iptables-restore --noflush``): all of it or nothing."""
    script = "".join(f"*{t}\n" + "".join(" ".join(ln) + "\n" for ln in lines) + "COMMIT\n"
                     for t, lines in tables.items() if lines)
    if script:
        proc.run(["iptables-restore", "-w", "--noflush"], input=script.encode(),
                 what="iptables-restore", error=NetworkError)


def _save() -> dict[str, list[str]]:
    """``iptables-save``: each table's lines (chain declarations and rules)."""
    tables: dict[str, list[str]] = {}
    current: list[str] = []
    listing = proc.run(["iptables-save"], error=NetworkError).stdout.decode()
    for line in listing.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        elif line.startswith((":", "-")):
            current.append(line)
    return tables


def _has_chain(lines: Sequence[str], name: str) -> bool:
    return any(ln.startswith(f":{name} ") for ln in lines)


def _comment(uuid: str) -> str:
    return f"rkt-{uuid}-no-localnet"


def _localnet_guard(uuid: str, dev: str, was: str) -> list[str]:
    """The guard names the pod and the interface's route_localnet before the first rkt pod
    set it (``-was0``): the last guard to go restores that value."""
    return ["-I", "PREROUTING", "1", "-i", dev, "-d", "127.0.0.0/8", "-m", "comment",
            "--comment", f"{_comment(uuid)}-was{was}", "-j", "DROP"]


def _guards(raw: Sequence[str], dev: str) -> list[str]:
    """The rkt guards of ``dev`` among iptables-save's raw lines."""
    return [ln for ln in raw if ln.startswith("-A PREROUTING ") and f" -i {dev} " in ln
            and "-no-localnet-was" in ln]


def _localnet_path(dev: str) -> Path:
    return Path(f"/proc/sys/net/ipv4/conf/{dev}/route_localnet")


def _original_localnet(raw: Sequence[str], dev: str) -> str:
    """route_localnet of ``dev`` before rkt pods set it: another pod's guard knows it, else it
    is the current value."""
    for ln in _guards(raw, dev):
        at = ln.find("-no-localnet-was")
        return ln[at + len("-no-localnet-was")]
    try:
        return _localnet_path(dev).read_text().strip()[:1] or "0"
    except OSError:
        return "0"


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """One pod at a time checks and takes host ports."""
    LOCK.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _dnat_ports(listing: str) -> Iterator[tuple[str, str, int, str]]:
    """(chain, protocol, port, destination) of each DNAT rule of an ``iptables -S`` listing."""
    for line in listing.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "-A" or "DNAT" not in words:
            continue
        opts = dict(itertools.pairwise(words))  # each word → the next
        proto, dst = opts.get("-p", ""), opts.get("-d", "0.0.0.0/0").split("/")[0]
        for key in ("--dport", "--dports"):
            for p in opts.get(key, "").split(","):
                lo, _, hi = p.partition(":")
                if lo.isdigit():
                    for port in range(int(lo), int(hi or lo) + 1):
                        yield words[1], proto, port, dst


def _check_free(fw: Forward, listing: str) -> None:
    """The host port is not forwarded already, nor bound by a process of the machine."""
    for ch, proto, port, dst in _dnat_ports(listing):
        if (proto, port) == (fw.protocol, fw.host_port) and (ANY in (dst, fw.host_ip)
                                                              or dst == fw.host_ip):
            raise NetworkError(f"host port {fw.describe()} is forwarded already (iptables nat "
                               f"chain {ch})", hint="choose another host port")
    kind = socket.SOCK_STREAM if fw.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:  # a connection in TIME_WAIT does not hold the port
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((fw.host_ip, fw.host_port))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise NetworkError(f"--port host IP {fw.host_ip} is not an address of this machine"
                                   ) from None
            if e.errno == errno.EADDRINUSE:
                raise NetworkError(f"host port {fw.describe()} is in use on this machine",
                                   hint="choose another host port") from None
            raise NetworkError(f"host port {fw.describe()}: {e.strerror}") from None


def _route_dev(ip: str) -> str | None:
    """The interface of the main table's longest-prefix route to ``ip`` (/proc/net/route),
    unless that is the default route: route_localnet is never set on the machine's uplink."""
    target = int.from_bytes(socket.inet_aton(ip), "little")
    best: tuple[int, str] | None = None
    with open("/proc/net/route") as f:
        next(f, None)
        for line in f:
            w = line.split()
            dest, mask = int(w[1], 16), int(w[7], 16)
            if target & mask == dest:
                bits = bin(mask).count("1")
                if best is None or bits > best[0]:
                    best = (bits, w[0])
    return best[1] if best and best[0] > 0 else None


def _record_path(pp: PodPaths) -> Path:
    return pp.net_dir / "portfwd.json"


def install(pp: PodPaths, uuid: str, fws: Sequence[Forward], pod_ip: str) -> None:
    """Forward ``fws`` to ``pod_ip`` (the forwardable network's address). Raises NetworkError
    with nothing added should a host port be taken or iptables fail."""
    if not fws:
        return
    if not pod_ip:
        raise NetworkError("--port: the pod's network gave it no IPv4 address to forward to")
    dev = _route_dev(pod_ip)
    with _machine_lock():
        tables = _save()
        nat = tables.get("nat", [])
        for kind in ("DNAT", "SNAT"):
            if _has_chain(nat, chain(uuid, kind)):
                raise NetworkError(f"iptables nat chain {chain(uuid, kind)} exists already "
                                   "(a pod whose UUID starts alike forwards ports)")
        for fw in fws:
            _check_free(fw, "\n".join(nat))
        replace_file(_record_path(pp), json.dumps({"uuid": uuid, "dev": dev}) + "\n",
                     durable=True)
        lines: list[list[str]] = [[f":{chain(uuid, k)}", "-", "[0:0]"] for k in ("DNAT", "SNAT")]
        lines += [["-I", base, "1", *_jump(uuid, kind)] for base, kind in JUMPS]
        for fw in fws:
            lines += _rules(uuid, fw, pod_ip)
        guard = ([_localnet_guard(uuid, dev, _original_localnet(tables.get("raw", []), dev))]
                 if dev else [])
        _restore({"nat": lines, "raw": guard})
        if dev is not None:  # 127.0.0.1 → pod: may leave loopback on the way to the pod
            with contextlib.suppress(OSError):
                _localnet_path(dev).write_text("1\n")


def remove(pp: PodPaths) -> None:
    """Remove the pod's chains and the jumps to them, whatever of them exists; idempotent."""
    rec = _record_path(pp)
    try:
        doc = json.loads(rec.read_bytes())
        uuid, dev = str(doc["uuid"]), doc.get("dev")
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError):
        rec.unlink(missing_ok=True)  # torn before the rules could be made
        return
    with _machine_lock():
        _remove_locked(uuid, dev if isinstance(dev, str) else None)
    rec.unlink(missing_ok=True)


def _remove_locked(uuid: str, dev: str | None) -> None:
    tables = _save()
    nat = tables.get("nat", [])
    lines: list[list[str]] = []
    for base, kind in JUMPS:
        jump = _jump(uuid, kind)
        lines += [["-D", base, *jump]] * sum(
            1 for ln in nat
            if ln.startswith(f"-A {base} ") and ln.endswith(f"-j {chain(uuid, kind)}"))
    for kind in ("DNAT", "SNAT"):
        if _has_chain(nat, chain(uuid, kind)):
            lines += [["-F", chain(uuid, kind)], ["-X", chain(uuid, kind)]]
    # the guard, as iptables-save lists it (its comment names the pod)
    ours = [ln for ln in tables.get("raw", [])
            if ln.startswith("-A PREROUTING ") and _comment(uuid) in ln]
    _restore({"nat": lines, "raw": [["-D", *ln.split(" ", 1)[1:]] for ln in ours]})
    # the last rkt pod forwarding through ``dev`` gives it back its route_localnet (a bridge
    # outlives its pods: left at 1 without a guard, it would open the machine's loopback)
    if dev is not None and ours and not [ln for ln in _guards(tables.get("raw", []), dev)
                                         if ln not in ours]:
        was = _original_localnet(ours, dev)
        with contextlib.suppress(OSError):
            if _localnet_path(dev).read_text().strip() != was:
                _localnet_path(dev).write_text(f"{was}\n")
