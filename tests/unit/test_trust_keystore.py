"""The keystore with real gpg: layout, prefix walk, layers and masking, signature checks."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from rktd_less.config import ConfigDirs
from rktd_less.errors import NotFound, PermissionDenied, TrustError
from rktd_less.trust import Keystore, format_fingerprint, key_info
from tests.helpers.gpg import TestKey, TestKeys, session_keys, sign_with_other_key

NAME = "example.com/hello"


@pytest.fixture(scope="session")
def keys() -> TestKeys:
    return session_keys()


@pytest.fixture
def cfg(tmp_path: Path) -> ConfigDirs:
    return ConfigDirs(system=tmp_path / "usr-lib-rkt", local=tmp_path / "etc-rkt", user=None)


@pytest.fixture
def signed(tmp_path: Path, keys: TestKeys) -> Path:
    data = tmp_path / "image.aci"
    data.write_bytes(b"pretend this is an ACI\n" * 100)
    return data


def put(base: Path, prefix: str | None, key: TestKey | None, name: str | None = None,
        content: bytes | None = None) -> Path:
    """Place a key file by hand, as a vendor or an admin would."""
    d = base / "trustedkeys" / ("root.d" if prefix is None else f"prefix.d/{prefix}")
    d.mkdir(parents=True, exist_ok=True)
    fname = name or (key.fingerprint if key else "0" * 40)
    p = d / fname
    p.write_bytes(content if content is not None else (key.armored if key else b""))
    return p


def mask(base: Path, prefix: str | None, key: TestKey) -> Path:
    return put(base, prefix, key, content=b"")


# --- store ---------------------------------------------------------------------------------
def test_store_prefix_and_root_layout_and_modes(cfg: ConfigDirs, keys: TestKeys) -> None:
    ks = Keystore(cfg)
    old = os.umask(0o077)  # rkt's modes whatever the umask
    try:
        p = ks.store(keys.alice.armored, NAME)
        r = ks.store(keys.bob.armored, None)
    finally:
        os.umask(old)
    assert p == cfg.local / "trustedkeys/prefix.d/example.com/hello" / keys.alice.fingerprint
    assert r == cfg.local / "trustedkeys/root.d" / keys.bob.fingerprint
    assert p.read_bytes() == keys.alice.armored and r.read_bytes() == keys.bob.armored
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    for d in (p.parent, p.parent.parent, cfg.local / "trustedkeys/prefix.d", r.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    assert sorted(x.name for x in p.parent.iterdir()) == [keys.alice.fingerprint]
    assert not cfg.system.exists()


def test_store_overwrites_same_key(cfg: ConfigDirs, keys: TestKeys) -> None:
    ks = Keystore(cfg)
    assert ks.store(keys.alice.armored, NAME) == ks.store(keys.alice.armored, NAME)
    assert len(ks.keys_for(NAME)) == 1


def test_store_refuses_non_keys_and_leaves_nothing(cfg: ConfigDirs, keys: TestKeys) -> None:
    ks = Keystore(cfg)
    with pytest.raises(TrustError, match=r'^"key" is not a PGP public key$'):
        ks.store(b"hello world\n", NAME)
    with pytest.raises(TrustError, match="is a PGP private key"):
        ks.store(b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nabc\n", NAME)
    with pytest.raises(TrustError, match="holds 2 public keys"):
        ks.store(keys.alice.armored + keys.bob.armored, NAME)
    with pytest.raises(TrustError, match="not a valid AC Identifier"):
        ks.store(keys.alice.armored, "../etc")
    assert not cfg.local.exists()


def test_store_permission_denied(cfg: ConfigDirs, keys: TestKeys,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(*_a: object, **_k: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", deny)  # the write, after the key is read
    with pytest.raises(PermissionDenied, match="cannot write trusted keys") as e:
        Keystore(cfg).store(keys.alice.armored, NAME)
    assert e.value.hint is not None and "rkt-admin" in e.value.hint


def test_ensure_writable(cfg: ConfigDirs, monkeypatch: pytest.MonkeyPatch) -> None:
    ks = Keystore(cfg)
    cfg.local.mkdir()
    ks.ensure_writable(NAME)  # nearest existing ancestor is writable
    monkeypatch.setattr(os, "access", lambda *_a: False)
    with pytest.raises(PermissionDenied) as e:
        ks.ensure_writable(None)
    assert "root.d" in e.value.message and e.value.hint and "rkt-admin" in e.value.hint



# --- the prefix walk ---------------------------------------------------------------------
def test_prefix_walk_by_components(cfg: ConfigDirs, keys: TestKeys) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, NAME)
    hello = [cfg.local / "trustedkeys/prefix.d" / NAME / keys.alice.fingerprint]
    assert ks.keys_for(NAME) == hello
    assert ks.keys_for("example.com/hello/world") == hello
    assert ks.keys_for("example.com/hello/world/deeper") == hello
    for other in ("example.com/hellox", "example.com/hell", "example.com", "example.org/hello",
                  "example.org/example.com/hello", "hello"):
        assert ks.keys_for(other) == [], other
        assert not ks.has_keys_for(other)
    assert ks.has_keys_for(NAME) and ks.has_keys_for("example.com/hello/world")


def test_host_prefix_and_root_keys(cfg: ConfigDirs, keys: TestKeys) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, "example.com")
    assert len(ks.keys_for("example.com/anything/below")) == 1
    assert ks.keys_for("example.comx/a") == []
    ks.store(keys.bob.armored, None)
    assert {p.name for p in ks.keys_for("example.com/x")} == {keys.alice.fingerprint,
                                                             keys.bob.fingerprint}
    assert [p.name for p in ks.keys_for("other.org/x")] == [keys.bob.fingerprint]
    # A root key alone does not stop fetch from discovering the prefix's own keys (as rkt).
    assert not ks.has_keys_for("other.org/x")


def test_system_and_local_layers(cfg: ConfigDirs, keys: TestKeys) -> None:
    put(cfg.system, "example.com", keys.alice)
    put(cfg.local, NAME, keys.bob)
    put(cfg.system, None, keys.carol)
    ks = Keystore(cfg)
    assert [p.parent for p in ks.keys_for(NAME)] == [
        cfg.system / "trustedkeys/root.d",
        cfg.system / "trustedkeys/prefix.d/example.com",
        cfg.local / "trustedkeys/prefix.d/example.com/hello"]
    assert [p.name for p in ks.keys_for("example.com/other")] == [keys.carol.fingerprint,
                                                                  keys.alice.fingerprint]


def test_user_layer_is_read_too(tmp_path: Path, keys: TestKeys) -> None:
    cfg = ConfigDirs(system=tmp_path / "s", local=tmp_path / "l", user=tmp_path / "u")
    put(tmp_path / "u", NAME, keys.alice)
    ks = Keystore(cfg)
    assert [p.name for p in ks.keys_for(NAME)] == [keys.alice.fingerprint]
    assert ks.store(keys.bob.armored, NAME).is_relative_to(tmp_path / "l")


def test_empty_local_file_masks_system_key(cfg: ConfigDirs, keys: TestKeys) -> None:
    put(cfg.system, NAME, keys.alice)
    put(cfg.system, None, keys.bob)
    put(cfg.system, NAME, keys.carol)
    ks = Keystore(cfg)
    assert len(ks.keys_for(NAME)) == 3
    mask(cfg.local, NAME, keys.alice)
    mask(cfg.local, None, keys.bob)
    assert [p.name for p in ks.keys_for(NAME)] == [keys.carol.fingerprint]
    mask(cfg.local, NAME, keys.carol)
    assert ks.keys_for(NAME) == [] and not ks.has_keys_for(NAME)


def test_badly_named_key_file(cfg: ConfigDirs, keys: TestKeys) -> None:
    bad = put(cfg.local, NAME, keys.alice, name="alice.pub")
    with pytest.raises(TrustError, match=f'"{bad}" is not named by a key fingerprint'):
        Keystore(cfg).keys_for(NAME)


def test_invalid_names(cfg: ConfigDirs) -> None:
    ks = Keystore(cfg)
    for bad in ("", "../x", "example.com/../x", "/abs", "Example.com", "a//b", "a/", "x\n"):
        with pytest.raises(TrustError, match="not a valid AC Identifier"):
            ks.keys_for(bad)


# --- verify -------------------------------------------------------------------------------
@pytest.mark.parametrize("armor", [True, False], ids=["armored", "binary"])
def test_verify_good_signature(cfg: ConfigDirs, keys: TestKeys, signed: Path,
                               armor: bool) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, NAME)
    ks.store(keys.bob.armored, None)
    signer = ks.verify(NAME, signed, keys.alice.sign(signed, armor=armor))
    assert signer.fingerprint == keys.alice.fingerprint
    assert signer.uids == ("Alice Example <alice@example.com>",)


def test_verify_through_ancestor_prefix_and_root(cfg: ConfigDirs, keys: TestKeys,
                                                 signed: Path) -> None:
    put(cfg.system, "example.com", keys.alice)
    put(cfg.system, None, keys.bob)
    ks = Keystore(cfg)
    name = "example.com/hello/world"
    assert ks.verify(name, signed, keys.alice.sign(signed)).fingerprint == keys.alice.fingerprint
    assert ks.verify(name, signed, keys.bob.sign(signed)).fingerprint == keys.bob.fingerprint


def test_verify_signing_subkey_counts_for_its_primary(cfg: ConfigDirs, keys: TestKeys,
                                                     signed: Path) -> None:
    ks = Keystore(cfg)
    ks.store(keys.carol.armored, NAME)
    assert ks.verify(NAME, signed, keys.carol.sign(signed)).fingerprint == keys.carol.fingerprint


def test_verify_bad_signature(cfg: ConfigDirs, keys: TestKeys, signed: Path) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, NAME)
    for armor in (True, False):
        sig = keys.alice.sign(signed, armor=armor)
        signed.write_bytes(signed.read_bytes() + b"tampered")
        with pytest.raises(TrustError) as e:
            ks.verify(NAME, signed, sig)
        assert e.value.message == f'signature verification failed for "{NAME}": bad signature'


def test_verify_untrusted_key(cfg: ConfigDirs, keys: TestKeys, signed: Path) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, NAME)
    with pytest.raises(TrustError) as e:
        ks.verify(NAME, signed, sign_with_other_key(signed))
    assert e.value.message == (f'signature verification failed for "{NAME}": signed by key '
                               f'{keys.stranger.key_id}, which is not trusted for prefix '
                               f'"{NAME}"')
    assert e.value.hint and f"rkt trust --prefix {NAME}" in e.value.hint


def test_verify_key_trusted_for_another_prefix(cfg: ConfigDirs, keys: TestKeys,
                                               signed: Path) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, NAME)
    ks.store(keys.bob.armored, "example.com/hellox")
    ks.store(keys.bob.armored, "example.org/hello")
    with pytest.raises(TrustError, match=f"signed by key {keys.bob.key_id}, which is not "
                                         "trusted"):
        ks.verify(NAME, signed, keys.bob.sign(signed))


def test_verify_without_keys(cfg: ConfigDirs, keys: TestKeys, signed: Path) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, "example.org/hello")
    with pytest.raises(TrustError) as e:
        ks.verify(NAME, signed, keys.alice.sign(signed))
    assert e.value.message == 'no keys trusted for prefix "example.com/hello"'
    assert e.value.hint == ("trust one with: rkt trust --prefix example.com/hello "
                            "<key URL or file>")


def test_verify_masked_key_is_not_trusted(cfg: ConfigDirs, keys: TestKeys,
                                          signed: Path) -> None:
    put(cfg.system, NAME, keys.alice)
    put(cfg.system, NAME, keys.bob)
    mask(cfg.local, NAME, keys.alice)
    ks = Keystore(cfg)
    assert ks.verify(NAME, signed, keys.bob.sign(signed)).fingerprint == keys.bob.fingerprint
    with pytest.raises(TrustError, match="not trusted for prefix"):
        ks.verify(NAME, signed, keys.alice.sign(signed))


def test_verify_file_fingerprint_mismatch(cfg: ConfigDirs, keys: TestKeys,
                                          signed: Path) -> None:
    # Bob's key filed under Alice's fingerprint must not make Bob trusted.
    bad = put(cfg.local, NAME, keys.bob, name=keys.alice.fingerprint)
    with pytest.raises(TrustError) as e:
        Keystore(cfg).verify(NAME, signed, keys.bob.sign(signed))
    assert f'"{bad}"' in e.value.message and keys.bob.fingerprint in e.value.message


def test_verify_two_keys_in_one_file(cfg: ConfigDirs, keys: TestKeys, signed: Path) -> None:
    put(cfg.local, NAME, keys.alice, content=keys.alice.armored + keys.bob.armored)
    with pytest.raises(TrustError, match="not the one it is named after"):
        Keystore(cfg).verify(NAME, signed, keys.bob.sign(signed))


def test_verify_key_file_that_is_not_a_key(cfg: ConfigDirs, keys: TestKeys,
                                           signed: Path) -> None:
    bad = put(cfg.local, NAME, keys.alice, content=b"this is not a key\n")
    with pytest.raises(TrustError) as e:
        Keystore(cfg).verify(NAME, signed, keys.alice.sign(signed))
    assert e.value.message == f'"{bad}" is not a PGP public key'
    bad.write_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnope\n"
                    b"-----END PGP PUBLIC KEY BLOCK-----\n")
    with pytest.raises(TrustError, match="is not a PGP public key"):
        Keystore(cfg).verify(NAME, signed, keys.alice.sign(signed))


def _both(first: Path, second: Path, out: Path) -> Path:
    """One signature file holding two binary detached signatures, as gpg reads them."""
    out.write_bytes(first.read_bytes() + second.read_bytes())
    return out


@pytest.mark.parametrize("good_first", [True, False], ids=["good-first", "good-last"])
def test_verify_every_signature_in_the_file_counts(cfg: ConfigDirs, keys: TestKeys,
                                                   signed: Path, tmp_path: Path,
                                                   good_first: bool) -> None:
    # A good signature by a trusted key does not excuse another one in the same file, whatever
    # the order (python-gnupg 0.4.9 reports only the last signature; 0.5 lists problems).
    put(cfg.local, NAME, keys.alice)
    put(cfg.local, NAME, keys.expired)
    good = keys.alice.sign(signed, tmp_path / "good.sig", armor=False)
    for other, message in (
            (keys.stranger.sign(signed, tmp_path / "stranger.sig", armor=False),
             f"signed by key {keys.stranger.key_id}, which is not trusted for prefix "
             f'"{NAME}"'),
            (keys.expired.sign(signed, tmp_path / "expired.sig", armor=False),
             "signing key has expired")):
        pair = (good, other) if good_first else (other, good)
        sig = _both(*pair, tmp_path / "both.sig")
        with pytest.raises(TrustError) as e:
            Keystore(cfg).verify(NAME, signed, sig)
        assert e.value.message == f'signature verification failed for "{NAME}": {message}'


def test_verify_expired_key(cfg: ConfigDirs, keys: TestKeys, signed: Path) -> None:
    put(cfg.local, NAME, keys.expired)
    with pytest.raises(TrustError) as e:
        Keystore(cfg).verify(NAME, signed, keys.expired.sign(signed))
    assert e.value.message == (f'signature verification failed for "{NAME}": '
                               "signing key has expired")


def test_verify_signature_file_problems(cfg: ConfigDirs, keys: TestKeys, signed: Path,
                                        tmp_path: Path) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, NAME)
    junk = tmp_path / "junk.asc"
    junk.write_bytes(b"not a signature at all\n")
    with pytest.raises(TrustError, match="no valid signatures found in signature file"):
        ks.verify(NAME, signed, junk)
    key_as_sig = keys.alice.export(tmp_path / "key.asc")
    with pytest.raises(TrustError, match="no valid signatures found"):
        ks.verify(NAME, signed, key_as_sig)
    with pytest.raises(NotFound, match="signature file"):
        ks.verify(NAME, signed, tmp_path / "missing.asc")
    with pytest.raises(NotFound, match="signed file"):
        ks.verify(NAME, tmp_path / "missing.aci", keys.alice.sign(signed))


def test_verify_leaves_no_gpg_home_and_ignores_users_gnupg(
        cfg: ConfigDirs, keys: TestKeys, signed: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ks = Keystore(cfg)
    ks.store(keys.alice.armored, NAME)
    sig = keys.alice.sign(signed)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    user_home = tmp_path / "gnupg-of-user"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("GNUPGHOME", str(user_home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ks.verify(NAME, signed, sig)
    with pytest.raises(TrustError):
        ks.verify(NAME, signed, sign_with_other_key(signed))
    assert list(tmp.iterdir()) == []
    assert not user_home.exists() and not (tmp_path / "home").exists()


# --- key_info and the fingerprint format ----------------------------------------------
def test_key_info(keys: TestKeys) -> None:
    info = key_info(keys.carol.armored, source="carol.pub")
    assert info.fingerprint == keys.carol.fingerprint
    assert info.uids == ("Carol Example <carol@example.com>",)
    assert len(info.subkeys) == 1 and info.armored == keys.carol.armored
    with pytest.raises(TrustError, match=r'^"carol.pub" is not a PGP public key$'):
        key_info(b"\x99\x01binary junk", source="carol.pub")


def test_format_fingerprint() -> None:
    assert format_fingerprint("8b86de38890ddb7291867b025210bd8888182190") == \
        "8B86 DE38 890D DB72 9186  7B02 5210 BD88 8818 2190"
