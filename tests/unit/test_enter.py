"""rkt enter: pure argv building of the stage1 enter entrypoint and the CLI's app choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from rktd_less.cli.enter import app_name
from rktd_less.errors import NotFound, PodError, UsageError
from rktd_less.stage1 import enter
from rktd_less.stage1.confine import Relax, service_lines
from rktd_less.stage1.units import AppUnit, app_service


def _unit(uid: int = 1000) -> str:
    return app_service(AppUnit(name="web", image_name="example.com/web", argv=("/bin/web",),
                               uid=uid, gid=100, supplementary_gids=(5,), working_dir="/srv",
                               read_only_rootfs=True, interactive=False,
                               supports_notify=False,
                               confinement=tuple(service_lines("web", [], uid, Relax()))))


def test_parse_args_contract() -> None:
    a = enter.parse_args(["--pid=42", "--appname=web", "--", "sh", "-c", "exit 5"])
    assert a == enter.EnterArgs(pid=42, app="web", cmd=("sh", "-c", "exit 5"))


@pytest.mark.parametrize("args", [
    ["--appname=web", "--", "sh"], ["--pid=x", "--appname=web", "--", "sh"],
    ["--pid=1", "--", "sh"], ["--pid=1", "--appname=web", "--"], ["--pid=1", "sh"],
])
def test_parse_args_rejects(args: list[str]) -> None:
    with pytest.raises(UsageError):
        enter.parse_args(args)


def test_service_properties_copy_confinement_not_io() -> None:
    props = enter.service_properties(_unit())
    assert "RootDirectory=/opt/stage2/web/rootfs" in props
    assert "User=1000" in props and "Group=100" in props
    assert "EnvironmentFile=/rkt/env/web" in props and "MountAPIVFS=yes" in props
    assert "NoNewPrivileges=yes" in props
    # every confinement setting of the app (rkt enter CVE-2019-10144/10145/10147)
    for line in service_lines("web", [], 1000, Relax()):
        assert line in props, line
    assert "SupplementaryGroups=5" in props and "WorkingDirectory=/srv" in props
    keys = {p.split("=", 1)[0] for p in props}
    assert not keys & {"ExecStart", "Type", "StandardOutput", "StandardInput", "Restart",
                       "SyslogIdentifier", "Description", "Wants", "After"}


def test_service_properties_keeps_future_filters() -> None:
    text = ("[Unit]\nDescription=x\n[Service]\nExecStart=/a\nCapabilityBoundingSet=CAP_CHOWN\n"
            "SystemCallFilter=@system-service\nSystemCallFilter=~@mount\n# comment\n")
    assert enter.service_properties(text) == [
        "CapabilityBoundingSet=CAP_CHOWN", "SystemCallFilter=@system-service",
        "SystemCallFilter=~@mount"]


def test_run_argv() -> None:
    fifos = enter.fifo_paths("abc")
    argv = enter.run_argv(7, enter.unit_name("abc"), ["User=1000"],
                          enter.pipe_properties(fifos), ["/bin/id", "-u"])
    assert argv[:8] == ["/usr/bin/nsenter", "--target=7", "--mount", "--uts", "--ipc", "--net",
                        "--pid", "--"]
    assert argv[8] == "/usr/bin/systemd-run"
    assert "--unit=rkt-enter-abc.service" in argv
    assert "StandardInput=file:/run/rkt-enter/abc/stdin" in argv
    assert "StandardOutput=file:/run/rkt-enter/abc/stdout" in argv
    assert "StandardError=file:/run/rkt-enter/abc/stderr" in argv
    assert "RemainAfterExit=yes" in argv and argv[argv.index("User=1000") - 1] == "-p"
    assert argv[-3:] == ["--", "/bin/id", "-u"]


def test_tty_properties() -> None:
    assert enter.tty_properties("/dev/pts/3") == [
        "StandardInput=tty", "StandardOutput=tty", "StandardError=tty", "TTYPath=/dev/pts/3"]


def test_show_and_cleanup_argv() -> None:
    assert enter.show_argv(7, "u.service")[8:11] == ["/usr/bin/systemctl", "show", "u.service"]
    assert enter.cleanup_argv(7, "u.service", True)[-2:] == ["reset-failed", "u.service"]
    assert enter.cleanup_argv(7, "u.service", False)[-2:] == ["stop", "u.service"]


@pytest.mark.parametrize(("text", "done", "code"), [
    ("ActiveState=active\nSubState=exited\nResult=success\nExecMainCode=1\nExecMainStatus=0\n",
     True, 0),
    ("ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainCode=1\n"
     "ExecMainStatus=5\n", True, 5),
    ("ActiveState=failed\nSubState=failed\nResult=signal\nExecMainCode=2\nExecMainStatus=9\n",
     True, 137),
    ("ActiveState=active\nSubState=running\nResult=success\nExecMainCode=0\n"
     "ExecMainStatus=0\n", False, 0),
])
def test_parse_show(text: str, done: bool, code: int) -> None:
    st = enter.parse_show(text)
    assert st.done is done and st.exit_code() == code


def test_resolve_cmd_uses_app_path(tmp_path: Path) -> None:
    (tmp_path / "opt/bin").mkdir(parents=True)
    (tmp_path / "opt/bin/tool").write_text("")
    env = 'AC_APP_NAME="web"\nPATH="/opt/bin:/bin"\n'
    assert enter.resolve_cmd(["tool", "x"], tmp_path, env) == ["/opt/bin/tool", "x"]
    assert enter.resolve_cmd(["/bin/sh"], tmp_path, env) == ["/bin/sh"]
    with pytest.raises(PodError, match="not found"):
        enter.resolve_cmd(["nope"], tmp_path, env)


def test_app_name_choice() -> None:
    assert app_name(["web"], "") == "web"
    assert app_name(["web", "db"], "db") == "db"
    with pytest.raises(UsageError, match=r'specify app using "rkt enter --app= \.\.\."'):
        app_name(["web", "db"], "")
    with pytest.raises(NotFound):
        app_name(["web"], "db")
    with pytest.raises(PodError):
        app_name([], "")
