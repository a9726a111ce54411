"""Every on-disk path of the engine as a named accessor (rkt's layout, reference §2.2, §3.1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path("/var/lib/rkt")
DEFAULT_SYSTEM_CONFIG = Path("/usr/lib/rkt")
DEFAULT_LOCAL_CONFIG = Path("/etc/rkt")

# Pod phase directories under <data>/pods, in rkt's names.
POD_PHASES = ("embryo", "prepare", "prepared", "run", "exited-garbage", "garbage")


@dataclass(frozen=True)
class Paths:
    """Paths below one data directory (``--dir``)."""

    data: Path

    @classmethod
    def from_dir(cls, data_dir: str | os.PathLike[str] | None) -> Paths:
        raw = os.fspath(data_dir) if data_dir is not None else str(DEFAULT_DATA_DIR)
        if not raw:
            raw = str(DEFAULT_DATA_DIR)
        p = Path(raw).absolute()
        # rkt resolves symlinks in the data dir (calculateDataDir).
        if p.exists():
            p = p.resolve()
        return cls(p)

    # --- image store -------------------------------------------------------
    @property
    def cas(self) -> Path:
        return self.data / "cas"

    @property
    def db_dir(self) -> Path:
        return self.cas / "db"

    @property
    def db(self) -> Path:
        return self.db_dir / "images.sqlite"

    @property
    def blob_dir(self) -> Path:
        return self.cas / "blob" / "sha512"

    def blob(self, key: str) -> Path:
        """``key`` is the store key ``sha512-<64 hex>``."""
        return self.blob_dir / key[7:9] / key

    @property
    def manifest_dir(self) -> Path:
        return self.cas / "imageManifest" / "sha512"

    def image_manifest(self, key: str) -> Path:
        return self.manifest_dir / key[7:9] / key

    @property
    def tree_dir(self) -> Path:
        return self.cas / "tree"

    def tree(self, tree_id: str) -> Path:
        return self.tree_dir / tree_id

    @property
    def cas_tmp(self) -> Path:
        return self.cas / "tmp"

    @property
    def cas_locks(self) -> Path:
        return self.cas / "locks"

    # --- pods --------------------------------------------------------------
    @property
    def pods(self) -> Path:
        return self.data / "pods"

    def phase_dir(self, phase: str) -> Path:
        assert phase in POD_PHASES, phase
        return self.pods / phase

    def pod(self, phase: str, uuid: str) -> Path:
        return self.phase_dir(phase) / uuid

    def pod_phase(self, uuid: str) -> str | None:
        """The phase whose directory holds pod ``uuid`` now, if any."""
        return next((ph for ph in POD_PHASES if self.pod(ph, uuid).is_dir()), None)

    @property
    def locks(self) -> Path:
        return self.data / "locks"

    @property
    def prepare_lock(self) -> Path:
        return self.locks / "prepareLock"

    @property
    def pod_names(self) -> Path:
        """Docker-style pod names: ``<name>`` symlinks to the pod UUID."""
        return self.data / "names"
