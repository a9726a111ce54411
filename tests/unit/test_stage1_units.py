"""The nspawn stage1's unit files, env files and nspawn command line (pure)."""

import pytest

from rktd_less.stage1 import units
from rktd_less.stage1.nspawn import NspawnPlan, nspawn_argv, nspawn_env

APP = units.AppUnit(name="web", image_name="example.com/web",
                    argv=("/bin/sh", "-c", "echo $HOME 100%"), uid=1000, gid=100)


def test_exec_quoting_escapes_dollar_percent_and_quotes() -> None:
    assert units.exec_line(["/bin/echo", 'a "b"', "$X", "50%", "back\\slash"]) == (
        '"/bin/echo" "a \\"b\\"" "$$X" "50%%" "back\\\\slash"')


def test_app_service_has_root_identity_and_output() -> None:
    text = units.app_service(APP)
    assert "RootDirectory=/opt/stage2/web/rootfs" in text
    assert "SyslogIdentifier=web" in text
    assert "User=1000" in text and "Group=100" in text
    # no-new-privs and the rest of the confinement: tests/unit/test_stage1_confine.py
    assert 'ExecStart="/bin/sh" "-c" "echo $$HOME 100%%"' in text
    assert "StandardOutput=file:/rkt/iomux/web" in text
    assert "iomux@web.service" in text
    assert "Wants=reaper-web.service" in text


def test_interactive_app_uses_the_console() -> None:
    text = units.app_service(units.AppUnit(name="sh", image_name="x", argv=("/bin/sh",), uid=0,
                                           gid=0, interactive=True))
    assert "StandardInput=tty" in text and "TTYPath=/dev/console" in text
    assert "iomux" not in text


HANDLED = units.AppUnit(name="web", image_name="x", argv=("/bin/app",), uid=1000, gid=100,
                        supplementary_gids=(5,),
                        pre_start=("/bin/sh", "-c", "echo $HOME 5%"), post_stop=("/bin/post",))


def test_event_handlers_run_as_root_around_the_app() -> None:
    lines = units.app_service(HANDLED).splitlines()
    # "!": the handler ignores User=/Group=/SupplementaryGroups= (runs as root, as in rkt)
    # but keeps RootDirectory= and the service's stdio
    assert 'ExecStartPre=!"/bin/sh" "-c" "echo $$HOME 5%%"' in lines
    assert 'ExecStopPost=!"/bin/post"' in lines
    for needed in ("User=1000", "Group=100", "SupplementaryGroups=5",
                   "RootDirectory=/opt/stage2/web/rootfs", "StandardOutput=file:/rkt/iomux/web",
                   "StandardError=file:/rkt/iomux/web"):
        assert needed in lines, needed


def test_no_handler_lines_without_handlers() -> None:
    text = units.app_service(APP)
    assert "ExecStartPre" not in text and "ExecStopPost" not in text
    assert not any(".service.d/" in f for f in units.pod_units([APP]))


def test_only_pre_start_or_only_post_stop() -> None:
    pre = units.app_service(units.AppUnit(name="a", image_name="x", argv=("/a",), uid=0, gid=0,
                                          pre_start=("/p",)))
    assert 'ExecStartPre=!"/p"' in pre.splitlines() and "ExecStopPost" not in pre
    post = units.app_service(units.AppUnit(name="a", image_name="x", argv=("/a",), uid=0,
                                           gid=0, post_stop=("/q",)))
    assert 'ExecStopPost=!"/q"' in post.splitlines() and "ExecStartPre" not in post


def test_iomux_of_an_app_with_handlers_reads_writer_after_writer() -> None:
    files = units.pod_units([HANDLED])
    dropin = files["iomux@web.service.d/handlers.conf"]
    lines = dropin.splitlines()
    assert lines[0] == "[Service]" and "ExecStart=" in lines  # resets the template's ExecStart
    start = next(ln for ln in lines if ln.startswith("ExecStart=/bin/sh"))
    assert "/usr/bin/tee -p /dev/console < /rkt/iomux/web" in start
    assert "[ -e /rkt/iomux/web.done ] && exit 0" in start
    # an interactive app writes to the console itself: no FIFO, no iomux
    tty = units.AppUnit(name="web", image_name="x", argv=("/a",), uid=0, gid=0,
                        interactive=True, pre_start=("/p",))
    assert not any(".service.d/" in f for f in units.pod_units([tty]))
    assert 'ExecStartPre=!"/p"' in units.app_service(tty)


def test_default_target_wants_every_app() -> None:
    b = units.AppUnit(name="b", image_name="x", argv=("/x",), uid=0, gid=0)
    t = units.default_target([APP, b])
    assert "Wants=web.service b.service" in t and "After=web.service b.service" in t
    assert set(units.pod_units([APP, b])) == {"default.target", "web.service", "b.service",
                                             "reaper-web.service", "reaper-b.service",
                                             "supervisor-ready.service"}
    ready = units.supervisor_ready([APP, b])
    assert "Before=default.target" in ready and "After=web.service b.service" in ready


def test_env_file_escapes() -> None:
    assert units.env_file([("A", 'x"y'), ("B", "$HOME\\")]) == 'A="x\\"y"\nB="\\$HOME\\\\"\n'


def test_nspawn_argv_in_a_unit() -> None:
    argv = nspawn_argv(NspawnPlan(uuid="u-1", root="/p/stage1/rootfs", hostname="h"))
    assert argv[0] == "/usr/bin/systemd-nspawn"
    assert "--boot" in argv and "--keep-unit" in argv and "--register=yes" in argv
    assert "--machine=rkt-u-1" in argv and "--uuid=u-1" in argv
    assert "--console=read-only" in argv and "--bind-ro=/usr" in argv
    assert argv.index("--") < argv.index("systemd.firstboot=off")
    # the pod's journal lives in the host's /var/log/journal/<machine-id> (rkt #1528)
    assert "--link-journal=try-host" in argv


def test_nspawn_argv_without_systemd_keeps_cgroup_and_skips_journal_link() -> None:
    argv = nspawn_argv(NspawnPlan(uuid="u", root="/r", hostname="h", register=False,
                                  keep_unit=False, interactive=True, private_network=True))
    assert "--register=no" in argv and "--keep-unit" in argv
    assert "--link-journal=no" in argv and "--console=interactive" in argv
    assert "--private-network" in argv


def test_nspawn_env_forces_cgroup2() -> None:
    assert nspawn_env()["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] == "1"


def test_transient_unit_properties() -> None:
    import json
    from pathlib import Path

    from rktd_less.common.contract import stage1_unit
    from rktd_less.pod.launch import Launch, stage1_run_args, unit_properties

    manifest = json.loads(Path(__file__).resolve().parents[2].joinpath(
        "stage1-nspawn", "manifest.json").read_text())
    lx = Launch(uuid="u", poddir=Path("/d/pods/run/u"), entrypoint=Path("/t/rootfs/init"),
                args=stage1_run_args("u", debug=True, net="host", interactive=False,
                                     hostname=None), stage1_unit=stage1_unit(manifest),
                env=(("RKT_X", "1"),))
    assert lx.args == ("--debug", "--net=host", "u")
    props = {n: (s, v) for n, s, v in unit_properties(lx, description="d", add_ref=True,
                                                       pass_stdio=True, notify=False)}
    assert props["Slice"] == ("s", "machine.slice")
    assert props["Delegate"] == ("b", True)
    # as nspawn's own scope: no device of the machine but pseudo devices, ptys and tun
    assert props["DevicePolicy"] == ("s", "closed")
    assert props["DeviceAllow"] == ("a(ss)", [["/dev/net/tun", "rwm"], ["char-pts", "rw"]])
    assert props["Type"] == ("s", "exec")
    assert props["ExecStart"] == ("a(sasb)", [["/t/rootfs/init",
                                               ["/t/rootfs/init", "--debug", "--net=host", "u"],
                                               False]])
    assert props["StandardOutputFileDescriptor"] == ("h", 1)  # index into unix_fds
    assert props["WorkingDirectory"] == ("s", "/d/pods/run/u")
    # the stage1's environment first, then stage0's for the entrypoint
    assert props["Environment"] == ("as", ["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1", "RKT_X=1"])
    # a stage1 that asks for nothing gets a plain unit, and Type=exec even when detached
    bare = {n: v for n, _, v in unit_properties(
        Launch(uuid="u", poddir=Path("/d"), entrypoint=Path("/i"), args=("u",)),
        description="d", add_ref=False, pass_stdio=False, notify=True)}
    assert bare["Type"] == "exec" and "Delegate" not in bare and "DevicePolicy" not in bare
    detached = {n: v for n, _, v in unit_properties(lx, description="d", add_ref=False,
                                                    pass_stdio=False, notify=True)}
    assert detached["Type"] == "notify" and "AddRef" not in detached
    assert "StandardInputFileDescriptor" not in detached


def test_reaper_knows_the_app_rootfs_and_program() -> None:
    # as rkt's: to say why a program could not be executed (systemd's 203)
    lines = units.reaper_service(APP).splitlines()
    assert 'ExecStop=/reaper.sh "web" "/opt/stage2/web/rootfs" "/bin/sh"' in lines


def test_apps_and_reapers_stop_before_the_pod_s_systemd_goes_away() -> None:
    """A pod stopped from outside (halt/poweroff) stops each app, then its reaper, before
    shutdown.target: the reaper still reaches the pod's systemd and records what the stop made
    of the app (it read a still-running app as exit 0)."""
    app = units.app_service(APP).splitlines()
    assert "Conflicts=shutdown.target" in app and "Before=shutdown.target" in app
    assert any(ln.startswith("After=reaper-web.service") for ln in app)  # stops before it
    reaper = units.reaper_service(APP).splitlines()
    assert any(ln.startswith("Conflicts=") and "shutdown.target" in ln for ln in reaper)
    assert any(ln.startswith("Before=") and "shutdown.target" in ln for ln in reaper)


def test_stage1_unit_annotation_errors() -> None:
    from rktd_less.common.contract import UNIT_ANNOTATION, stage1_unit
    from rktd_less.errors import Stage1Error

    def with_props(value: str) -> dict[str, object]:
        return {"annotations": [{"name": UNIT_ANNOTATION, "value": value}]}

    with pytest.raises(Stage1Error, match='unit property "ExecStartPre", which stage0'):
        stage1_unit(with_props('{"ExecStartPre": "x"}'))
    with pytest.raises(Stage1Error, match='"Delegate" needs a value of D-Bus type b'):
        stage1_unit(with_props('{"Delegate": "yes"}'))
    with pytest.raises(Stage1Error, match="is not a JSON object"):
        stage1_unit(with_props("[1]"))
    assert stage1_unit({}).properties == () and not stage1_unit({}).notify_ready
