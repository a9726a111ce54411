"""rkt's --net grammar, net.d loading (precedence, order, interfaces) and CNI results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rktd_less.errors import NetworkError, UsageError
from rktd_less.net import cni, conf, netlist


def test_no_flag_and_bare_flag_mean_default() -> None:
    assert netlist.parse([]).names == ("default",)
    assert netlist.parse(["default"]).contained


@pytest.mark.parametrize("values,message", [
    ([""], "netname must not be empty"),
    (["default,"], "netname must not be empty"),
    (["a,a"], 'found duplicate netname "a"'),
    (["a", "b,a"], 'found duplicate netname "a"'),
    (["host:IP=1.2.3.4"], 'arguments are not supported by special netname "host"'),
    (["all:X=1"], 'arguments are not supported by special netname "all"'),
    (["n:a:b"], 'network "n" provided with invalid arguments'),
])
def test_grammar_errors_are_rkts(values: list[str], message: str) -> None:
    with pytest.raises(UsageError) as e:
        netlist.parse(values)
    assert e.value.message == message


def test_lists_merge_and_keep_args() -> None:
    nl = netlist.parse(["a:IP=10.1.2.3;K=V", "b"])
    assert nl.names == ("a", "b")
    assert nl.args_of("a") == "IP=10.1.2.3;K=V"
    assert str(nl) == "a:IP=10.1.2.3;K=V,b"
    assert netlist.parse([str(nl)]) == nl  # what stage1 parses again


def test_host_wins_and_none_alone() -> None:
    assert netlist.parse(["default,host"]).host
    assert netlist.parse(["none"]).none
    assert not netlist.parse(["none"]).contained
    assert netlist.parse(["none,default"]).contained  # "none" is then a (missing) network


def _conf(d: Path, file: str, name: str, typ: str = "ptp", **extra: object) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / file).write_text(json.dumps({"name": name, "type": typ, **extra}))


def test_precedence_order_and_interfaces(tmp_path: Path) -> None:
    builtin, system, local = tmp_path / "s1", tmp_path / "sys", tmp_path / "local"
    _conf(builtin, "99-default.conf", "default", ipMasq=True)
    _conf(builtin, "99-default-restricted.conf", "default-restricted")
    _conf(local, "10-first.conf", "first", "bridge")
    _conf(local, "50-default.conf", "default", "bridge")  # overrides the built-in by name
    _conf(local, "60-first.conf", "first", "macvlan")  # same dir: the first file wins
    _conf(system, "20-sys.conf", "sys")
    (local / "notes.txt").write_text("not a conf")
    warnings: list[str] = []
    nets = conf.select(netlist.parse(["all"]), [builtin, system, local], warnings.append)
    assert [(n.conf.name, n.ifname, n.conf.type) for n in nets] == [
        ("first", "eth0", "bridge"), ("sys", "eth1", "ptp"), ("default", "eth2", "bridge"),
        ("default-restricted", "eth3", "ptp")]
    assert any('"first" network already defined, ignoring' in w for w in warnings)
    assert any('overriding "default" network' in w for w in warnings)
    picked = conf.select(netlist.parse(["default-restricted,first:IP=10.0.0.9"]),
                         [builtin, system, local], warnings.append)
    assert [(n.conf.name, n.ifname, n.args) for n in picked] == [
        ("first", "eth0", "IP=10.0.0.9"), ("default-restricted", "eth1", "")]


def test_unknown_and_malformed(tmp_path: Path) -> None:
    _conf(tmp_path, "99-default.conf", "default")
    with pytest.raises(NetworkError, match=r"^networks not found: a, b$"):
        conf.select(netlist.parse(["a,default,b"]), [tmp_path], lambda _w: None)
    (tmp_path / "10-bad.conf").write_text("{not json")
    with pytest.raises(NetworkError, match=r"10-bad\.conf\" is not valid JSON"):
        conf.select(netlist.parse(["default"]), [tmp_path], lambda _w: None)
    (tmp_path / "10-bad.conf").write_text('{"name": "x"}')
    with pytest.raises(NetworkError, match='has no "type"'):
        conf.load([tmp_path], lambda _w: None)
    (tmp_path / "10-bad.conf").write_text('{"name": "x", "type": "../../bin/sh"}')
    with pytest.raises(NetworkError, match="is not a plugin name"):
        conf.load([tmp_path], lambda _w: None)


def test_missing_plugin_names_the_search_path(tmp_path: Path) -> None:
    with pytest.raises(NetworkError) as e:
        conf.find_plugin("nosuch", [str(tmp_path)])
    assert e.value.message == f'CNI plugin "nosuch" not found in {tmp_path}'
    assert e.value.hint == "install containernetworking-plugins"


def test_results_of_every_spec_version() -> None:
    old = cni.parse_result({"cniVersion": "0.1.0",
                            "ip4": {"ip": "172.16.28.2/24", "gateway": "172.16.28.1"},
                            "dns": {"nameservers": ["10.0.0.53"], "search": ["a.example"]}})
    assert (old.ip, old.mask, old.gateway) == ("172.16.28.2", "255.255.255.0", "172.16.28.1")
    assert old.dns.nameservers == ("10.0.0.53",) and old.dns.search == ("a.example",)
    new = cni.parse_result({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0"}, {"name": "veth1"},
                       {"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "10.1.0.1/16", "interface": 0},
                {"address": "fd00::2/64", "interface": 2},
                {"address": "10.1.0.7/16", "gateway": "10.1.0.1", "interface": 2}],
        "dns": {}})
    assert (new.ip, new.mask, new.gateway) == ("10.1.0.7", "255.255.0.0", "10.1.0.1")
    assert not new.dns
    assert cni.parse_result({"cniVersion": "0.4.0"}).ip == ""


def test_plugin_errors_as_cni_reports_them() -> None:
    out = json.dumps({"code": 11, "msg": "failed to allocate", "details": "range full"})
    assert cni.plugin_error(out.encode(), b"", 1) == "failed to allocate; range full"
    assert cni.plugin_error(b"", b"line1\nboom\n", 1) == "boom"
    assert cni.plugin_error(b"", b"", 3) == "exit status 3"
    assert cni.has_prev_result("0.4.0") and cni.has_prev_result("1.0.0")
    assert not cni.has_prev_result("0.3.1")


def test_cni_args_ignore_unknown_first() -> None:
    assert cni.cni_args("") == ""
    assert cni.cni_args("IP=10.1.2.3") == "IgnoreUnknown=1;IP=10.1.2.3"
    assert cni.cni_args("IgnoreUnknown=0;IP=1.2.3.4") == "IgnoreUnknown=0;IP=1.2.3.4"
