"""`rkt trust` end to end through the CLI entry point, with real gpg keys.

Only the network (discovery, HTTPS download) and the terminal check are faked."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from rktd_less.cli import trust as trust_cli
from rktd_less.cli.context import Context
from rktd_less.cli.main import main
from rktd_less.config import ConfigDirs
from rktd_less.errors import FetchError
from rktd_less.trust import Keystore, format_fingerprint
from tests.helpers.gpg import TestKeys, session_keys

PREFIX = "example.com/hello"


@pytest.fixture(scope="session")
def keys() -> TestKeys:
    return session_keys()


class Env:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp_path
        self.capsys = capsys
        self.system = tmp_path / "usr-lib-rkt"
        self.local = tmp_path / "etc-rkt"
        self.config = ConfigDirs(system=self.system, local=self.local, user=None)

    def run(self, *args: str) -> tuple[int, str, str]:
        code = main([f"--dir={self.tmp / 'data'}", f"--system-config={self.system}",
                     f"--local-config={self.local}", *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def stored(self) -> list[Path]:
        base = self.local / "trustedkeys"
        return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


@pytest.fixture
def env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Env:
    return Env(tmp_path, capsys)


@pytest.fixture
def alice_file(env: Env, keys: TestKeys) -> Path:
    return keys.alice.export(env.tmp / "alice.pub")


def test_trust_file_for_prefix(env: Env, keys: TestKeys, alice_file: Path) -> None:
    code, out, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review",
                             str(alice_file))
    assert code == 0, err
    dest = env.local / "trustedkeys/prefix.d" / PREFIX / keys.alice.fingerprint
    assert err == f'trust: prefix: "{PREFIX}"\nkey: "{alice_file}"\n'
    assert out == (f"gpg key fingerprint is: {format_fingerprint(keys.alice.fingerprint)}\n"
                   "\tAlice Example <alice@example.com>\n"
                   f'Trusting "{alice_file}" for prefix "{PREFIX}" without fingerprint '
                   "review.\n"
                   f'Added key for prefix "{PREFIX}" at "{dest}"\n')
    assert dest.read_bytes() == keys.alice.armored
    # The stored key now verifies images of that prefix.
    data = env.tmp / "x.aci"
    data.write_bytes(b"payload")
    signer = Keystore(env.config).verify(f"{PREFIX}/sub", data, keys.alice.sign(data))
    assert signer.fingerprint == keys.alice.fingerprint


def test_trust_root_key_and_several_keys(env: Env, keys: TestKeys, alice_file: Path) -> None:
    carol = keys.carol.export(env.tmp / "carol.pub")
    code, out, err = env.run("trust", "--root", "--skip-fingerprint-review", str(alice_file),
                             str(carol))
    assert code == 0, err
    root = env.local / "trustedkeys/root.d"
    assert f'Added root key at "{root / keys.alice.fingerprint}"\n' in out
    assert f'Added root key at "{root / keys.carol.fingerprint}"\n' in out
    assert f'Trusting "{carol}" for prefix "" without fingerprint review.' in out
    assert "    Subkey fingerprint: " in out
    assert env.stored() == sorted([root / keys.alice.fingerprint, root / keys.carol.fingerprint])


def test_refusals(env: Env, alice_file: Path) -> None:
    cases = [
        (["trust", str(alice_file)], "trust: aborting due to implicit unbounded trust (root "
                                     "domain)"),
        (["trust"], "trust: --prefix or --root is required"),
        (["trust", "--root", f"--prefix={PREFIX}", str(alice_file)],
         "trust: --root and --prefix usage mutually exclusive"),
        (["trust", "--prefix=https://example.com/hello", str(alice_file)],
         "trust: --prefix must not contain a URL scheme, omit https://"),
        (["--insecure-options=image", "trust", f"--prefix={PREFIX}", str(alice_file)],
         "trust: could not get the keystore"),
        (["trust", "--prefix=Example.COM/x", str(alice_file)],
         'trust: invalid prefix "Example.COM/x": not a valid AC Identifier'),
        (["trust", "--root", "--skip-fingerprint-review"],
         "trust: --root requires a key file or URL"),
        (["trust", f"--prefix={PREFIX}", "--skip-fingerprint-review", "http://example.com/k"],
         "trust: error accessing the key http://example.com/k: --insecure-allow-http required "
         "for http URLs"),
        (["trust", f"--prefix={PREFIX}", "--skip-fingerprint-review", "ftp://example.com/k"],
         "trust: error accessing the key ftp://example.com/k: only local files and http or "
         "https URLs supported"),
        (["trust", f"--prefix={PREFIX}", "--skip-fingerprint-review", "/nonexistent/key"],
         "trust: error accessing the key /nonexistent/key: no such file"),
    ]
    for args, start in cases:
        code, out, err = env.run(*args)
        assert code == 254, args
        assert err.startswith(start), (args, err)
        assert err.count("\n") == 1, err  # one line
        assert out == ""
    assert env.stored() == []


def test_not_a_key_file(env: Env) -> None:
    junk = env.tmp / "junk.pub"
    junk.write_text("definitely not a key\n")
    code, out, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review",
                             str(junk))
    assert code == 254 and out == ""
    assert err.startswith(f'trust: "{junk}" is not a PGP public key')
    assert env.stored() == []


def test_prompt_needs_a_tty(env: Env, alice_file: Path) -> None:
    # Under pytest stdin is not a terminal: the real check applies.
    code, out, err = env.run("trust", f"--prefix={PREFIX}", str(alice_file))
    assert code == 254
    assert "gpg key fingerprint is:" in out and "Are you sure" not in out
    assert err.splitlines()[-1].startswith(
        "trust: error reviewing key: unable to ask user to review fingerprint due to lack of "
        "tty")
    assert env.stored() == []


def _answers(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(trust_cli, "is_interactive", lambda: True)
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_prompt_yes(env: Env, keys: TestKeys, alice_file: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    _answers(monkeypatch, "maybe\nyes\n")
    code, out, err = env.run("trust", f"--prefix={PREFIX}", str(alice_file))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[2:] == [
        "Are you sure you want to trust this key (yes/no)?",
        "Please enter 'yes' or 'no'",
        "Are you sure you want to trust this key (yes/no)?",
        f'Trusting "{alice_file}" for prefix "{PREFIX}" after fingerprint review.',
        f'Added key for prefix "{PREFIX}" at '
        f'"{env.local / "trustedkeys/prefix.d" / PREFIX / keys.alice.fingerprint}"']


def test_prompt_no(env: Env, alice_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _answers(monkeypatch, "no\n")
    code, out, err = env.run("trust", f"--prefix={PREFIX}", str(alice_file))
    assert code == 0
    assert err.endswith(f'trust: not trusting "{alice_file}"\n')
    assert "Trusting" not in out and env.stored() == []


def test_prompt_eof(env: Env, alice_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _answers(monkeypatch, "")
    code, _, err = env.run("trust", f"--prefix={PREFIX}", str(alice_file))
    assert code == 254 and "error reading input: EOF" in err and env.stored() == []


def test_permission_denied_before_anything(env: Env, alice_file: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda *_a: False)
    code, out, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review",
                             str(alice_file))
    assert code == 254 and out == ""
    assert err.startswith("trust: cannot write trusted keys to ") and "rkt-admin" in err
    assert env.stored() == []


# --- URLs and discovery (the network is faked, gpg is real) ---------------------------------
class FakeNet:
    def __init__(self, keys: TestKeys, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_url = {"https://example.com/alice.gpg": keys.alice.armored,
                       "http://example.com/bob.gpg": keys.bob.armored}
        self.discovered: list[str] = ["https://example.com/alice.gpg"]
        self.calls: list[tuple[str, str, bool]] = []
        import rktd_less.fetch.discovery as discovery
        import rktd_less.fetch.http as http

        monkeypatch.setattr(discovery, "discover_pubkeys", self.discover)
        monkeypatch.setattr(http, "get_bytes", self.get_bytes)

    def discover(self, prefix: str, ctx: Context) -> list[str]:
        self.calls.append(("discover", prefix, "http" in ctx.insecure.options))
        return list(self.discovered)

    def get_bytes(self, url: str, ctx: Context, max_bytes: int) -> bytes:
        self.calls.append(("get", url, "http" in ctx.insecure.options))
        if url not in self.by_url:
            raise FetchError(f"bad HTTP status code: 404 for {url}")
        return self.by_url[url]


def test_trust_https_url(env: Env, keys: TestKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakeNet(keys, monkeypatch)
    code, _, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review",
                           "https://example.com/alice.gpg")
    assert code == 0, err
    assert 'key: "https://example.com/alice.gpg"' in err
    assert net.calls == [("get", "https://example.com/alice.gpg", False)]
    assert [p.name for p in env.stored()] == [keys.alice.fingerprint]


def test_trust_keys_from_https_skips_the_prompt(env: Env, keys: TestKeys,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNet(keys, monkeypatch)
    code, out, err = env.run("--trust-keys-from-https", "trust", f"--prefix={PREFIX}",
                             "https://example.com/alice.gpg")
    assert code == 0, err
    assert "without fingerprint review." in out


def test_trust_http_url_needs_the_flag(env: Env, keys: TestKeys,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakeNet(keys, monkeypatch)
    code, _, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review",
                           "http://example.com/bob.gpg")
    assert code == 254 and "--insecure-allow-http required" in err and net.calls == []
    code, _, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review",
                           "--insecure-allow-http", "http://example.com/bob.gpg")
    assert code == 0, err
    assert net.calls == [("get", "http://example.com/bob.gpg", True)]
    assert [p.name for p in env.stored()] == [keys.bob.fingerprint]


def test_trust_by_discovery(env: Env, keys: TestKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakeNet(keys, monkeypatch)
    code, out, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review")
    assert code == 0, err
    assert net.calls == [("discover", PREFIX, False),
                         ("get", "https://example.com/alice.gpg", False)]
    assert 'Trusting "https://example.com/alice.gpg" for prefix "example.com/hello"' in out
    assert [p.name for p in env.stored()] == [keys.alice.fingerprint]


def test_discovery_finds_nothing_or_fails(env: Env, keys: TestKeys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    net = FakeNet(keys, monkeypatch)
    net.discovered = []
    code, _, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review")
    assert code == 254
    assert err.startswith("trust: error determining key location: meta discovery on "
                          f"{PREFIX} resulted in no keys")
    net.discovered = ["https://example.com/missing.gpg"]
    code, _, err = env.run("trust", f"--prefix={PREFIX}", "--skip-fingerprint-review")
    assert code == 254
    assert err.startswith("trust: error accessing the key https://example.com/missing.gpg: "
                          "bad HTTP status code: 404")
    assert env.stored() == []


def test_help_lists_trust(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["help"]) == 0
    assert "trust         Trust a key for image verification" in capsys.readouterr().out
    assert main(["help", "trust"]) == 0
    assert "--prefix=PREFIX" in capsys.readouterr().out
