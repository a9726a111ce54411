"""--port, port forwarding rules and socket activation: the pure parts (the bed tests run them
for real in tests/integration/test_net.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from rktd_less.errors import UsageError
from rktd_less.net import netlist, portfwd, ports
from rktd_less.pod import launch
from rktd_less.stage1 import sockets, units


def test_flag_grammar() -> None:
    assert ports.parse_flag("http:8080") == {"name": "http", "hostPort": 8080}
    assert ports.parse_flag("80-tcp:10.0.0.1:80") == {"name": "80-tcp", "hostPort": 80,
                                                      "hostIP": "10.0.0.1"}


@pytest.mark.parametrize(("value", "message"), [
    ("http", '"http" is not in name:[ip:]port format'),
    ("HTTP:80", '"HTTP" is not a valid port name'),
    ("http:0", '"0" is not a valid port number'),
    ("http:65536", '"65536" is not a valid port number'),
    ("http:x:80", '"x" is not a valid IP'),
    ("http:::1:80", '"" is not a valid IP'),
    ("http:fe80::1:80", '"fe80" is not a valid IP'),  # as rkt: split at the first two colons
])
def test_flag_errors(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ports.parse_flag(value)


def _pod(*eps: dict[str, Any], apps: dict[str, list[dict[str, Any]]] | None = None
         ) -> dict[str, Any]:
    apps = apps if apps is not None else {"web": [{"name": "http", "protocol": "tcp",
                                                   "port": 80}]}
    return {"apps": [{"name": n, "app": {"ports": p}} for n, p in apps.items()],
            "ports": list(eps)}


def test_forwards_resolve_the_app_port() -> None:
    (fw,) = ports.forwards(_pod({"name": "http", "hostPort": 8080}))
    assert fw == ports.Forward("http", "tcp", "0.0.0.0", 8080, 80)
    assert fw.describe() == "tcp 0.0.0.0:8080"


def test_forwards_refused_as_rkt() -> None:
    with pytest.raises(UsageError, match='no app of the pod declares a port named "dns"'):
        ports.forwards(_pod({"name": "dns", "hostPort": 53}))
    two = {"a": [{"name": "http", "protocol": "tcp", "port": 80}],
           "b": [{"name": "http", "protocol": "tcp", "port": 81}]}
    with pytest.raises(UsageError, match=r"declared by several apps \(a, b\)"):
        ports.forwards(_pod({"name": "http", "hostPort": 80}, apps=two))
    udp = {"web": [{"name": "http", "protocol": "tcp", "port": 80},
                   {"name": "q", "protocol": "udp", "port": 53},
                   {"name": "h2", "protocol": "tcp", "port": 81}]}
    # the same host port for tcp and udp, or on two addresses, is no conflict
    assert len(ports.forwards(_pod({"name": "http", "hostPort": 80},
                                   {"name": "q", "hostPort": 80}, apps=udp))) == 2
    assert len(ports.forwards(_pod({"name": "http", "hostPort": 80, "hostIP": "10.0.0.1"},
                                   {"name": "h2", "hostPort": 80, "hostIP": "10.0.0.2"},
                                   apps=udp))) == 2
    # 0.0.0.0 conflicts with every address
    with pytest.raises(UsageError, match=r"tcp 10\.0\.0\.1:80 is already mapped to pod port 80"):
        ports.forwards(_pod({"name": "http", "hostPort": 80},
                            {"name": "h2", "hostPort": 80, "hostIP": "10.0.0.1"}, apps=udp))


def test_ports_need_a_pod_network() -> None:
    ports.check_net(netlist.parse([]))
    for mode in ("host", "none"):
        with pytest.raises(UsageError, match=f"does not work with '{mode}' networking"):
            ports.check_net(netlist.parse([mode]))


def test_dnat_ports_of_an_iptables_listing() -> None:
    listing = (
        "-P PREROUTING ACCEPT\n"
        "-N RKT-PFWD-DNAT-0123abcd\n"
        "-A RKT-PFWD-DNAT-0123abcd -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
        "172.16.28.2:80\n"
        "-A CNI-DN-x -d 10.0.0.1/32 -p udp -m multiport --dports 53,60:61 -j DNAT "
        "--to-destination 10.88.0.2:53\n"
        "-A POSTROUTING -s 127.0.0.1/32 ! -d 127.0.0.1/32 -j RKT-PFWD-SNAT-0123abcd\n")
    assert sorted(portfwd._dnat_ports(listing)) == [
        ("CNI-DN-x", "udp", 53, "10.0.0.1"), ("CNI-DN-x", "udp", 60, "10.0.0.1"),
        ("CNI-DN-x", "udp", 61, "10.0.0.1"),
        ("RKT-PFWD-DNAT-0123abcd", "tcp", 8080, "0.0.0.0")]


def test_rules_are_rkts() -> None:
    fw = ports.Forward("http", "tcp", "0.0.0.0", 8080, 80)
    uuid = "0123abcd-0000-4000-8000-000000000000"
    assert portfwd._rules(uuid, fw, "172.16.28.2") == [
        ["-A", "RKT-PFWD-DNAT-0123abcd", "-d", "0.0.0.0/0", "-p", "tcp", "--dport", "8080",
         "-j", "DNAT", "--to-destination", "172.16.28.2:80"],
        ["-A", "RKT-PFWD-SNAT-0123abcd", "-p", "tcp", "-s", "127.0.0.1", "-d", "172.16.28.2",
         "--dport", "80", "-j", "MASQUERADE"]]
    assert portfwd._localnet_guard(uuid, "veth0", "0") == [
        "-I", "PREROUTING", "1", "-i", "veth0", "-d", "127.0.0.0/8", "-m", "comment",
        "--comment", f"rkt-{uuid}-no-localnet-was0", "-j", "DROP"]
    raw = [f"-A PREROUTING -d 127.0.0.0/8 -i br0 -m comment --comment rkt-{uuid}-no-localnet-"
           "was0 -j DROP", "-A PREROUTING -i br0 -j ACCEPT"]
    assert portfwd._guards(raw, "br0") == raw[:1] and portfwd._guards(raw, "br1") == []
    assert portfwd._original_localnet(raw, "br0") == "0"  # another pod's guard knows it
    assert portfwd._jump(uuid, "SNAT") == ["-s", "127.0.0.1", "!", "-d", "127.0.0.1", "-j",
                                           "RKT-PFWD-SNAT-0123abcd"]


def test_passed_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    tcp, udp = socket.socket(), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    base = 300  # two free consecutive fds, as systemd passes them (from 3 on)
    while any(_is_open(fd) for fd in (base, base + 1)):
        base += 2
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("::1", 0))
        os.dup2(tcp.fileno(), base, inheritable=False)
        os.dup2(udp.fileno(), base + 1, inheritable=False)
        monkeypatch.setattr(sockets, "FIRST_FD", base)
        env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
        tport, uport = tcp.getsockname()[1], udp.getsockname()[1]
        assert sockets.passed(env) == {("tcp", tport): f"127.0.0.1:{tport}",
                                       ("udp", uport): f"[::1]:{uport}"}
        assert sockets.passed({**env, "LISTEN_PID": "1"}) == {}  # not ours
        assert sockets.nspawn_env(env) == {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid()),
                                           "LISTEN_FDNAMES": "a:b"}
        assert os.get_inheritable(base) and os.get_inheritable(base + 1)
        assert _is_open(base) and _is_open(base + 1)  # nothing was closed
    finally:
        for fd in (base, base + 1):
            if _is_open(fd):
                os.close(fd)
        tcp.close()
        udp.close()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_listen_ports_prefer_a_passed_host_socket() -> None:
    app = {"ports": [{"name": "a", "protocol": "tcp", "port": 80, "socketActivated": True},
                     {"name": "b", "protocol": "udp", "port": 53, "socketActivated": True},
                     {"name": "c", "protocol": "tcp", "port": 81}]}
    assert sockets.listen_ports(app, {"a": 8080}, {}) == (("tcp", "80"), ("udp", "53"))
    # the host's socket, by its exact address (the pod's systemd matches on it)
    assert sockets.listen_ports(app, {"a": 8080}, {("tcp", 8080): "0.0.0.0:8080"}) == \
        (("tcp", "0.0.0.0:8080"), ("udp", "53"))


def test_socket_units() -> None:
    app = units.AppUnit(name="echo", image_name="example.com/echo", argv=("/echo",), uid=0,
                        gid=0, sockets=(("tcp", "[::]:8080"), ("udp", "53")))
    out = units.pod_units([app, units.AppUnit(name="other", image_name="x", argv=("/x",),
                                              uid=0, gid=0)])
    sock = out["echo.socket"]
    assert "ListenStream=[::]:8080\n" in sock and "ListenDatagram=53\n" in sock
    assert "Service=echo.service\n" in sock and "BindIPv6Only=both\n" in sock
    assert "Requires=echo.socket\nAfter=echo.socket\n" in out["echo.service"]
    assert "other.socket" not in out and "Requires=other.socket" not in out["other.service"]
    # loaded before the pod's systemd hands out the sockets it was given
    assert out["-.slice.d/rkt-sockets.conf"] == "[Unit]\nWants=echo.socket\n"


def test_keep_unit_companion_releases_after_the_owner() -> None:
    lx = launch.Launch(uuid="u", poddir=Path("/var/lib/rkt/pods/run/u"),
                       entrypoint=Path("/s1/init"), args=("u",), stop_post=Path("/s1/stop-post"),
                       env=(("A", "1"),))
    props = {n: v for n, _s, v in launch.stop_post_properties(lx, "web.service")}
    assert props["BindsTo"] == ["web.service"] and props["Before"] == ["web.service"]
    assert props["ExecStop"] == [["/s1/stop-post", ["/s1/stop-post",
                                                    "--pods-dir=/var/lib/rkt/pods", "u"], True]]
    assert props["WorkingDirectory"] == "-/var/lib/rkt/pods/run/u"
    assert props["Type"] == "oneshot" and props["RemainAfterExit"] is True
    assert "A=1" in props["Environment"]  # type: ignore[operator]
    assert launch.stop_post_unit("u") == "rkt-u-stop-post.service"
