"""The only python-gnupg user: a throw-away GnuPG home holding exactly the keys we were given.

Policy (which keys, what a result means, the messages) lives in ``keystore``; this module is
mechanism only. The home is a fresh temporary directory, removed on exit: the caller's
``~/.gnupg``, ``GNUPGHOME`` and agents are never touched (``--homedir``, ``--no-autostart``,
and a clean environment where python-gnupg can pass one: 0.5 on), and nothing is ever fetched
from a key server. Works with python-gnupg 0.4.9 (Debian 12) and 0.5.x.
"""

from __future__ import annotations

import inspect
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


# gpg status keywords that make a signature file unacceptable even when another signature in it
# is good, with python-gnupg's text for each. python-gnupg >= 0.5 collects them in
# ``Verify.problems``; Debian 12's 0.4.9 does not, and keeps only the last signature's status, so
# they are read from gpg's own status lines, the same way on every version.
_PROBLEMS = {"BADSIG": "signature bad", "ERRSIG": "signature error",
             "EXPSIG": "signature expired", "EXPKEYSIG": "signing key has expired",
             "REVKEYSIG": "signing key was revoked", "NO_PUBKEY": "no public key",
             "NO_SECKEY": "no secret key"}


def _env() -> dict[str, str]:
    # No GNUPGHOME, GPG_AGENT_INFO, HOME...: the home is given by --homedir only.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def _new_gpg(home: str, options: list[str] | None = None,
             env: dict[str, str] | None = None) -> Any:
    """``gnupg.GPG`` on python-gnupg 0.4.9 (Debian 12) and 0.5.x alike; TrustError when gpg
    cannot run. ``env=`` exists from 0.5 on (default: :func:`_env`); 0.4.9 runs gpg with our
    environment, which ``--homedir`` and ``--no-autostart`` already keep away from the
    caller's GnuPG home and agents."""
    kwargs: dict[str, Any] = {}
    if "env" in inspect.signature(gnupg.GPG.__init__).parameters:
        kwargs["env"] = _env() if env is None else env
    try:
        g = gnupg.GPG(gnupghome=home, options=list(_OPTIONS if options is None else options),
                      **kwargs)
    except (OSError, ValueError) as e:
        raise TrustError(f"cannot run gpg: {e}",
                         hint="install GnuPG (Debian: apt-get install gpg)") from e
    g.encoding = "utf-8"  # 0.4.9 takes no encoding= either; the attribute is read per call
    return g


def _first_problem(stderr: str) -> tuple[str, str] | None:
    """(status text, key ID) of the first signature with a problem, from gpg's ``[GNUPG:]``
    status lines (python-gnupg passes ``--status-fd 2`` and keeps stderr in ``.stderr``).
    Within one signature (lines from one ``NEWSIG`` to the next) the last problem wins, as in
    python-gnupg: ``ERRSIG`` then ``NO_PUBKEY`` is "no public key"."""
    found: tuple[str, str] | None = None
    for line in stderr.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        words = line[9:].split()
        if not words:
            continue
        if words[0] == "NEWSIG" and found is not None:
            return found
        if words[0] in _PROBLEMS:
            found = (_PROBLEMS[words[0]], words[1] if len(words) > 1 else "")
    return found


class TempKeyring:
    """``with TempKeyring() as kr: kr.import_key(...); kr.verify(...)``."""

    def __init__(self) -> None:
        self._home: str | None = None
        self._gpg: Any = None

    def __enter__(self) -> TempKeyring:
        self._home = tempfile.mkdtemp(prefix="rkt-gpg-")
        try:
            self._gpg = _new_gpg(self._home)
        except TrustError:
            self._cleanup()
            raise
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
        # scan_keys_mem() is python-gnupg 0.5 only; scan_keys(file) runs the same gpg command
        # on 0.4.9 too. The file lives in this private home and goes with it.
        g = self.gpg
        path = os.path.join(str(self._home), "scan.key")
        with open(path, "wb") as f:
            f.write(data)
        out = []
        for k in g.scan_keys(path):
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
        problem = _first_problem(str(v.stderr or ""))
        ok = bool(v.valid) and v.returncode == 0 and problem is None and \
            not getattr(v, "problems", None)
        status, key_id = str(v.status or ""), str(v.key_id or "")
        if problem is not None:
            # python-gnupg's status and key are the last signature's, which may be a good one.
            status, key_id = problem[0], problem[1] or key_id
        return Verdict(valid=ok, status=status, key_id=key_id,
                       fingerprint=str(v.fingerprint or "").lower(),
                       primary_fingerprint=str(v.pubkey_fingerprint or "").lower())


def sign_detached(data: Path, out: Path, key_id: str) -> None:
    """An ASCII-armored detached signature of ``data`` at ``out``, made by ``key_id`` from the
    caller's own GnuPG home (``GNUPGHOME``, else ``~/.gnupg``) through its agent: the one place
    rktd-less signs (``acbuild write --sign``). Unlike verification this uses the caller's
    keyring and environment on purpose: that is where their secret key and pinentry are."""
    home = os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg")
    g = _new_gpg(home, ["--no-auto-key-retrieve"], dict(os.environ))
    with open(data, "rb") as f:
        # --local-user, not python-gnupg's keyid= (--default-key): gpg falls back to another
        # secret key when the default one is missing, and would sign with a key not asked for
        res = g.sign_file(f, detach=True, binary=False, output=os.fspath(out),
                          extra_args=["--local-user", key_id])
    if res and out.is_file() and out.stat().st_size:
        return
    out.unlink(missing_ok=True)
    said = [ln for ln in str(getattr(res, "stderr", "") or "").splitlines()
            if ln.startswith("gpg: ")]
    why = said[-1].removeprefix("gpg: ") if said else str(getattr(res, "status", "") or
                                                           "gpg failed")
    raise TrustError(f'cannot sign with key "{key_id}": {why}',
                     hint=f"`gpg --list-secret-keys {key_id}` shows whether {home} has it; a "
                     "key with a passphrase needs it given to gpg-agent first")
