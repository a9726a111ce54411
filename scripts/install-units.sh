#!/usr/bin/env bash
# Install rktd-less's systemd integration, as root (idempotent: running it again is harmless):
#   groups rkt and rkt-admin (system groups, when missing);
#   units/rkt-gc.service and units/rkt-gc.timer -> /etc/systemd/system, with @RKT@ replaced by
#     this checkout's .venv/bin/rkt (absolute path; nothing is installed to /usr/bin);
#   units/tmpfiles.d/rkt.conf -> /etc/tmpfiles.d/rkt.conf, applied with systemd-tmpfiles --create;
#   when systemd is PID 1 (/run/systemd/system exists): daemon-reload and
#     enable --now rkt-gc.timer. Otherwise the files are installed and left for the next boot.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd -P)
RKT="$REPO/.venv/bin/rkt"
UNIT_DIR=/etc/systemd/system
TMPFILES_DIR=/etc/tmpfiles.d

say() { echo "install-units.sh: $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "install-units.sh: run as root" >&2
    exit 1
fi
if [ ! -x "$RKT" ]; then
    echo "install-units.sh: $RKT not found: run bash scripts/install.sh first" >&2
    exit 1
fi

for g in rkt rkt-admin; do
    if ! getent group "$g" >/dev/null; then
        groupadd --system "$g"
        say "created system group $g"
    fi
done

# Install a file only when its content or mode differs (so a second run changes nothing).
install_file() {  # SRC DEST: SRC's content, @RKT@ substituted, mode 0644
    local tmp
    tmp=$(mktemp)
    sed "s|@RKT@|$RKT|g" "$1" >"$tmp"
    if [ -f "$2" ] && cmp -s "$tmp" "$2"; then
        rm -f "$tmp"
    else
        install -D -m 0644 "$tmp" "$2"
        rm -f "$tmp"
        say "installed $2"
    fi
    chmod 0644 "$2"
}

install_file units/rkt-gc.service "$UNIT_DIR/rkt-gc.service"
install_file units/rkt-gc.timer "$UNIT_DIR/rkt-gc.timer"
install_file units/tmpfiles.d/rkt.conf "$TMPFILES_DIR/rkt.conf"

systemd-tmpfiles --create "$TMPFILES_DIR/rkt.conf"

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now rkt-gc.timer
    say "rkt-gc.timer enabled and started"
else
    say "systemd is not PID 1: units installed, not enabled (run: systemctl enable --now rkt-gc.timer)"
fi
