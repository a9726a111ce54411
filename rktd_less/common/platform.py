"""The machine's os/arch in appc's names (the ``os``/``arch`` labels images are matched on)."""

from __future__ import annotations

import os

# uname machine -> appc arch label (appc spec: "amd64", "i386", "aarch64", "armv7l", ...)
_APPC_ARCH = {"x86_64": "amd64", "aarch64": "aarch64", "i686": "i386"}


def host_arch() -> str:
    m = os.uname().machine
    return _APPC_ARCH.get(m, m)
