#!/usr/bin/env bash
# The demo itself (needs root and a running systemd): build a busybox ACI, run pods, show them
# as systemd machines and units, read their journal, stop and garbage-collect them.
set -euo pipefail
cd "$(dirname "$0")/.."
RKT=(.venv/bin/rkt --dir="${RKT_DEMO_DIR:-${RKT_TEST_SCRATCH:-/var/tmp}/rktd-less-demo}")
work=$(mktemp -d -p "${RKT_TEST_SCRATCH:-/var/tmp}")
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

.venv/bin/python scripts/make-busybox-aci "$work/busybox.aci" >/dev/null

step rkt fetch --insecure-options=image busybox.aci
"${RKT[@]}" fetch --insecure-options=image "$work/busybox.aci"
step rkt image list
"${RKT[@]}" image list

step rkt run --insecure-options=image busybox.aci --exec /bin/echo -- hello from a pod
"${RKT[@]}" run --insecure-options=image "$work/busybox.aci" --exec /bin/echo -- hello from a pod

step "systemd-run --unit=demo-web rkt run ... (a long-running pod as an ordinary unit)"
systemd-run --quiet --unit=demo-web --property=Delegate=yes --slice=machine.slice \
    "${RKT[@]}" run --insecure-options=image --uuid-file-save="$work/uuid" "$work/busybox.aci" \
    --exec /bin/sh -- -c 'while true; do echo "web: tick $(date +%T)"; sleep 1; done'
for _ in $(seq 100); do [ -s "$work/uuid" ] && break; sleep 0.1; done
uuid=$(cat "$work/uuid")
for _ in $(seq 100); do "${RKT[@]}" status "$uuid" | grep -q state=running && break; sleep 0.1; done
sleep 2

step machinectl list
machinectl list
step rkt list
"${RKT[@]}" list
step rkt status "${uuid:0:8}"
"${RKT[@]}" status "${uuid:0:8}"
step systemctl status demo-web
systemctl status --no-pager demo-web.service | head -20 || true
step journalctl -M "rkt-$uuid" -t busybox
journalctl -M "rkt-$uuid" -t busybox --no-pager | tail -5
step machinectl poweroff "rkt-$uuid"
machinectl poweroff "rkt-$uuid"
for _ in $(seq 100); do "${RKT[@]}" status "$uuid" | grep -q state=exited && break; sleep 0.1; done
"${RKT[@]}" list
step "rkt run --detach --pod-name=demo-detached ... (returns once the pod is up)"
"${RKT[@]}" run --detach --pod-name=demo-detached --insecure-options=image "$work/busybox.aci" \
    --exec /bin/sh -- -c 'echo "detached pod up"; exec sleep 600' | tee "$work/uuid2"
uuid2=$(cat "$work/uuid2")
step systemctl status "rkt-$uuid2"
systemctl status --no-pager "rkt-$uuid2.service" | head -12 || true
step journalctl -u "rkt-$uuid2"
journalctl -u "rkt-$uuid2.service" -o cat --no-pager | tail -3
step rkt stop demo-detached
"${RKT[@]}" stop demo-detached
for _ in $(seq 100); do "${RKT[@]}" status demo-detached | grep -q state=exited && break; sleep 0.1; done
"${RKT[@]}" list

step rkt gc --grace-period=0
"${RKT[@]}" gc --grace-period=0
systemctl reset-failed demo-web.service 2>/dev/null || true
