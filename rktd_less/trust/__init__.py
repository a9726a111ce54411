"""Trusted keys by prefix and detached-signature checks (rkt ``pkg/keystore``, reference §4.6).

python-gnupg is imported by ``gpg`` only, and only when a key is read or a signature checked,
so importing this package stays cheap.
"""

from .keystore import KeyInfo, Keystore, Signer, check_prefix, format_fingerprint, key_info

__all__ = ["KeyInfo", "Keystore", "Signer", "check_prefix", "format_fingerprint", "key_info"]
