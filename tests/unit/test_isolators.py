"""appc isolators: values checked, rkt's flags turned into isolators, rkt's override rules."""

from __future__ import annotations

from fractions import Fraction

import pytest

from rktd_less.appc import isolators as iso
from rktd_less.appc.isolators import AppIsolatorFlags, IsolatorError


@pytest.mark.parametrize(("text", "value"), [
    ("50M", 50_000_000), ("123Mi", 123 * 2**20), ("1G", 10**9), ("500m", Fraction(1, 2)),
    ("1e3", 1000), ("2", 2), ("1.5Gi", 3 * 2**29)])
def test_quantities(text: str, value: Fraction) -> None:
    assert iso.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["lots", "", "5ZB", "1.2.3M"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(IsolatorError, match="error parsing"):
        iso.parse_quantity(text)


def test_capability_names_are_checked_and_normalized() -> None:
    assert iso.normalize(iso.CAPS_RETAIN, {"set": ["net_admin", "CAP_CHOWN"]}) == {
        "set": ["CAP_NET_ADMIN", "CAP_CHOWN"]}
    with pytest.raises(IsolatorError, match='unknown capability "CAP_FLY"'):
        iso.normalize(iso.CAPS_REMOVE, {"set": ["CAP_FLY"]})
    with pytest.raises(IsolatorError, match="set must be non-empty"):
        iso.normalize(iso.CAPS_REMOVE, {"set": []})


def test_default_caps_are_appcs_14() -> None:
    mask = sum(1 << iso.CAPABILITIES[c] for c in iso.DEFAULT_CAPS)
    assert len(iso.DEFAULT_CAPS) == 14
    assert f"{mask:016x}" == "00000000a80425fb"  # CapBnd rkt's apps had


def test_seccomp_flag() -> None:
    assert iso.seccomp_flag("mode=remove,errno=ENOTSUP,mkdir,@rkt/default-blacklist") == (
        iso.SECCOMP_REMOVE, {"set": ["mkdir", "@rkt/default-blacklist"], "errno": "ENOTSUP"})
    assert iso.seccomp_flag("mode=retain,@docker/default-whitelist")[0] == iso.SECCOMP_RETAIN


@pytest.mark.parametrize(("text", "message"), [
    ("chown,chmod", "invalid seccomp mode command-line override"),
    ("mode=keep,chown", "invalid seccomp mode command-line override"),
    ("mode=retain,foo=bar,chown", "invalid seccomp command-line override"),
    ("mode=retain", "set must be non-empty"),
    ("mode=retain,chownn", 'unknown syscall "chownn"'),
    ("mode=retain,@foo/bar", 'unknown seccomp group "@foo/bar"'),
    ("mode=retain,errno=EWHAT,chown", 'unknown errno "EWHAT"'),
])
def test_bad_seccomp_flags(text: str, message: str) -> None:
    with pytest.raises(IsolatorError, match=message):
        iso.seccomp_flag(text)


@pytest.mark.parametrize(("flags", "message"), [
    (AppIsolatorFlags(caps_retain="CAP_CHOWN", caps_remove="CAP_KILL"),
     "cannot use both --caps-retain and --caps-remove on the same image"),
    (AppIsolatorFlags(memory="lots"), "error parsing request"),
    (AppIsolatorFlags(memory="1k"), "memory limit of 1000 bytes too low"),
    (AppIsolatorFlags(cpu_shares="1"), "os/linux/cpu-shares must be between 2 and 262144, got 1"),
    (AppIsolatorFlags(cpu_shares="x"), 'parsing "x": invalid syntax'),
    (AppIsolatorFlags(oom_score_adj="1001"), "must be between -1000 and 1000, got 1001"),
    (AppIsolatorFlags(cpu="0"), "--cpu must be above 0"),
])
def test_bad_flags(flags: AppIsolatorFlags, message: str) -> None:
    with pytest.raises(IsolatorError, match=message):
        iso.from_flags(flags)


IMAGE = [
    {"name": iso.CAPS_RETAIN, "value": {"set": ["CAP_NET_ADMIN"]}},
    {"name": iso.SECCOMP_REMOVE, "value": {"set": ["mkdir"]}},
    {"name": iso.MEMORY, "value": {"limit": "1G"}},
    {"name": iso.CPU_SHARES, "value": 100},
    {"name": iso.NO_NEW_PRIVS, "value": True},
]


def test_no_flags_keep_the_images_isolators() -> None:
    assert iso.merge(IMAGE, AppIsolatorFlags()) == IMAGE


def test_cli_replaces_the_images_isolator_of_the_same_kind() -> None:
    out = iso.merge(IMAGE, AppIsolatorFlags(caps_remove="CAP_KILL", seccomp="mode=retain,read",
                                            cpu_shares="300", memory="2G"))
    names = [i["name"] for i in out]
    assert iso.CAPS_RETAIN not in names and iso.SECCOMP_REMOVE not in names
    assert {"name": iso.CAPS_REMOVE, "value": {"set": ["CAP_KILL"]}} in out
    assert [i["value"] for i in out if i["name"] == iso.CPU_SHARES] == [300]
    # --memory is appended, and the last one counts
    assert iso.last(out, iso.MEMORY) == {"name": iso.MEMORY,
                                         "value": {"request": "2G", "limit": "2G"}}
    assert {"name": iso.NO_NEW_PRIVS, "value": True} in out


def test_check_all_refuses_conflicting_image_isolators() -> None:
    with pytest.raises(IsolatorError, match="too many seccomp isolators"):
        iso.check_all([{"name": iso.SECCOMP_REMOVE, "value": {"set": ["mkdir"]}},
                       {"name": iso.SECCOMP_RETAIN, "value": {"set": ["read"]}}])
    with pytest.raises(IsolatorError, match="cannot use both"):
        iso.check_all([{"name": iso.CAPS_REMOVE, "value": {"set": ["CAP_KILL"]}},
                       {"name": iso.CAPS_RETAIN, "value": {"set": ["CAP_KILL"]}}])
    with pytest.raises(IsolatorError, match="must be true or false"):
        iso.check_all([{"name": iso.NO_NEW_PRIVS, "value": "yes"}])
    # an isolator rkt does not know is kept as it is
    assert iso.check_all([{"name": "example.com/x", "value": 1}]) == [
        {"name": "example.com/x", "value": 1}]
