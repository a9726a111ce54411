"""What every verb gets: the parsed global flags and the output helpers."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ConfigDirs, Insecure, PathsConfig
from ..errors import PermissionDenied
from ..paths import Paths

if TYPE_CHECKING:  # the fetch machinery is imported only by verbs that fetch
    from ..fetch.images import FetchSettings


@dataclass(frozen=True)
class Context:
    verb: str
    paths: Paths
    config: ConfigDirs
    insecure: Insecure
    debug: bool
    trust_keys_from_https: bool
    paths_config: PathsConfig = dataclasses.field(default_factory=PathsConfig)  # paths.d

    def out(self, line: str) -> None:
        print(line, flush=True)

    def err(self, line: str) -> None:
        print(f"{self.verb}: {line}", file=sys.stderr, flush=True)

    def fetch_settings(self, pull_policy: str) -> FetchSettings:
        from ..fetch.images import FetchSettings, check_policy

        return FetchSettings(insecure=self.insecure, config=self.config,
                             trust_keys_from_https=self.trust_keys_from_https,
                             pull_policy=check_policy(pull_policy), say=self.err)

    def require_root(self) -> None:
        if os.geteuid() != 0:
            raise PermissionDenied("cannot run as unprivileged user",
                                   hint=f"run `rkt {self.verb}` as root")
