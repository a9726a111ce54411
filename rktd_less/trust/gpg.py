"""The only python-gnupg user: a throw-away GnuPG home holding exactly the keys we were given.

Policy (which keys, what a result means, the messages) lives in ``keystore``; this module is
mechanism only. The home is a fresh temporary directory, removed on exit: the caller's
``~/.gnupg``, ``GNUPGHOME`` and agents are never touched (clean environment, ``--homedir``,
``--no-autostart``), and nothing is ever fetched from a key server.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import gnupg

from ..errors import TrustError

# "always": every key in this home was put there because the keystore trusts it for the name
# being checked; gpg's web of trust has no say (and would only add warnings).
_OPTIONS = ["--trust-model", "always", "--no-autostart", "--no-auto-key-retrieve",
            "--no-auto-key-locate"]


@dataclass(frozen=True)
class ScannedKey:
    fingerprint: str  # primary key, lowercase hex
    uids: tuple[str, ...]
    subkeys: tuple[str, ...]  # lowercase hex


@dataclass(frozen=True)
class Verdict:
    """What gpg said about a detached signature (python-gnupg's ``Verify``, flattened)."""

    valid: bool  # a good signature and nothing else wrong (gpg exit status 0, no problems)
    status: str  # python-gnupg status text: "signature valid", "signature bad", ...
    key_id: str  # the issuer's long key ID as gpg reports it, "" if unknown
    fingerprint: str  # fingerprint of the signing (sub)key, lowercase, "" if unknown
    primary_fingerprint: str  # primary key of the signer, lowercase, "" if unknown


def _env() -> dict[str, str]:
    # No GNUPGHOME, GPG_AGENT_INFO, HOME...: the home is given by --homedir only.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


class TempKeyring:
    """``with TempKeyring() as kr: kr.import_key(...); kr.verify(...)``."""

    def __init__(self) -> None:
        self._home: str | None = None
        self._gpg: Any = None

    def __enter__(self) -> TempKeyring:
        self._home = tempfile.mkdtemp(prefix="rkt-gpg-")
        try:
            self._gpg = gnupg.GPG(gnupghome=self._home, options=list(_OPTIONS), env=_env(),
                                  encoding="utf-8")
        except (OSError, ValueError) as e:
            self._cleanup()
            raise TrustError(f"cannot run gpg: {e}",
                             hint="install GnuPG (Debian: apt-get install gpg)") from e
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    @property
    def gpg(self) -> Any:
        if self._gpg is None:
            raise RuntimeError("TempKeyring used outside its with block")
        return self._gpg

    def scan(self, data: bytes) -> list[ScannedKey]:
        """The keys in ``data`` without importing them (``--dry-run --import``)."""
        out = []
        for k in self.gpg.scan_keys_mem(data):
            if k.get("type") != "pub":
                continue
            subkeys = tuple(str(sk[2]).lower() for sk in k.get("subkeys", []) if sk[2])
            out.append(ScannedKey(fingerprint=str(k["fingerprint"]).lower(),
                                  uids=tuple(str(u) for u in k.get("uids", [])),
                                  subkeys=subkeys))
        return out

    def import_key(self, data: bytes) -> list[str]:
        """Import ``data``; the primary fingerprints gpg took from it (lowercase)."""
        res = self.gpg.import_keys(data)
        seen: list[str] = []
        for fpr in res.fingerprints:
            f = str(fpr).lower()
            if f and f not in seen:
                seen.append(f)
        return seen

    def uids(self) -> dict[str, tuple[str, ...]]:
        """Primary fingerprint (lowercase) -> user IDs, for every key in this home."""
        return {str(k["fingerprint"]).lower(): tuple(str(u) for u in k.get("uids", []))
                for k in self.gpg.list_keys()}

    def verify(self, data: Path, signature: bytes) -> Verdict:
        """Check the detached ``signature`` (armored or binary) over the file ``data``."""
        v = self.gpg.verify_file(io.BytesIO(signature), data_filename=os.fspath(data))
        ok = bool(v.valid) and v.returncode == 0 and not v.problems
        return Verdict(valid=ok, status=str(v.status or ""), key_id=str(v.key_id or ""),
                       fingerprint=str(v.fingerprint or "").lower(),
                       primary_fingerprint=str(v.pubkey_fingerprint or "").lower())
