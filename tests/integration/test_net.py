"""Pod networks with the real CNI plugins, in the test bed (its own network namespace): rkt's
default and default-restricted networks, a named bridge network with a fixed IP, several
networks at once, DNS and hosts files, list/status/machinectl, concurrent pods, and a census of
everything a network can leave on the machine, identical before and after each way a pod ends.

Traffic goes only to addresses inside the bed: the pods, the bed itself, and a "world"
namespace the tests make (203.0.113.0/24, TEST-NET-3), reachable from pods only through
masquerading (it has no route back to the pods' subnets)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, destroy, new_env, wait_for

pytestmark = pytest.mark.integration
INSECURE = "--insecure-options=image"
BRIDGE = "rkttestbr0"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


def census() -> dict[str, object]:
    """What a pod's networks could leave behind: namespaces, leases, rules, links."""
    leases = sorted(str(p) for p in Path("/var/lib/cni/networks").glob("*/*")
                    if p.name not in ("lock",) and not p.name.startswith("last_reserved_ip"))
    netns = sorted(p.name for p in Path("/run/netns").glob("*")) if Path("/run/netns").is_dir() \
        else []
    rules = {t: run("iptables", "-t", t, "-S").stdout for t in ("filter", "nat", "mangle", "raw")}
    links = sorted(line.split(":")[1].split("@")[0].strip()
                   for line in run("ip", "-o", "link").stdout.splitlines())
    mounts = sorted(line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                    if " /run/netns/" in line)
    return {"leases": leases, "netns": netns, "rules": rules, "links": links, "mounts": mounts}


@pytest.fixture(scope="module")
def env() -> Iterator[Rkt]:
    e = new_env("net")
    yield e
    destroy(e)
    run("ip", "link", "del", BRIDGE, check=False)


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0",
                     exec_=("/bin/sh", "-c", "ip -4 -o addr show"))


@pytest.fixture(scope="module")
def world() -> Iterator[str]:
    """A namespace outside the pods' networks with a TCP echo-ish listener on port 7000."""
    run("ip", "netns", "add", "rkttestworld")
    try:
        run("ip", "link", "add", "rktw0", "type", "veth", "peer", "name", "rktw1")
        run("ip", "link", "set", "rktw1", "netns", "rkttestworld")
        run("ip", "addr", "add", "203.0.113.1/24", "dev", "rktw0")
        run("ip", "link", "set", "rktw0", "up")
        w = ("ip", "netns", "exec", "rkttestworld")
        run(*w, "ip", "addr", "add", "203.0.113.2/24", "dev", "rktw1")
        run(*w, "ip", "link", "set", "rktw1", "up")
        run(*w, "ip", "link", "set", "lo", "up")
        yield "203.0.113.2"
    finally:
        run("ip", "netns", "del", "rkttestworld", check=False)
        run("ip", "link", "del", "rktw0", check=False)


def _listener(host: str, port: int, netns: str | None = None) -> subprocess.Popen[str]:
    """A one-line-per-connection server printing what it received and who sent it."""
    code = ("import socket,sys\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(({host!r},{port})); s.listen(8); print('ready', flush=True)\n"
            "while True:\n"
            "    c,a=s.accept(); d=c.recv(100); c.sendall(b'pong\\n')\n"
            "    print(a[0], d.decode().strip(), flush=True); c.close()\n")
    pre = ["ip", "netns", "exec", netns] if netns else []
    p = subprocess.Popen([*pre, "python3", "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def _stop(p: subprocess.Popen[str]) -> str:
    p.terminate()
    out, _ = p.communicate(timeout=10)
    return out


def _pod_sh(env: Rkt, aci: Path, script: str, *flags: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    return env("run", INSECURE, *flags, str(aci), "--exec", "/bin/sh", "--", "-c", script,
               check=check)


def test_default_network_both_ways_and_outside_through_masquerade(
        env: Rkt, aci: Path, world: str) -> None:
    before = census()
    host = _listener("0.0.0.0", 7001)
    outside = _listener("0.0.0.0", 7000, netns="rkttestworld")
    try:
        cp = _pod_sh(env, aci, "ip -4 -o addr show eth0; ip route; "
                     "echo to-host | nc 172.16.28.1 7001; "
                     f"echo to-world | nc {world} 7000")
    finally:
        got_host, got_world = _stop(host), _stop(outside)
    m = re.search(r"eth0\s+inet (172\.16\.28\.\d+)/24", cp.stdout)
    assert m, cp.stdout
    pod_ip = m.group(1)
    assert "default via 172.16.28.1" in cp.stdout
    assert cp.stdout.count("pong") == 2, cp.stdout
    assert f"{pod_ip} to-host" in got_host
    # the world has no route to 172.16.28.0/24: it saw the bed's address (masquerade)
    assert "203.0.113.1 to-world" in got_world, got_world
    assert census() == before


def test_host_reaches_the_pod_and_list_status_machinectl_show_it(env: Rkt, aci: Path) -> None:
    before = census()
    uf = env.uuid_file()
    env("run", INSECURE, "--detach", f"--uuid-file-save={uf}", str(aci), "--exec", "/bin/sh",
        "--", "-c", "while true; do echo hello-from-pod | nc -l -p 8080; done")
    uuid = uf.read_text().strip()
    try:
        ip = default_ip(env, uuid)
        row = next(ln for ln in env("list").stdout.splitlines() if ln.startswith(uuid[:8]))
        assert f"default:ip4={ip}" in row.split("\t"), row
        pod = next(p for p in json.loads(env("list", "--format=json").stdout)
                   if p["name"] == uuid)
        assert pod["networks"] == [{"netName": "default", "netConf": pod["networks"][0]["netConf"],
                                    "pluginPath": "/usr/lib/cni/ptp", "ifName": "eth0",
                                    "ip": ip, "args": "", "mask": "255.255.255.0"}]
        assert wait_for(lambda: ip in run("machinectl", "list", "--no-legend").stdout, 10), \
            run("machinectl", "list").stdout
        assert wait_for(lambda: _fetch(ip, 8080) == "hello-from-pod", 10)
        assert (Path("/run/netns") / f"rkt-{uuid}").exists()
    finally:
        env("stop", uuid)
        env("status", "--wait=30s", uuid)
    assert wait_for(lambda: census() == before, 10), (census(), before)
    # an exited pod still shows the networks it had, as rkt's list did
    assert f"networks=default:ip4={ip}" in env("status", uuid).stdout


def default_ip(env: Rkt, uuid: str) -> str:
    """The pod's address on the default network, as `rkt status` shows it."""
    status = env("status", uuid).stdout
    m = re.search(r"^networks=default:ip4=(172\.16\.28\.\d+)$", status, re.M)
    assert m, status
    return m.group(1)


def _fetch(ip: str, port: int) -> str:
    try:
        with socket.create_connection((ip, port), timeout=2) as s:
            return s.recv(100).decode().strip()
    except OSError:
        return ""


def test_killed_pod_then_gc_leaves_nothing(env: Rkt, aci: Path) -> None:
    """Three rounds: `rkt gc` right after the kill races the unit's ExecStopPost (gc renames
    the pod dir under it); whichever releases the networks, both must see the records."""
    before = census()
    for _ in range(3):
        uf = env.uuid_file()
        env("run", INSECURE, "--detach", f"--uuid-file-save={uf}", str(aci), "--exec",
            "/bin/sleep", "--", "600")
        uuid = uf.read_text().strip()
        assert census() != before
        run("systemctl", "kill", "--signal=SIGKILL", f"rkt-{uuid}.service")
        env("status", "--wait=30s", uuid)
        env("gc", "--grace-period=0s")
        assert census() == before


def test_gc_after_a_simulated_reboot_releases_the_leases(env: Rkt, web: Path) -> None:
    """rkt#2265: after a crash of the whole machine the kernel's part is gone (namespace,
    veth, iptables rules) but the disk keeps the pod's records and host-local's lease files;
    rkt's gc then said `skipping stage1 GC` and the addresses were lost. Here the disk state a
    reboot leaves is made exactly: a pod runs (with a forwarded port), its records and leases
    are saved, it is stopped (the kernel state goes), and the saved files are put back."""
    before = census()
    uf = env.uuid_file()
    env("run", INSECURE, "--detach", f"--uuid-file-save={uf}", "--port=http:8082", str(web))
    uuid = uf.read_text().strip()
    pod = env.data / "pods" / "run" / uuid
    saved = {p: p.read_bytes() for p in [pod / "netns", *(pod / "net").glob("*.json"),
                                         *Path("/var/lib/cni/networks").glob("*/*")]
             if p.is_file() and p.name != "lock"}
    leases = [p for p in saved if p.parent.parent == Path("/var/lib/cni/networks")
              and re.fullmatch(r"[\d.]+", p.name)]
    assert len(leases) == 1 and uuid in leases[0].read_text(), saved
    assert (pod / "net" / "portfwd.json") in saved
    env("stop", uuid)
    env("status", "--wait=30s", uuid)
    assert wait_for(lambda: census() == before, 10)
    for p, data in saved.items():  # the disk as the reboot left it
        p.write_bytes(data)
    assert not Path(saved[pod / "netns"].decode().strip()).exists()
    assert census() != before  # the lease
    out = env("gc", "--grace-period=0s")
    assert "skipping" not in out.stdout + out.stderr
    assert census() == before
    assert not (env.data / "pods" / "exited-garbage" / uuid).exists()


def test_default_restricted_reaches_only_the_host(env: Rkt, aci: Path, world: str) -> None:
    before = census()
    host = _listener("0.0.0.0", 7002)
    try:
        cp = _pod_sh(env, aci, "ip -4 -o addr show eth0; ip route; "
                     "echo r | nc -w 2 172.31.0.1 7002; "
                     f"echo r | nc -w 2 {world} 7000 || echo world-unreachable",
                     "--net=default-restricted")
    finally:
        _stop(host)
    assert re.search(r"eth0\s+inet 172\.31\.\d+\.\d+/16", cp.stdout), cp.stdout
    assert "default via" not in cp.stdout
    assert "pong" in cp.stdout and "world-unreachable" in cp.stdout, cp.stdout
    assert census() == before


def _bridge_conf(env: Rkt, dns: bool = False) -> None:
    d = env.local_config / "net.d"
    d.mkdir(parents=True, exist_ok=True)
    conf = {"cniVersion": "0.4.0", "name": "br-test", "type": "bridge", "bridge": BRIDGE,
            "isGateway": True, "ipMasq": True,
            "ipam": {"type": "host-local", "subnet": "10.99.0.0/24"}}
    if dns:
        conf["dns"] = {"nameservers": ["10.99.0.53"], "search": ["pods.example"]}
    (d / "10-br-test.conf").write_text(json.dumps(conf))


def test_named_bridge_network_with_fixed_ip_and_two_networks(env: Rkt, aci: Path) -> None:
    _bridge_conf(env)
    run("ip", "link", "del", BRIDGE, check=False)
    before = census()
    cp = _pod_sh(env, aci, "ip -4 -o addr show", "--net=br-test:IP=10.99.0.50")
    assert re.search(r"eth0\s+inet 10\.99\.0\.50/24", cp.stdout), cp.stdout
    # both: ordered by conf file name, 10-br-test.conf before the built-in 99-default.conf
    cp = _pod_sh(env, aci, "ip -4 -o addr show", "--net=default,br-test")
    assert re.search(r"eth0\s+inet 10\.99\.0\.\d+/24", cp.stdout), cp.stdout
    assert re.search(r"eth1\s+inet 172\.16\.28\.\d+/24", cp.stdout), cp.stdout
    after = census()
    after["links"] = [ln for ln in after["links"] if ln != BRIDGE]  # type: ignore[union-attr]
    assert after == before  # the bridge stays, as CNI's bridge plugin leaves it


def test_failed_add_halfway_through_two_networks_undoes_the_first(env: Rkt, aci: Path) -> None:
    _bridge_conf(env)
    before = census()
    pods_before = {p["name"] for p in json.loads(env("list", "--format=json").stdout)}
    cp = env("run", INSECURE, "--net=default,br-test:IP=10.200.0.5", str(aci), check=False)
    assert cp.returncode == 254, cp
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and "br-test" in lines[0] and "10.200.0.5" in lines[0], cp.stderr
    after = census()
    after["links"] = [ln for ln in after["links"] if ln != BRIDGE]  # type: ignore[union-attr]
    before["links"] = [ln for ln in before["links"] if ln != BRIDGE]  # type: ignore[union-attr]
    assert after == before
    pods_after = {p["name"] for p in json.loads(env("list", "--format=json").stdout)}
    assert pods_after == pods_before  # no pod left behind


def _pods(env: Rkt) -> list[str]:
    """What is in the pods' phase directories (which the first run of a data dir makes)."""
    return [f for f in env.pod_files() if "/" in f]


def test_bad_networks_are_refused_before_anything(env: Rkt, aci: Path) -> None:
    files = _pods(env)
    before = census()
    for flags, needle in (
            (("--net=nosuch,other",), "networks not found: nosuch, other"),
            (("--net=",), "netname must not be empty"),
            (("--net=default,default",), 'found duplicate netname "default"'),
            (("--net=host:IP=1.2.3.4",), 'special netname "host"')):
        cp = env("run", INSECURE, *flags, str(aci), check=False)
        assert cp.returncode == 254, (flags, cp)
        assert len(cp.stderr.splitlines()) == 1 and needle in cp.stderr, (flags, cp.stderr)
    d = env.local_config / "net.d"
    d.mkdir(parents=True, exist_ok=True)
    (d / "20-broken.conf").write_text("{ not json")
    try:
        cp = env("run", INSECURE, str(aci), check=False)
        assert cp.returncode == 254 and "20-broken.conf" in cp.stderr, cp
        (d / "20-broken.conf").write_text(json.dumps({"name": "np", "type": "nosuchplugin"}))
        cp = env("run", INSECURE, "--net=np", str(aci), check=False)
        assert cp.returncode == 254 and 'CNI plugin "nosuchplugin" not found' in cp.stderr, cp
    finally:
        (d / "20-broken.conf").unlink()
    assert _pods(env) == files
    assert census() == before


def test_dns_and_hosts_files(env: Rkt, aci: Path) -> None:
    cat = ("cat /etc/resolv.conf 2>/dev/null; echo ---; cat /etc/hosts; echo ---; "
           "cat /etc/hostname")
    cp = _pod_sh(env, aci, cat, "--dns=10.0.0.53,10.0.0.54", "--dns-search=a.example",
                 "--dns-opt=ndots:2", "--dns-domain=example", "--hostname=web1",
                 "--hosts-entry=128.66.0.99=host1,128.66.0.99=host3")
    resolv, hosts, hostname = cp.stdout.split("---\n")
    assert resolv == ("# Generated by rkt run\n\nsearch a.example\nnameserver 10.0.0.53\n"
                      "nameserver 10.0.0.54\noptions ndots:2\ndomain example\n")
    assert "\n# Added by rkt run --hosts-entry\n128.66.0.99 host1 host3\n" in hosts
    assert re.search(r"^127\.0\.0\.1 localhost .* web1$", hosts, re.M), hosts
    assert hostname == "web1\n"
    cp = _pod_sh(env, aci, cat, "--dns=host", "--hosts-entry=host")
    resolv, hosts, _ = cp.stdout.split("---\n")
    host_resolv = Path("/etc/resolv.conf")
    assert resolv == (host_resolv.read_text() if host_resolv.exists() else "")
    assert hosts == Path("/etc/hosts").read_text()
    # no flags: the fallback hosts file with the pod's hostname, no resolv.conf (ptp has no DNS)
    cp = _pod_sh(env, aci, cat)
    resolv, hosts, hostname = cp.stdout.split("---\n")
    assert resolv == "" and hostname.startswith("rkt-")
    assert f" {hostname.strip()}\n" in hosts and hosts.startswith("# This is the default rkt")
    # a network's DNS, unless --dns=none
    _bridge_conf(env, dns=True)
    cp = _pod_sh(env, aci, "cat /etc/resolv.conf", "--net=br-test")
    assert cp.stdout == ("# Generated by rkt from network br-test\n\nsearch pods.example\n"
                         "nameserver 10.99.0.53\n")
    cp = _pod_sh(env, aci, "cat /etc/resolv.conf 2>&1 || true", "--net=br-test", "--dns=none")
    assert "10.99.0.53" not in cp.stdout
    for flags, needle in ((("--dns=host", "--dns=8.8.8.8"), "no other --dns options allowed"),
                          (("--dns=none", "--dns-search=x"), "Cannot call --dns-opt"),
                          (("--dns=nope",), "Invalid IP passed to --dns: nope"),
                          (("--hosts-entry=1.2.3.4",), "Did not understand --hosts-entry")):
        cp = env("run", INSECURE, *flags, str(aci), check=False)
        assert cp.returncode == 254 and needle in cp.stderr, (flags, cp.stderr)


def test_twenty_concurrent_pods_get_distinct_addresses(env: Rkt, aci: Path) -> None:
    before = census()
    env("fetch", INSECURE, str(aci))

    def one(_i: int) -> str:
        cp = _pod_sh(env, aci, "ip -4 -o addr show eth0", "--pull-policy=never")
        m = re.search(r"inet (172\.16\.28\.\d+)/", cp.stdout)
        assert m, cp.stdout
        return m.group(1)

    with ThreadPoolExecutor(max_workers=20) as pool:
        ips = list(pool.map(one, range(20)))
    assert len(set(ips)) == 20, ips
    assert census() == before


def test_none_and_host(env: Rkt, aci: Path) -> None:
    cp = _pod_sh(env, aci, "ip -o link | wc -l; ip -4 -o addr show", "--net=none")
    assert cp.stdout.splitlines()[0].strip() == "1" and "inet 127.0.0.1/8" in cp.stdout
    host_links = len(run("ip", "-o", "link").stdout.splitlines())
    cp = _pod_sh(env, aci, "ip -o link | wc -l", "--net=host")
    assert int(cp.stdout.strip()) == host_links
    assert "NETWORKS" in env("list").stdout



PORTS = [{"name": "http", "protocol": "tcp", "port": 80},
         {"name": "echo-udp", "protocol": "udp", "port": 7}]


@pytest.fixture(scope="module")
def web(env: Rkt) -> Path:
    """An image declaring ports (as a Docker EXPOSE becomes one): it answers on TCP 80."""
    return build_aci(env.work / "web.aci", name="example.com/web", version="1.0",
                     exec_=("/bin/sh", "-c", "while true; do echo hello-web | nc -l -p 80; done"),
                     app_extra={"ports": PORTS})


def _connect(ip: str, port: int, netns: str | None = None, source: str | None = None) -> str:
    """What a TCP client gets from ip:port, from the bed or from another namespace."""
    code = ("import socket,sys\n"
            "try:\n"
            f"    s=socket.create_connection(({ip!r},{port}),timeout=2"
            f"{f', source_address=({source!r},0)' if source else ''})\n"
            "    print(s.recv(100).decode().strip())\n"
            "except OSError as e: print('error', e)\n")
    pre = ["ip", "netns", "exec", netns] if netns else []
    return run(*pre, "python3", "-c", code).stdout.strip()


def test_port_forwarding_from_outside_from_the_host_and_from_loopback(
        env: Rkt, web: Path, world: str) -> None:
    before = census()
    uf = env.uuid_file()
    env("run", INSECURE, "--detach", f"--uuid-file-save={uf}", "--port=http:8080", str(web))
    uuid = uf.read_text().strip()
    try:
        nat = run("iptables", "-t", "nat", "-S").stdout
        assert f"-N RKT-PFWD-DNAT-{uuid[:8]}" in nat and f"-N RKT-PFWD-SNAT-{uuid[:8]}" in nat
        assert f"-A PREROUTING -m addrtype --dst-type LOCAL -j RKT-PFWD-DNAT-{uuid[:8]}" in nat
        assert re.search(rf"-A RKT-PFWD-DNAT-{uuid[:8]} -p tcp -m tcp --dport 8080 -j DNAT "
                         r"--to-destination 172\.16\.28\.\d+:80", nat), nat
        raw = run("iptables", "-t", "raw", "-S").stdout
        assert re.search(rf"-A PREROUTING -d 127\.0\.0\.0/8 -i veth\w+ -m comment --comment "
                         rf"rkt-{uuid}-no-localnet-was0 -j DROP", raw), raw
        # another machine (the world namespace) → the bed's address on its link
        assert wait_for(lambda: _connect("203.0.113.1", 8080, netns="rkttestworld")
                        == "hello-web", 15)
        # the host itself, to its own non-loopback address, and to 127.0.0.1 (route_localnet)
        assert wait_for(lambda: _connect("203.0.113.1", 8080) == "hello-web", 10)
        assert wait_for(lambda: _connect("127.0.0.1", 8080) == "hello-web", 10)
        # a second pod cannot take the same host port; nothing of it is left
        files = env.pod_files()
        cp = env("run", INSECURE, "--port=http:8080", str(web), check=False)
        assert cp.returncode == 254, cp
        assert "host port tcp 0.0.0.0:8080 is forwarded already" in cp.stderr, cp.stderr
        assert len(cp.stderr.strip().splitlines()) == 1, cp.stderr
        assert env.pod_files() == files
    finally:
        env("stop", uuid)
        env("status", "--wait=30s", uuid)
    assert wait_for(lambda: census() == before, 10), (census(), before)
    assert _connect("127.0.0.1", 8080).startswith("error")


def test_port_forward_to_a_host_ip_and_after_a_crash_gc_removes_the_rules(
        env: Rkt, web: Path) -> None:
    before = census()
    uf = env.uuid_file()
    env("run", INSECURE, "--detach", f"--uuid-file-save={uf}", "--port=http:203.0.113.1:8081",
        str(web))
    uuid = uf.read_text().strip()
    assert wait_for(lambda: _connect("203.0.113.1", 8081) == "hello-web", 15)
    assert _connect("127.0.0.1", 8081).startswith("error")  # only that address forwards
    run("systemctl", "kill", "--signal=SIGKILL", f"rkt-{uuid}.service")
    env("status", "--wait=30s", uuid)
    env("gc", "--grace-period=0s")
    assert census() == before


def test_bad_ports_are_refused_with_nothing_left(env: Rkt, web: Path, aci: Path) -> None:
    before, files = census(), _pods(env)
    two = build_aci(env.work / "web2.aci", name="example.com/web2", version="1.0",
                    exec_=("/bin/true",), app_extra={"ports": PORTS[:1]})
    cases = [
        (["--port=nosuch:8080", str(web)], 'no app of the pod declares a port named "nosuch"'),
        (["--port=http:8080", str(web), str(two)], 'port name "http" is declared by several'),
        (["--port=http:8080", "--port=http:8080", str(web)],
         "tcp 0.0.0.0:8080 is already mapped to pod port 80"),
        (["--net=host", "--port=http:8080", str(web)],
         "--port flag does not work with 'host' networking"),
        (["--net=none", "--port=http:8080", str(web)],
         "--port flag does not work with 'none' networking"),
        (["--port=http", str(web)], '"http" is not in name:[ip:]port format'),
        (["--port=http:99999", str(web)], '"99999" is not a valid port number'),
        (["--port=http:1.2.3:80", str(web)], '"1.2.3" is not a valid IP'),
        (["--port=http:10.9.9.9:8080", str(web)],
         "--port host IP 10.9.9.9 is not an address of this machine"),
    ]
    taken = _listener("0.0.0.0", 8090)
    try:
        cases.append((["--port=http:8090", str(web)],
                      "host port tcp 0.0.0.0:8090 is in use on this machine"))
        for flags, needle in cases:
            cp = env("run", INSECURE, *flags, check=False)
            assert cp.returncode == 254 and needle in cp.stderr, (flags, cp.stderr)
            assert len(cp.stderr.strip().splitlines()) == 1, (flags, cp.stderr)
            assert "Traceback" not in cp.stderr
    finally:
        _stop(taken)
    assert _pods(env) == files
    # rkt prepare keeps the forwards in the pod manifest; run-prepared without a pod network
    # refuses them and the pod stays prepared
    uuid = env("prepare", INSECURE, "--quiet", "--port=http:8080", str(web)).stdout.strip()
    manifest = json.loads((env.data / "pods" / "prepared" / uuid / "pod").read_text())
    assert manifest["ports"] == [{"name": "http", "hostPort": 8080}]
    cp = env("run-prepared", "--net=host", uuid, check=False)
    assert cp.returncode == 254 and "--port flag does not work with 'host' networking" in \
        cp.stderr, cp
    assert (env.data / "pods" / "prepared" / uuid).is_dir()
    env("rm", uuid)
    assert census() == before


@pytest.fixture(scope="module")
def echo_sa(env: Rkt) -> Path:
    """An image whose app is a socket-activated echo server (rkt's echo-socket-activated):
    a static C program serving the socket on fd 3; it fails at once without one."""
    binary = env.work / "echo-sa"
    run("gcc", "-static", "-O2", "-o", str(binary),
        str(Path(__file__).parent.parent / "helpers" / "echo_socket_activated.c"))
    return build_aci(env.work / "echo-sa.aci", name="example.com/echo-sa", version="1.0",
                     exec_=("/echo-socket-activated",),
                     files={"echo-socket-activated": (binary.read_bytes(), 0o755)},
                     app_extra={"ports": [{"name": "test-port", "protocol": "tcp", "port": 80,
                                           "socketActivated": True}]})


def _echo(ip: str, port: int, line: str = "HELO") -> str:
    try:
        with socket.create_connection((ip, port), timeout=5) as s:
            s.sendall(f"{line}\n".encode())
            return s.recv(100).decode()
    except OSError as e:
        return f"error {e}"


def test_socket_activated_port_in_the_pod(env: Rkt, echo_sa: Path) -> None:
    """The pod's systemd listens for the app (<app>.socket) and hands it the socket; a --port
    forward reaches it."""
    before = census()
    uf = env.uuid_file()
    env("run", INSECURE, "--detach", f"--uuid-file-save={uf}", "--port=test-port:8085",
        str(echo_sa))
    uuid = uf.read_text().strip()
    try:
        assert wait_for(lambda: _echo("127.0.0.1", 8085) == "HELO\n", 15), \
            _echo("127.0.0.1", 8085)
        # the pod's systemd on its private socket (the pod runs no D-Bus daemon)
        leader = run("machinectl", "show", "-p", "Leader", "--value", f"rkt-{uuid}").stdout
        cp = run("nsenter", f"--target={leader.strip()}", "--mount", "--pid", "--", "systemctl",
                 "show", "-p", "Listen", "-p", "ActiveState", "echo-sa.socket")
        assert "Listen=[::]:80 (Stream)" in cp.stdout and "ActiveState=active" in cp.stdout, cp
    finally:
        env("stop", uuid)
        env("status", "--wait=30s", uuid)
    assert wait_for(lambda: census() == before, 10), (census(), before)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_host_socket_unit_activates_a_pod(env: Rkt, echo_sa: Path) -> None:
    """rkt's socket_activation functional test: a host .socket unit whose service is `rkt run
    --port=test-port:PORT`; the first connection starts the pod, which serves the host's own
    listening socket. Stopping the units leaves nothing of the pod's network behind."""
    env("fetch", INSECURE, str(echo_sa))
    before = census()
    port = _free_port()
    name = f"rkt-testing-socket-activation-{port}"
    units = Path("/run/systemd/system")
    service, sock = units / f"{name}.service", units / f"{name}.socket"
    rkt = " ".join(env.argv("run", INSECURE, "--pull-policy=never", f"--port=test-port:{port}",
                            str(echo_sa)))
    service.write_text(f"[Unit]\nDescription=Socket-activated echo server\n\n"
                       f"[Service]\nExecStart={rkt}\n")
    sock.write_text(f"[Unit]\nDescription=Socket-activated echo server socket\n\n"
                    f"[Socket]\nListenStream={port}\n")
    try:
        run("systemctl", "daemon-reload")
        run("systemctl", "start", sock.name)
        # over IPv4 on purpose: a forward of the port would divert it away from the socket
        assert _echo("127.0.0.1", port) == "HELO\n"
        assert run("systemctl", "is-active", service.name, check=False).stdout.strip() == "active"
        assert _echo("127.0.0.1", port, "again") == "again\n"
        machines = run("machinectl", "list", "--no-legend").stdout
        assert "rkt-" in machines, machines
        assert "RKT-PFWD" not in run("iptables", "-t", "nat", "-S").stdout
    finally:
        run("systemctl", "stop", sock.name, service.name, check=False)
        sock.unlink(missing_ok=True)
        service.unlink(missing_ok=True)
        run("systemctl", "daemon-reload")
    assert wait_for(lambda: census() == before, 15), (census(), before)


def test_route_localnet_does_not_open_the_hosts_loopback_to_the_pod(env: Rkt, web: Path) -> None:
    """--port sets route_localnet=1 on the host side of the pod's veth (so 127.0.0.1 on the
    host reaches the pod). Alone, that lets whoever is root in the pod's network namespace
    (raw sockets: CAP_NET_RAW is in the default set) send to the host's 127.0.0.1 through the
    veth and reach services bound to loopback only (kube-proxy's CVE-2020-8558; one way is
    enough for UDP). Here the pod's namespace sends so, its lo address dropped: the host's
    loopback-only listener must receive nothing; it does receive the host's own datagram."""
    code = ("import socket\n"
            "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 7009))\n"
            "print('ready', flush=True)\n"
            "while True: print(s.recv(100).decode().strip(), flush=True)\n")
    local_only = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE, text=True)
    assert local_only.stdout is not None and local_only.stdout.readline().strip() == "ready"
    uf = env.uuid_file()
    env("run", INSECURE, "--detach", f"--uuid-file-save={uf}", "--port=http:8084", str(web))
    uuid = uf.read_text().strip()
    try:
        leader = run("machinectl", "show", "-p", "Leader", "--value", f"rkt-{uuid}").stdout
        pod_ns = ["nsenter", f"--target={leader.strip()}", "--net", "--"]
        run(*pod_ns, "ip", "addr", "del", "127.0.0.1/8", "dev", "lo")
        assert "dev eth0" in run(*pod_ns, "ip", "route", "get", "127.0.0.1").stdout
        send = ("import socket\n"
                "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "for _ in range(3): s.sendto(b'escaped\\n', ('127.0.0.1', 7009))\n")
        run(*pod_ns, "python3", "-c", send)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the listener works
            s.sendto(b"from-the-host\n", ("127.0.0.1", 7009))
        time.sleep(0.5)
    finally:
        got = _stop(local_only)
        env("stop", uuid)
        env("status", "--wait=30s", uuid)
    assert "from-the-host" in got
    assert "escaped" not in got, got


def test_a_bridge_gets_its_route_localnet_back_when_its_last_forwarding_pod_ends(
        env: Rkt, web: Path) -> None:
    """A bridge outlives its pods: route_localnet=1 left on it without the guard would open
    the machine's loopback to every later pod on it. Two pods forward through it; the flag
    goes back to 0 with the second one, and the guards with each."""
    _bridge_conf(env)
    flag = Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet")
    uuids = []
    for port in (8091, 8092):
        uf = env.uuid_file()
        env("run", INSECURE, "--detach", "--net=br-test", f"--uuid-file-save={uf}",
            f"--port=http:{port}", str(web))
        uuids.append(uf.read_text().strip())
        assert flag.read_text().strip() == "1"
    assert wait_for(lambda: _connect("127.0.0.1", 8092) == "hello-web", 15)
    raw = run("iptables", "-t", "raw", "-S").stdout
    assert raw.count(f"-i {BRIDGE} ") == 2 and raw.count("-no-localnet-was0") == 2, raw
    env("stop", uuids[0])
    env("status", "--wait=30s", uuids[0])
    assert wait_for(lambda: run("iptables", "-t", "raw", "-S").stdout.count(f"-i {BRIDGE} ")
                    == 1, 10)
    assert flag.read_text().strip() == "1"  # the other pod still forwards through it
    env("stop", uuids[1])
    env("status", "--wait=30s", uuids[1])
    assert wait_for(lambda: f"-i {BRIDGE} " not in run("iptables", "-t", "raw", "-S").stdout,
                    10)
    assert flag.read_text().strip() == "0"
