"""Image IDs, pod UUIDs, and the unit and machine names derived from them."""

from __future__ import annotations

import os
import re

from .errors import UsageError

HASH_PREFIX = "sha512-"
KEY_HEX = 64  # store key: first half of the sha512 hex digest (rkt lenHashKey)
FETCH_HEX = 32  # what `rkt fetch` prints (types.ShortHash)
SHORT_HEX = 12  # what `rkt image list` / `rkt list --full` print

_HEX = re.compile(r"^[0-9a-f]*$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def key_from_digest(hexdigest: str) -> str:
    """Store key of an image from the full sha512 hex digest of its uncompressed tar."""
    return HASH_PREFIX + hexdigest[:KEY_HEX]


def fetch_id(key: str) -> str:
    return key[: len(HASH_PREFIX) + FETCH_HEX]


def short_id(key: str) -> str:
    return key[: len(HASH_PREFIX) + SHORT_HEX]


def looks_like_image_id(text: str) -> bool:
    """True for ``sha512-`` followed by at least two lowercase hex digits (rkt's minimum)."""
    if not text.startswith(HASH_PREFIX):
        return False
    rest = text[len(HASH_PREFIX) :]
    return 2 <= len(rest) <= 128 and bool(_HEX.match(rest))


def normalize_image_id_prefix(text: str) -> str:
    """Lower-case and validate an image ID prefix; a full 128-hex ID is cut to the key length."""
    t = text.strip().lower()
    if not looks_like_image_id(t):
        raise UsageError(
            f"invalid image ID {text!r}",
            hint="an image ID looks like sha512-<hex>, at least sha512-xx",
        )
    return t[: len(HASH_PREFIX) + KEY_HEX]


def new_pod_uuid() -> str:
    """A random (version 4) UUID, as uuid.uuid4() makes it; the uuid module is not imported
    for it: it pulls in platform and costs ~2.6 ms on the way of every `rkt run`."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_full_uuid(text: str) -> bool:
    return bool(_UUID_RE.match(text))


def machine_name(uuid: str) -> str:
    return f"rkt-{uuid}"


def unit_name(uuid: str) -> str:
    return f"rkt-{uuid}.service"


def machine_id(uuid: str) -> str:
    """The pod's /etc/machine-id: the UUID without dashes (rkt)."""
    return uuid.replace("-", "")
