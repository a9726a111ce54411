"""The test bed's pure helpers (tests/testbed.py is a script, not a package: load it by path)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "testbed.py"
    spec = importlib.util.spec_from_file_location("testbed", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("testbed", module)
    spec.loader.exec_module(module)
    return module


tb = _load()


def test_units_to_mask_keeps_what_a_booted_host_needs() -> None:
    enabled = [
        "e2scrub_reap.service", "getty@tty1.service", "postgresql.service",
        "systemd-pstore.service", "systemd-timesyncd.service", "machines.target",
        "remote-fs.target", "apt-daily.timer", "dbus-org.freedesktop.timesync1.service",
        "foo@bar.service",
    ]  # fmt: skip
    assert tb.units_to_mask(enabled) == [
        "apt-daily.timer", "e2scrub_reap.service", "foo@.service", "nftables.service",
        "postgresql.service", "systemd-tmpfiles-clean.timer",
    ]  # fmt: skip


def test_enabled_units_reads_wants_dirs(tmp_path: Path) -> None:
    (tmp_path / "multi-user.target.wants").mkdir()
    (tmp_path / "multi-user.target.wants/a.service").symlink_to("/lib/systemd/system/a.service")
    (tmp_path / "sockets.target.requires").mkdir()
    (tmp_path / "sockets.target.requires/b.socket").symlink_to("/nowhere")
    (tmp_path / "alias.service").symlink_to("/lib/systemd/system/a.service")
    assert tb.enabled_units(tmp_path) == ["a.service", "b.socket"]


def test_mask_layer_needs_a_real_machine_id() -> None:
    files = tb.mask_layer_files("bed", "0123456789abcdef0123456789abcdef")
    assert files["etc/machine-id"] == "0123456789abcdef0123456789abcdef\n"
    assert files["etc/hostname"] == "bed\n"
    assert "bed" in files["etc/hosts"]
    with pytest.raises(ValueError):
        tb.mask_layer_files("bed", "")


@pytest.mark.parametrize("name", ["", "a/b", "..", "-x", "x" * 65, "a b"])
def test_bad_names(name: str) -> None:
    with pytest.raises(tb.TestbedError):
        tb.check_name(name)


def test_exec_argv_passes_args_literally_and_keeps_signal_deaths() -> None:
    argv = tb.exec_argv(42, "u.service", ["printf", "${X}|$Y|$$"], {"K": "v"}, "/repo")
    assert argv[:4] == ["nsenter", "--target=42", "--all", "--"]
    assert "--pipe" in argv and "--wait" in argv and "--working-directory=/repo" in argv
    assert "--setenv=K=v" in argv and "--unit=u.service" in argv
    assert argv[4:6] == ["/bin/sh", "-c"] and argv[7:10] == ["testbed-exec", "u.service",
                                                             "/run/u.service.rc"]
    cmd = argv[argv.index("--", 4) + 1 :]
    assert cmd == ["/bin/sh", "-c", '"$$@"; rc=$$?; echo $$rc > /run/u.service.rc; exit $$rc',
                   "testbed", "printf", "$${X}|$$Y|$$$$"]


def test_parse_setenv() -> None:
    assert tb.parse_setenv(["A=1", "B", "C=x=y"], {"B": "2"}) == {"A": "1", "B": "2", "C": "x=y"}
    with pytest.raises(tb.TestbedError):
        tb.parse_setenv(["MISSING"], {})
    with pytest.raises(tb.TestbedError):
        tb.parse_setenv(["1X=2"], {})


def test_small_parsers() -> None:
    assert tb.parse_nspid("Name:\tsystemd\nNSpid:\t4868\t1\n") == [4868, 1]
    assert tb.exit_status(-9) == 137 and tb.exit_status(3) == 3
    assert tb.unit_template("getty@tty1.service") == "getty@.service"
    assert tb.console_tail("\x1b[0;32m  OK  \x1b[0m one\r\r\n\r\ntwo\r\n", 5) == "  OK   one\ntwo"
    mountinfo = "30 1 0:5 / /r/.testbed/x/a\\040b rw - tmpfs t rw\n31 1 0:5 / /r/.testbedx rw\n"
    assert tb.mountpoints_under(mountinfo, Path("/r/.testbed/x")) == ["/r/.testbed/x/a b"]


def test_cli_splits_the_command_at_double_dash() -> None:
    args, cmd = tb.parse_args(["run", "--name", "n", "--setenv", "A=1", "--", "ls", "--name"])
    assert (args.verb, args.name, args.setenv, cmd) == ("run", "n", ["A=1"], ["ls", "--name"])
    with pytest.raises(SystemExit):
        tb.parse_args(["run"])


def test_untraversable_ancestors_get_search_bits_in_the_bed() -> None:
    def stat_of(p: str) -> os.stat_result:
        mode, uid = {"/home": (0o40755, 0), "/home/u": (0o40700, 1000),
                     "/home/u/src": (0o40750, 1000), "/srv": (0o40775, 7),
                     "/srv/a": (0o42711, 0)}.get(p, (0o40755, 0))
        return os.stat_result((mode, 0, 0, 0, uid, uid, 0, 0, 0, 0))

    got = tb.untraversable_ancestors(
        ["/home/u/src/repo", "/srv/a/b", "/home/u/src/repo/.tb", "/opt/x"], stat_of)
    # /home/u and /home/u/src widened, the rest of their mode and owner kept; /home above them
    # repeated unchanged; /srv, /srv/a (setgid kept), /opt and the bound paths left alone;
    # outermost first, the order they are made in
    assert got == {"home": (0o755, 0, 0), "home/u": (0o711, 1000, 1000),
                   "home/u/src": (0o751, 1000, 1000)}
    assert list(got) == ["home", "home/u", "home/u/src"]
