#!/usr/bin/env bash
# Install everything and run a real pod end to end. Where PID 1 is not systemd (a container,
# a CI machine), the pod runs inside the project's own systemd test bed, which is torn down after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ -d /run/systemd/system ]; then
    exec bash scripts/demo-pod.sh
fi
echo "demo: PID 1 is not systemd here; booting the project's systemd test bed for the demo"
exec .venv/bin/python tests/testbed.py run --name rktd-less-demo -- bash scripts/demo-pod.sh
