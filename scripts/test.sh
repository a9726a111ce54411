#!/usr/bin/env bash
# Install everything, run the host tier on this machine, then the whole test suite (unit +
# integration) inside the project's systemd test bed: PID 1 here may not be systemd, and
# integration tests need a real one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check -q rktd_less tests setup.py bench/pod_start bench/fetch bench/docker_pull bench/squash bench/stress scripts/make-busybox-aci
.venv/bin/mypy
# Host tier, on this machine itself: rkt run without a systemd manager, and nothing left
# behind (where PID 1 is systemd, the script hides the manager first). Needs root.
bash scripts/host-tier.sh
exec .venv/bin/python tests/testbed.py run --name rktd-less-ci -- \
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/integration "$@"
