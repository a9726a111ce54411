"""Trusted keys by prefix, as rkt's ``pkg/keystore`` (reference §4.6).

Layout, in the system, local and (if set) user config directories::

    trustedkeys/root.d/<fpr>                  trusted for every image
    trustedkeys/prefix.d/<prefix>/<fpr>       trusted for <prefix> and every name below it

``<fpr>`` is the lowercase 40-hex fingerprint of the primary key; the file is the
ASCII-armored public key and must hold exactly that key. The keyring for ``a/b/c`` is every
root key plus the keys of ``prefix.d/a``, ``prefix.d/a/b`` and ``prefix.d/a/b/c`` (whole path
components: ``a/b`` does not cover ``a/bc``), read system, local, user; an **empty** file masks
a key of the same fingerprint read before it (an admin can veto a vendor key in
``/etc/rkt``). New keys are written to the local config directory only.

Signatures are checked by gpg in a throw-away home holding only that keyring (``gpg.py``).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..appc.types import AC_IDENTIFIER_RE, q
from ..config import ConfigDirs
from ..errors import NotFound, PermissionDenied, TrustError

TRUSTED_KEYS = "trustedkeys"
ROOT_D = "root.d"
PREFIX_D = "prefix.d"
MAX_KEY_BYTES = 1 << 20  # a public key with many certifications is still far below this
MAX_SIGNATURE_BYTES = 1 << 20
_FPR_RE = re.compile(r"[0-9a-f]{40}")
_ARMOR_PUBLIC = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
_ARMOR_PRIVATE = b"-----BEGIN PGP PRIVATE KEY BLOCK-----"
ADMIN_HINT = "run as root or as a member of group rkt-admin, which may write the local config"


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str  # primary key, lowercase 40 hex: the file name in the keystore
    uids: tuple[str, ...]
    armored: bytes
    subkeys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Signer:
    """Whose signature verified: the trusted primary key and its user IDs."""

    fingerprint: str
    uids: tuple[str, ...]


def format_fingerprint(fpr: str) -> str:
    """rkt's ``fingerToString``: uppercase groups of 4 hex digits, an extra space in the
    middle: ``8B86 DE38 890D DB72 9186  7B02 5210 BD88 8818 2190``."""
    h = fpr.replace(" ", "").upper()
    groups = [h[i:i + 4] for i in range(0, len(h), 4)]
    if len(groups) == 10:
        return " ".join(groups[:5]) + "  " + " ".join(groups[5:])
    return " ".join(groups)


def check_prefix(prefix: str) -> str:
    """A prefix or image name must be an AC Identifier: it becomes a path under prefix.d, and
    the grammar leaves no room for ``..``, empty components or absolute paths."""
    if not AC_IDENTIFIER_RE.fullmatch(prefix):
        raise TrustError(f"invalid prefix {q(prefix)}: not a valid AC Identifier",
                         hint='use an image name or a leading part of one, e.g. '
                              '"example.com/app"')
    return prefix


def _not_a_key(source: str) -> TrustError:
    return TrustError(f"{q(source)} is not a PGP public key",
                      hint="expected an ASCII-armored public key (gpg --armor --export KEYID)")


def _precheck(armored: bytes, source: str) -> None:
    head = armored.lstrip()
    if head.startswith(_ARMOR_PRIVATE):
        raise TrustError(f"{q(source)} is a PGP private key",
                         hint="trust the public key only (gpg --armor --export KEYID)")
    if not head.startswith(_ARMOR_PUBLIC):
        raise _not_a_key(source)


def key_info(armored: bytes, source: str = "key") -> KeyInfo:
    """What ``rkt trust`` shows before asking: the one primary key in ``armored``.
    ``source`` names the file or URL in errors."""
    _precheck(armored, source)
    from .gpg import TempKeyring

    with TempKeyring() as kr:
        keys = kr.scan(armored)
    if not keys:
        raise _not_a_key(source)
    if len(keys) > 1:
        raise TrustError(f"{q(source)} holds {len(keys)} public keys, expected one",
                         hint="export and trust each key separately")
    k = keys[0]
    return KeyInfo(fingerprint=k.fingerprint, uids=k.uids, armored=armored, subkeys=k.subkeys)


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError as e:
        raise NotFound(f"{what} {q(str(path))} not found") from e
    except PermissionError as e:
        raise PermissionDenied(f"cannot read {what} {q(str(path))}",
                               hint="run as root or as a member of group rkt") from e
    except OSError as e:
        raise TrustError(f"cannot read {what} {q(str(path))}: {e.strerror}") from e
    if len(data) > limit:
        raise TrustError(f"{what} {q(str(path))} is larger than {limit} bytes")
    return data


def _mkdirs(path: Path) -> None:
    """``mkdir -p`` with 0755 for every directory created (whatever the umask), as rkt."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o755)
        except FileExistsError:
            continue
        os.chmod(d, 0o755)


@dataclass(frozen=True)
class Keystore:
    config: ConfigDirs

    # --- layout --------------------------------------------------------------------
    def _layers(self) -> list[Path]:
        dirs = [self.config.system, self.config.local]
        if self.config.user is not None:
            dirs.append(self.config.user)
        return [d / TRUSTED_KEYS for d in dirs]

    def target_dir(self, prefix: str | None) -> Path:
        """Where ``store`` writes: the local config directory."""
        base = self.config.local / TRUSTED_KEYS
        return base / ROOT_D if prefix is None else base / PREFIX_D / check_prefix(prefix)

    def _collect(self, name: str) -> dict[str, tuple[Path, bool]]:
        """fingerprint -> (key file, found in a prefix dir), masking applied."""
        check_prefix(name)
        found: dict[str, tuple[Path, bool]] = {}

        def scan(d: Path, from_prefix: bool) -> None:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                return
            except PermissionError as err:
                raise PermissionDenied(f"cannot read trusted keys in {q(str(d))}",
                                       hint="run as root or as a member of group rkt") from err
            for ent in entries:
                # Hidden names are our own temporary files (store writes then renames).
                if ent.name.startswith(".") or not ent.is_file():
                    continue
                if ent.stat().st_size == 0:
                    found.pop(ent.name, None)  # an empty file vetoes that key
                    continue
                if not _FPR_RE.fullmatch(ent.name):
                    raise TrustError(f"trusted key file {q(ent.path)} is not named by a key "
                                     "fingerprint",
                                     hint="key files are named by the key's 40-hex-digit "
                                          "fingerprint in lower case; rename or remove it")
                found[ent.name] = (Path(ent.path), from_prefix)

        parts = name.split("/")
        for layer in self._layers():
            scan(layer / ROOT_D, False)
        for layer in self._layers():
            for i in range(1, len(parts) + 1):
                scan(layer / PREFIX_D / "/".join(parts[:i]), True)
        return found

    # --- reading -------------------------------------------------------------------
    def keys_for(self, name: str) -> list[Path]:
        """The key files trusted for image ``name``: root keys and the keys of every prefix
        that is ``name`` or a leading run of its path components."""
        return [p for p, _ in self._collect(name).values()]

    def has_keys_for(self, name: str) -> bool:
        """Whether a key is trusted for ``name`` through a prefix (root keys do not count, as
        rkt's ``TrustedKeyPrefixExists``: it decides whether fetch discovers the prefix's
        keys)."""
        return any(from_prefix for _, from_prefix in self._collect(name).values())

    # --- writing -------------------------------------------------------------------
    def ensure_writable(self, prefix: str | None) -> None:
        """Fail early, before any prompt, if ``store(…, prefix)`` could not write."""
        d = self.target_dir(prefix)
        p = d
        while not p.exists():
            p = p.parent
        if not p.is_dir():
            raise TrustError(f"cannot store keys in {q(str(d))}: {q(str(p))} is not a "
                             "directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise PermissionDenied(f"cannot write trusted keys to {q(str(d))}",
                                   hint=f"{ADMIN_HINT} ({self.config.local})")

    def store(self, armored: bytes, prefix: str | None) -> Path:
        """Trust ``armored`` for ``prefix`` (None: for every image). Written atomically to
        ``<local>/trustedkeys/{root.d|prefix.d/<prefix>}/<fpr>``, mode 0644; returns the path."""
        d = self.target_dir(prefix)
        info = key_info(armored)
        dest = d / info.fingerprint
        tmp: str | None = None
        try:
            _mkdirs(d)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{info.fingerprint}.")
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)
                f.write(armored)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, dest)
            tmp = None
            dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except PermissionError as e:
            raise PermissionDenied(f"cannot write trusted keys to {q(str(d))}",
                                   hint=f"{ADMIN_HINT} ({self.config.local})") from e
        except OSError as e:
            raise TrustError(f"cannot write trusted keys to {q(str(d))}: {e.strerror}") from e
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        return dest

    # --- verifying -----------------------------------------------------------------
    def verify(self, name: str, data: Path, signature: Path) -> Signer:
        """Check the detached ``signature`` (armored or binary) of ``data`` against the keys
        trusted for ``name``; the signer, or a one-line TrustError."""
        files = self.keys_for(name)
        if not files:
            raise TrustError(f"no keys trusted for prefix {q(name)}",
                             hint=f"trust one with: rkt trust --prefix {name} "
                                  "<key URL or file>")
        sig = _read_limited(signature, MAX_SIGNATURE_BYTES, "signature file")
        if not data.is_file():
            raise NotFound(f"signed file {q(str(data))} not found")
        from .gpg import TempKeyring

        fail = f"signature verification failed for {q(name)}"
        with TempKeyring() as kr:
            for f in files:
                armored = _read_limited(f, MAX_KEY_BYTES, "trusted key file")
                _precheck(armored, str(f))
                got = kr.import_key(armored)
                if not got:
                    raise _not_a_key(str(f))
                if got != [f.name]:
                    raise TrustError(f"trusted key file {q(str(f))} holds key "
                                     f"{', '.join(got)}, not the one it is named after",
                                     hint="a key file is named by the fingerprint of the one "
                                          "key it holds; rename or remove it")
            verdict = kr.verify(data, sig)
            trusted = kr.uids()
        signer = verdict.primary_fingerprint or verdict.fingerprint
        if verdict.valid and signer in trusted:
            return Signer(fingerprint=signer, uids=trusted[signer])
        again = f"rkt trust --prefix {name} <key URL or file>"
        if verdict.status == "no public key" or (verdict.valid and signer not in trusted):
            key = (verdict.key_id or signer).upper()
            raise TrustError(f"{fail}: signed by key {key}, which is not trusted for prefix "
                             f"{q(name)}",
                             hint=f"if the signing key changed, trust the new one with: {again}")
        if verdict.status == "signature bad":
            raise TrustError(f"{fail}: bad signature",
                             hint="the file or its signature was altered or damaged")
        if verdict.status in ("", "signature expected but not found", "unexpected data") or \
                verdict.status.startswith("error"):
            raise TrustError(f"{fail}: no valid signatures found in signature file",
                             hint=f"{q(str(signature))} is not a detached PGP signature")
        raise TrustError(f"{fail}: {verdict.status}")
