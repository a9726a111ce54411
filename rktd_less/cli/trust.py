"""rkt trust: add keys to the local keystore (rkt/trust.go, rkt/pubkey/pubkey.go).

As rkt: ``prefix:``/``key:`` and refusals go to stderr; the fingerprint, identities, the prompt
and the ``Trusting …``/``Added …`` lines go to stdout.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..appc.types import q
from ..config import Insecure
from ..errors import FetchError, NotFound, TrustError, UsageError
from ..trust import KeyInfo, Keystore, check_prefix, format_fingerprint, key_info
from .context import Context
from .flags import Flag, Kind

SHORT = "Trust a key for image verification"
USAGE = """Usage:
  rkt trust [--prefix=PREFIX] [--insecure-allow-http] [--skip-fingerprint-review] [--root] \
[PUBKEY ...]

Adds keys to the local keystore for use in verifying signed images.

PUBKEY may be either a local file or URL.

PREFIX scopes the applicability of PUBKEY to image names sharing PREFIX.

Meta discovery of PUBKEY at PREFIX will be attempted if no PUBKEY is specified.

To trust a key for all images instead of for specific images, --root can be
specified. Path to a key file must be given (no discovery)."""
FLAGS: dict[str, Flag] = {
    "prefix": Flag(Kind.STR, "", "prefix to limit trust to"),
    "root": Flag(Kind.BOOL, False, "add root key from filesystem without a prefix"),
    "skip-fingerprint-review": Flag(Kind.BOOL, False,
                                    "accept key without fingerprint confirmation"),
    "insecure-allow-http": Flag(Kind.BOOL, False,
                                "allow HTTP use for key discovery and/or retrieval"),
}
MAX_KEY_BYTES = 1 << 20
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")  # what Go's url.Parse calls a scheme


def is_interactive() -> bool:
    """The fingerprint prompt needs a person: a terminal on stdin and on stderr (as rkt)."""
    return (sys.stdin is not None and sys.stdin.isatty() and sys.stderr is not None
            and sys.stderr.isatty())


def _fetch_ctx(ctx: Context, allow_http: bool) -> Context:
    """--insecure-allow-http lets discovery and key downloads use plain HTTP."""
    if allow_http and "http" not in ctx.insecure.options:
        return dataclasses.replace(ctx, insecure=Insecure(ctx.insecure.options | {"http"}))
    return ctx


def _locations(ctx: Context, prefix: str) -> list[str]:
    """``ac-discovery-pubkeys`` of the prefix (rkt's GetPubKeyLocations)."""
    from ..fetch.discovery import discover_pubkeys

    try:
        urls = list(discover_pubkeys(prefix, ctx))
    except FetchError as e:
        raise FetchError(f"error determining key location: prefix meta discovery error: "
                         f"{e.message}", hint=e.hint) from e
    if not urls:
        raise FetchError(f"error determining key location: meta discovery on {prefix} "
                         "resulted in no keys",
                         hint="give the key as a file or URL: rkt trust --prefix "
                              f"{prefix} <key URL or file>")
    return urls


def _scheme(location: str) -> str:
    """Empty for a file path, else the URL scheme (lowercase), as Go's ``url.Parse``."""
    return urlsplit(location).scheme.lower() if _SCHEME_RE.match(location) else ""


def _get_key(ctx: Context, location: str, allow_http: bool) -> bytes:
    scheme = _scheme(location)
    access = f"error accessing the key {location}"
    if scheme == "":
        path = Path(location)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_KEY_BYTES + 1)
        except FileNotFoundError as e:
            raise NotFound(f"{access}: no such file") from e
        except OSError as e:
            raise TrustError(f"{access}: {e.strerror}") from e
        if len(data) > MAX_KEY_BYTES:
            raise TrustError(f"{access}: larger than {MAX_KEY_BYTES} bytes")
        return data
    if scheme == "http" and not allow_http:
        raise TrustError(f"{access}: --insecure-allow-http required for http URLs",
                         hint="prefer an https:// URL")
    if scheme not in ("http", "https"):
        raise UsageError(f"{access}: only local files and http or https URLs supported")
    from ..fetch.http import get_bytes

    try:
        return get_bytes(location, ctx, MAX_KEY_BYTES)
    except FetchError as e:
        raise FetchError(f"{access}: {e.message}", hint=e.hint) from e


def _display(ctx: Context, prefix: str, location: str, info: KeyInfo) -> None:
    ctx.err(f"prefix: {q(prefix)}\nkey: {q(location)}")
    ctx.out(f"gpg key fingerprint is: {format_fingerprint(info.fingerprint)}")
    for sk in info.subkeys:
        ctx.out(f"    Subkey fingerprint: {format_fingerprint(sk)}")
    for uid in info.uids:
        ctx.out(f"\t{uid}")


def _review(ctx: Context) -> bool:
    while True:
        ctx.out("Are you sure you want to trust this key (yes/no)?")
        line = sys.stdin.readline()
        if not line:
            raise TrustError("error reviewing key: error reading input: EOF")
        answer = line.strip()
        if answer == "yes":
            return True
        if answer == "no":
            return False
        ctx.out("Please enter 'yes' or 'no'")


def add_keys(ctx: Context, ks: Keystore, locations: list[str], prefix: str, *,
             skip_review: bool, allow_http: bool) -> None:
    """rkt's ``pubkey.Manager.AddKeys``: fetch, show, ask (unless told not to), store."""
    for loc in locations:
        info = key_info(_get_key(ctx, loc, allow_http), source=loc)
        _display(ctx, prefix, loc, info)
        force = skip_review or (ctx.trust_keys_from_https and _scheme(loc) == "https")
        if not force:
            if not is_interactive():
                raise TrustError("error reviewing key: unable to ask user to review "
                                 "fingerprint due to lack of tty",
                                 hint="run on a terminal, or check the fingerprint above and "
                                      "pass --skip-fingerprint-review")
            if not _review(ctx):
                ctx.err(f"not trusting {q(loc)}")
                continue
        how = "without" if force else "after"
        ctx.out(f"Trusting {q(loc)} for prefix {q(prefix)} {how} fingerprint review.")
        if prefix:
            path = ks.store(info.armored, prefix)
            ctx.out(f"Added key for prefix {q(prefix)} at {q(str(path))}")
        else:
            path = ks.store(info.armored, None)
            ctx.out(f"Added root key at {q(str(path))}")


def main(ctx: Context, values: dict[str, Any], args: list[str]) -> int:
    prefix: str = values["prefix"] or ""
    root = bool(values["root"])
    if not prefix and not root:
        if args:
            raise UsageError("aborting due to implicit unbounded trust (root domain)",
                             hint='give a prefix: rkt trust --prefix "example.com/foo" '
                                  "[PUBKEY], or trust at the root domain (not recommended): "
                                  "rkt trust --root PUBKEY")
        raise UsageError("--prefix or --root is required", hint="see `rkt help trust`")
    if prefix and root:
        raise UsageError("--root and --prefix usage mutually exclusive")
    if ctx.insecure.skip_image():
        # rkt: getKeystore() is nil when signature checks are off.
        raise TrustError("could not get the keystore",
                         hint="--insecure-options=image disables the keystore; drop it to "
                              "trust keys")
    m = _SCHEME_RE.match(prefix)
    if m:
        raise UsageError(f"--prefix must not contain a URL scheme, omit {m.group(1)}://")
    if prefix:
        try:
            check_prefix(prefix)
        except TrustError as e:
            raise UsageError(e.message, hint=e.hint) from e
    if root and not args:
        raise UsageError("--root requires a key file or URL (no discovery for root keys)")
    ks = Keystore(ctx.config)
    ks.ensure_writable(prefix or None)
    allow_http = bool(values["insecure-allow-http"])
    fctx = _fetch_ctx(ctx, allow_http)
    locations = list(args) if args else _locations(fctx, prefix)
    add_keys(fctx, ks, locations, prefix, skip_review=bool(values["skip-fingerprint-review"]),
             allow_http=allow_http)
    return 0
