"""Unit files the nspawn stage1 writes into the pod (pure; reference §2.4).

Each app is ``<app>.service`` of the pod's own systemd, chrooted with
``RootDirectory=/opt/stage2/<app>/rootfs``. ``reaper-<app>.service`` records the app's exit
status when the app stops and ends the pod (first failure, or when all apps are done).
Output goes through ``iomux@<app>.service``: a FIFO read by ``tee`` that copies the raw bytes to
the pod console (the caller's terminal) and into the pod journal under the app's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

UNIT_DIR = "etc/systemd/system"  # /usr is the host's, bind-mounted read-only


@dataclass(frozen=True)
class AppUnit:
    name: str
    image_name: str
    argv: tuple[str, ...]
    uid: int
    gid: int
    supplementary_gids: tuple[int, ...] = ()
    working_dir: str = "/"
    read_only_rootfs: bool = False
    interactive: bool = False  # the app's stdio is the pod console (a terminal)
    supports_notify: bool = False
    stdin_fifo: bool = False  # --interactive without a terminal: stdin from /rkt/iomux/<app>.stdin
    pre_start: tuple[str, ...] = ()  # appc eventHandlers "pre-start" exec, resolved
    post_stop: tuple[str, ...] = ()  # appc eventHandlers "post-stop" exec, resolved
    confinement: tuple[str, ...] = ()  # [Service] lines from stage1/confine.py
    # socket-activated ports: (tcp|udp, what Listen*= names: a port or an address:port)
    sockets: tuple[tuple[str, str], ...] = ()

    @property
    def has_handlers(self) -> bool:
        return bool(self.pre_start or self.post_stop)


def quote_arg(arg: str) -> str:
    """Quote one ExecStart argument: C-style escapes in double quotes; ``$`` and ``%`` doubled
    so neither environment variables nor unit specifiers are expanded."""
    out = arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    out = out.replace("$", "$$").replace("%", "%%")
    return f'"{out}"'


def exec_line(argv: Sequence[str]) -> str:
    return " ".join(quote_arg(a) for a in argv)


def _escape_value(value: str) -> str:
    return value.replace("%", "%%")


def default_target(apps: Sequence[AppUnit]) -> str:
    wants = " ".join(f"{a.name}.service" for a in apps)
    lines = [
        "[Unit]",
        "Description=rkt apps",
        "DefaultDependencies=no",
    ]
    # journald starts volatile; the flush moves the pod's journal to /var/log/journal/<machine-id>,
    # the host's directory bound in by nspawn --link-journal=try-host: it outlives the pod
    # (rkt #1528)
    lines.append("Wants=supervisor-ready.service systemd-journal-flush.service")
    if wants:
        lines += [f"Wants={wants}", f"After={wants}"]
    return "\n".join(lines) + "\n"


def supervisor_ready(apps: Sequence[AppUnit]) -> str:
    """Marks the pod ready (rkt's /rkt/supervisor-status -> ready) once every app started and
    before default.target, so it exists by the time nspawn forwards READY=1 to systemd."""
    after = " ".join(f"{a.name}.service" for a in apps)
    return "\n".join([
        "[Unit]",
        "Description=Pod supervisor ready",
        "DefaultDependencies=no",
        "Before=default.target",
        *([f"After={after}"] if after else []),
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "StandardInput=null",
        "ExecStart=/usr/bin/ln -sfn ready /rkt/supervisor-status",
    ]) + "\n"


def app_service(app: AppUnit) -> str:
    root = f"/opt/stage2/{app.name}/rootfs"
    unit = [
        "[Unit]",
        f"Description=Application={_escape_value(app.name)} Image={_escape_value(app.image_name)}",
        "DefaultDependencies=no",
        f"Wants=reaper-{app.name}.service systemd-journald.service",
        f"After=reaper-{app.name}.service systemd-journald.service",
        # Stopped in order when the pod goes down (exit, or halt/poweroff from outside): the app
        # first, then its reaper, which records what the stop made of it — all before
        # shutdown.target, i.e. while the pod's systemd still answers on its bus (systemd-halt/
        # -poweroff/-exit.service come after it; halt.target alone is reached only after them).
        "Conflicts=shutdown.target",
        "Before=shutdown.target",
    ]
    if app.sockets:  # started at boot as every app, with the socket rkt's way (Requires=)
        unit += [f"Requires={app.name}.socket", f"After={app.name}.socket"]
    svc = [
        "[Service]",
        f"Type={'notify' if app.supports_notify else 'exec'}",
        "Restart=no",
        "TimeoutStartSec=0",
        f"RootDirectory={root}",
        "MountAPIVFS=yes",
        f"WorkingDirectory={_escape_value(app.working_dir)}",
        f"EnvironmentFile=/rkt/env/{app.name}",
        f"User={app.uid}",
        f"Group={app.gid}",
        f"SyslogIdentifier={app.name}",
        f"ExecStart={exec_line(app.argv)}",
    ]
    # appc event handlers, as rkt: ExecStartPre=/ExecStopPost= of the app's service, so they
    # share its rootfs and stdio. "!" elevates only the credentials (User=/Group=/
    # SupplementaryGroups= ignored, RootDirectory= kept): handlers run as root, as in rkt. A
    # failing pre-start fails the service (the app never runs); post-stop also runs then.
    if app.pre_start:
        svc.append(f"ExecStartPre=!{exec_line(app.pre_start)}")
    if app.post_stop:
        svc.append(f"ExecStopPost=!{exec_line(app.post_stop)}")
    if app.supports_notify:
        svc.append("NotifyAccess=all")
    if app.supplementary_gids:
        svc.append("SupplementaryGroups=" + " ".join(str(g) for g in app.supplementary_gids))
    svc += app.confinement
    if app.interactive:
        svc += ["StandardInput=tty", "StandardOutput=tty", "StandardError=tty",
                "TTYPath=/dev/console", "TTYReset=yes"]
    else:
        unit[3] += f" iomux@{app.name}.service"
        svc += [f"StandardInput=file:/rkt/iomux/{app.name}.stdin" if app.stdin_fifo
                else "StandardInput=null",
                f"StandardOutput=file:/rkt/iomux/{app.name}",
                f"StandardError=file:/rkt/iomux/{app.name}"]
    return "\n".join([*unit, "", *svc]) + "\n"


def iomux_handlers_dropin(app: AppUnit) -> str:
    """Drop-in for ``iomux@<app>.service`` of an app with event handlers: its pre-start,
    main process and post-stop each open the output FIFO anew, and a single ``tee`` would end
    at the first writer's EOF (leaving the next writer blocked without a reader). This one
    reads writer after writer until the reaper, once the app's service is fully stopped, marks
    /rkt/iomux/<app>.done and wakes it."""
    fifo = f"/rkt/iomux/{app.name}"
    script = (f"while :; do /usr/bin/tee -p /dev/console < {fifo} || exit; "
              f"[ -e {fifo}.done ] && exit 0; done")
    return "\n".join([
        "[Service]",
        "StandardInput=null",
        "ExecStart=",
        f"ExecStart=/bin/sh -c {quote_arg(script)}",
    ]) + "\n"


def reaper_service(app: AppUnit) -> str:
    return "\n".join([
        "[Unit]",
        f"Description=Reaper for {app.name}",
        "DefaultDependencies=no",
        "StopWhenUnneeded=yes",
        "Conflicts=exit.target halt.target poweroff.target shutdown.target",
        "Before=exit.target halt.target poweroff.target shutdown.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=/bin/true",
        # the app's rootfs and program, as rkt's: to say why a program could not be run (203)
        "ExecStop=/reaper.sh "
        + exec_line([app.name, f"/opt/stage2/{app.name}/rootfs", app.argv[0]]),
    ]) + "\n"


def app_socket(app: AppUnit) -> str:
    """``<app>.socket`` of an app with socket-activated ports (rkt's): the pod's systemd
    listens, or takes the matching socket nspawn passed it from the host."""
    listen = [f"{'ListenStream' if proto == 'tcp' else 'ListenDatagram'}={port}"
              for proto, port in app.sockets]
    return "\n".join([
        "[Unit]",
        f"Description=Application={_escape_value(app.name)} Image="
        f"{_escape_value(app.image_name)} socket-activated ports",
        "DefaultDependencies=no",
        "Conflicts=shutdown.target",
        "Before=shutdown.target",
        "",
        "[Socket]",
        "BindIPv6Only=both",
        f"Service={app.name}.service",
        *listen,
    ]) + "\n"


def env_file(env: Sequence[tuple[str, str]]) -> str:
    """An EnvironmentFile: one KEY="value" per line. Inside double quotes systemd's parser takes
    backslash escapes of ``\\ " ` $`` and literal newlines, so any value survives."""
    lines = []
    for k, v in env:
        val = "".join("\\" + c if c in '\\"`$' else c for c in v)
        lines.append(f'{k}="{val}"')
    return "\n".join(lines) + ("\n" if lines else "")


def stage1_accounts(apps: Sequence[AppUnit]) -> tuple[str, str]:
    """/etc/passwd and /etc/group of the stage1: systemd resolves User=/Group= there (not in
    the app's rootfs) and refuses an ID it cannot find, so every ID an app runs as is listed
    (rkt did this with sysusers)."""
    uids = sorted({0, *(a.uid for a in apps)})
    gids = sorted({0, *(a.gid for a in apps), *(g for a in apps for g in a.supplementary_gids)})
    passwd = "".join(
        "root:x:0:0:root:/root:/bin/sh\n" if u == 0 else f"rkt{u}:x:{u}:{u}::/:/usr/sbin/nologin\n"
        for u in uids)
    group = "".join("root:x:0:\n" if g == 0 else f"rkt{g}:x:{g}:\n" for g in gids)
    return passwd, group


def pod_units(apps: Sequence[AppUnit]) -> dict[str, str]:
    """Every generated unit: file name → content."""
    units = {"default.target": default_target(apps),
             "supervisor-ready.service": supervisor_ready(apps)}
    sockets = [f"{a.name}.socket" for a in apps if a.sockets]
    if sockets:
        units["-.slice.d/rkt-sockets.conf"] = "[Unit]\nWants=" + " ".join(sockets) + "\n"
    for a in apps:
        units[f"{a.name}.service"] = app_service(a)
        units[f"reaper-{a.name}.service"] = reaper_service(a)
        if a.sockets:
            units[f"{a.name}.socket"] = app_socket(a)
        if a.has_handlers and not a.interactive:
            units[f"iomux@{a.name}.service.d/handlers.conf"] = iomux_handlers_dropin(a)
    return units
