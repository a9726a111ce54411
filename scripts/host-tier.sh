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
trap 'rm -rf --one-file-system "$RKT_TEST_SCRATCH"' EXIT
if [ -d /run/systemd/system ]; then
    unshare --mount --propagation private -- sh -c '
        mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
        exec "$@"' host-tier "${pytest[@]}"
else
    "${pytest[@]}"
fi
