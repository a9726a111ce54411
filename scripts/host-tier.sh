#!/usr/bin/env bash
# The host test tier: `rkt run` where no systemd manager is reachable, on this machine itself.
# Where PID 1 is not systemd (as on these CI machines) that is the machine as it is. Where PID 1
# is systemd, the tier runs in a private mount namespace whose /run is an empty tmpfs: the
# manager and the bus are out of reach (as in a plain container on such a machine), and the
# host's own services writing to its /run meanwhile do not disturb the nothing-left checks.
set -euo pipefail
cd "$(dirname "$0")/.."
pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider tests/host "$@")
# the pods' data dirs of this run, gone afterwards (the tests remove their own; this the rest)
RKT_TEST_SCRATCH=$(mktemp -d /var/tmp/rktd-less-host-XXXXXX)
export RKT_TEST_SCRATCH
# Pods get rkt's default network (CNI: a veth, iptables rules, ip_forward, host-local leases),
# so the tier runs in a network namespace of its own, with the CNI state directory and
# /run/netns private to it: nothing of that reaches the machine, and all of it is gone with the
# namespace.
# (The two mount points are made here if missing and removed again afterwards.)
made=()
for d in /run/netns /var/lib/cni; do
    if [ ! -e "$d" ]; then
        mkdir "$d"
        made+=("$d")
    fi
done
cleanup() {
    rm -rf --one-file-system "$RKT_TEST_SCRATCH"
    if [ ${#made[@]} -gt 0 ]; then rmdir "${made[@]}"; fi
}
trap cleanup EXIT
if [ -d /run/systemd/system ]; then
    run_tmpfs=1
else
    run_tmpfs=
fi
RUN_TMPFS=$run_tmpfs unshare --net --mount --propagation private -- sh -c '
    set -e
    if [ -n "$RUN_TMPFS" ]; then
        mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
        mkdir /run/netns
    fi
    mount -t tmpfs -o mode=0755 tmpfs /run/netns
    mount --make-shared /run/netns
    mount -t tmpfs -o mode=0755 tmpfs /var/lib/cni
    ip link set lo up
    exec "$@"' host-tier "${pytest[@]}"
