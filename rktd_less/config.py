"""Layered configuration and the insecure options (reference §1.2, §1.5)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

INSECURE_VALUES = ("none", "image", "tls", "http", "pubkey", "capabilities", "paths", "seccomp",
                   "ondisk", "all-fetch", "all-run", "all")
_GROUPS = {
    "all-fetch": ("image", "tls", "http", "pubkey"),
    "all-run": ("capabilities", "paths", "seccomp"),
}
_GROUPS["all"] = _GROUPS["all-fetch"] + _GROUPS["all-run"]


@dataclass(frozen=True)
class Insecure:
    options: frozenset[str]

    @classmethod
    def parse(cls, items: Iterable[str]) -> Insecure:
        opts: set[str] = set()
        for raw in items:
            for item in raw.split(","):
                o = item.strip().lower()
                if not o:
                    continue
                if o not in INSECURE_VALUES:
                    raise UsageError(f'unknown insecure option "{o}"',
                                     hint="permissible values: " + ", ".join(INSECURE_VALUES))
                opts.update(_GROUPS.get(o, (o,)))
        opts.discard("none")
        opts.discard("ondisk")
        return cls(frozenset(opts))

    def skip_image(self) -> bool:
        return "image" in self.options


@dataclass(frozen=True)
class ConfigDirs:
    system: Path
    local: Path
    user: Path | None
