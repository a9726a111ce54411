"""Socket activation of a pod (rkt's socket-activated ports, reference §2.4 ``<app>.socket``).

An app port with ``socketActivated`` gets a ``<app>.socket`` unit in the pod: the pod's systemd
listens and hands the socket to the app's service. When ``rkt run`` is itself socket-activated
(a host ``.socket`` unit whose service runs it), the listening sockets it was given reach nspawn
(sd_listen_fds: stage0 and stage1 exec, so the PID is the one systemd named), nspawn passes them
to the pod's systemd, and the pod's ``<app>.socket`` takes the one whose port it names instead
of opening its own. Such a host port is not forwarded with iptables: the host socket is its way
in. Standard library only: this is on the pod start path.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

FIRST_FD = 3  # SD_LISTEN_FDS_START


def _given(env: Mapping[str, str]) -> range:
    """The fds systemd gave this process (sd_listen_fds: none unless LISTEN_PID is ours)."""
    if env.get("LISTEN_PID") != str(os.getpid()) or not env.get("LISTEN_FDS", "").isdigit():
        return range(0)
    return range(FIRST_FD, FIRST_FD + int(env["LISTEN_FDS"]))


def passed(environ: Mapping[str, str] | None = None) -> dict[tuple[str, int], str]:
    """The listening sockets this process was given by systemd: (protocol, port) → their
    address as a socket unit's Listen*= names it (``0.0.0.0:80``, ``[::]:80``): the pod's
    systemd takes a passed socket only for the unit that names exactly its address."""
    out: dict[tuple[str, int], str] = {}
    for fd in _given(os.environ if environ is None else environ):
        try:
            s = socket.socket(fileno=fd)
        except OSError:
            continue  # not a socket (a FIFO, a file): nothing a port names
        try:
            if s.family in (socket.AF_INET, socket.AF_INET6):
                proto = {socket.SOCK_STREAM: "tcp", socket.SOCK_DGRAM: "udp"}.get(s.type)
                if proto is not None:
                    host, port = s.getsockname()[:2]
                    addr = f"[{host}]" if s.family == socket.AF_INET6 else host
                    out[(proto, int(port))] = f"{addr}:{port}"
        finally:
            s.detach()  # still the pod's
    return out


def nspawn_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What nspawn needs to take every socket we were given (it runs with our PID: we exec
    it); the sockets stay open across that exec."""
    env = os.environ if environ is None else environ
    fds = _given(env)
    if not fds:
        return {}
    for fd in fds:
        try:
            os.set_inheritable(fd, True)
        except OSError:
            continue
    out = {"LISTEN_FDS": env["LISTEN_FDS"], "LISTEN_PID": str(os.getpid())}
    if "LISTEN_FDNAMES" in env:
        out["LISTEN_FDNAMES"] = env["LISTEN_FDNAMES"]
    return out


def listen_ports(app: Mapping[str, Any], host_ports: Mapping[str, int],
                 given: Mapping[tuple[str, int], str]) -> tuple[tuple[str, str], ...]:
    """(protocol, what its socket unit listens on) of each socket-activated port of ``app``:
    the address of the host's socket for the host port of its ``--port`` when the host handed
    us that socket, else the app's port (in the pod's network: where a ``--port`` forward
    leads). rkt listened on the host port even without a host socket, where a forward to the
    app's port then found nothing."""
    out = []
    for p in app.get("ports") or []:
        if not p.get("socketActivated"):
            continue
        proto = str(p.get("protocol") or "tcp")
        host = host_ports.get(str(p.get("name")))
        if host is not None and (proto, host) in given:
            out.append((proto, given[(proto, host)]))
        else:
            out.append((proto, str(int(p["port"]))))
    return tuple(out)
