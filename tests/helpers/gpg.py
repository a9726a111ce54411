"""Real OpenPGP keys and detached signatures for tests, made by the real ``gpg``.

Keys live in one throw-away GNUPGHOME (ed25519, no passphrase: fast) created once per test
session; its gpg-agent is stopped and the directory removed when the session ends. This helper
drives ``gpg`` directly, independently of the code under test (``rktd_less.trust``).

    keys = session_keys()
    keys.alice.export(tmp_path / "alice.pub")
    keys.alice.sign(data)                     # data.asc, ASCII-armored
    keys.alice.sign(data, armor=False)        # data.sig, binary
    keys.stranger.sign(data)                  # a key no keystore trusts
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_BATCH = ["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""]


def _env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GNUPGHOME": str(home),
            "LC_ALL": "C"}


def run_gpg(home: Path, args: Sequence[str], stdin: bytes | None = None) -> bytes:
    p = subprocess.run(["gpg", "--homedir", str(home), *args], input=stdin,
                       capture_output=True, env=_env(home), check=False)
    if p.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
    return p.stdout


@dataclass(frozen=True)
class TestKey:
    home: Path
    fingerprint: str  # primary key, lowercase 40 hex (the keystore's file name)
    uid: str
    armored: bytes  # the ASCII-armored public key
    faked_time: str | None = None  # gpg --faked-system-time for signing (an expired key)

    __test__ = False  # not a pytest test class

    @property
    def key_id(self) -> str:
        return self.fingerprint[-16:].upper()

    def export(self, path: Path) -> Path:
        path.write_bytes(self.armored)
        return path

    def sign(self, data: Path, out: Path | None = None, *, armor: bool = True) -> Path:
        """A detached signature of ``data`` (``data.asc`` armored, ``data.sig`` binary)."""
        if out is None:
            out = data.with_name(data.name + (".asc" if armor else ".sig"))
        args = [*_BATCH, "--yes", "--local-user", self.fingerprint, "--detach-sign",
                "--output", str(out)]
        if self.faked_time:
            args += ["--faked-system-time", self.faked_time]
        if armor:
            args.append("--armor")
        run_gpg(self.home, [*args, str(data)])
        return out


class KeyFactory:
    """Keys in one GNUPGHOME; ``close()`` stops its agent and removes it."""

    def __init__(self) -> None:
        # Short path: gpg-agent's socket lives in the home and socket paths are limited.
        self.home = Path(tempfile.mkdtemp(prefix="rkt-tgpg-"))

    def new_key(self, uid: str, *, signing_subkey: bool = False,
                expired: bool = False) -> TestKey:
        # An expired key: made on 2020-01-01 for one day; it signs as of that day, when it was
        # valid, so its signatures are good ones by a key that has expired since.
        when = ["--faked-system-time", "20200101T000000"] if expired else []
        out = run_gpg(self.home, [*_BATCH, *when, "--status-fd", "1", "--quick-gen-key", uid,
                                  "ed25519", "sign", "1d" if expired else "never"])
        fpr = next(line.split()[3] for line in out.decode().splitlines()
                   if line.startswith("[GNUPG:] KEY_CREATED"))
        if signing_subkey:
            # gpg then signs with the subkey: VALIDSIG names the subkey, the primary is trusted.
            run_gpg(self.home, [*_BATCH, "--quick-add-key", fpr, "ed25519", "sign", "never"])
        armored = run_gpg(self.home, ["--armor", "--export", fpr])
        return TestKey(home=self.home, fingerprint=fpr.lower(), uid=uid, armored=armored,
                       faked_time="20200101T010000" if expired else None)

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       capture_output=True, env=_env(self.home), check=False)
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass(frozen=True)
class TestKeys:
    alice: TestKey  # the usual trusted key
    bob: TestKey  # a second key, e.g. trusted for another prefix
    carol: TestKey  # signs with a signing subkey
    stranger: TestKey  # never trusted anywhere
    expired: TestKey  # expired since 2020; its signatures date from before
    factory: KeyFactory

    __test__ = False


@functools.cache
def session_keys() -> TestKeys:
    """The session's keys, made once (ed25519 generation takes a few ms each)."""
    f = KeyFactory()
    atexit.register(f.close)
    return TestKeys(alice=f.new_key("Alice Example <alice@example.com>"),
                    bob=f.new_key("Bob Example <bob@example.org>"),
                    carol=f.new_key("Carol Example <carol@example.com>", signing_subkey=True),
                    stranger=f.new_key("Mallory Stranger <mallory@example.net>"),
                    expired=f.new_key("Old Example <old@example.com>", expired=True),
                    factory=f)


def sign_with_other_key(data: Path, out: Path | None = None, *, armor: bool = True) -> Path:
    """A valid signature of ``data`` by a key that no keystore trusts."""
    return session_keys().stranger.sign(data, out, armor=armor)
