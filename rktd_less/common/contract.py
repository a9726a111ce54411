"""What stage0 hands every stage1 entrypoint beyond rkt's contract (reference §2.3)."""

from __future__ import annotations

import sys

# The interpreter stage0 runs under: the entrypoints of our stage1 images run the stage1 code
# of the same installation with it (a virtual environment's, or the system's).
PYTHON_ENV = "RKTD_LESS_PYTHON"


def entry_env() -> dict[str, str]:
    return {PYTHON_ENV: sys.executable}
