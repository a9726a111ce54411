"""Fetching images into the store: local files, https URLs and appc names, with signatures
verified by default (reference §3.4, §4.5, §4.6). Downloads and discovery live in ``http`` and
``discovery``; keys and signatures in ``rktd_less.trust``; this module puts them in order.

Every image is verified before it is imported: nothing unverified ever enters the store, and a
refused image leaves nothing behind but, for an interrupted download, the partial file that a
later fetch resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..appc.manifest import MAX_MANIFEST
from ..common.platform import host_arch
from ..config import ConfigDirs, Insecure
from ..errors import FetchError, ImageError, NotFound, TrustError, UsageError

if TYPE_CHECKING:
    from ..store import Store
    from .http import HttpOptions



@dataclass(frozen=True)
class FetchSettings:
    insecure: Insecure
    config: ConfigDirs
    trust_keys_from_https: bool = False
    pull_policy: str = "new"  # never | new | update
    say: Callable[[str], None] | None = None  # status lines for the user (stderr)


def peek_manifest(path: Path) -> dict[str, Any]:
    """The image manifest of an ACI file (plain or compressed) without unpacking it, to pick
    the keyring before anything is trusted."""
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if member.name in ("manifest", "./manifest") and member.isfile():
                    if member.size > MAX_MANIFEST:
                        raise ImageError(f'"{path}": manifest too large')
                    f = tar.extractfile(member)
                    assert f is not None
                    data: dict[str, Any] = json.loads(f.read())
                    return data
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise ImageError(f'"{path}" is not a valid ACI: {e}') from e
    raise ImageError(f'"{path}" is not a valid ACI: no manifest')


def _labels(manifest: Mapping[str, Any]) -> dict[str, str]:
    return {str(lb.get("name")): str(lb.get("value")) for lb in manifest.get("labels", [])}


def check_matches(manifest: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> None:
    """rkt's validator: the fetched image must be the one asked for."""
    got = manifest.get("name")
    if got != name:
        raise ImageError(f'image name mismatch: asked for "{name}", got "{got}"')
    have = _labels(manifest)
    for k, v in labels.items():
        if have.get(k) != v:
            raise ImageError(f'image "{name}": label {k}={v!r} requested, image has '
                             f"{k}={have.get(k)!r}")


class Fetcher:
    def __init__(self, store: Store, settings: FetchSettings) -> None:
        self.store = store
        self.s = settings
        self._http: HttpOptions | None = None

    # --- helpers -------------------------------------------------------------
    @property
    def http(self) -> HttpOptions:
        if self._http is None:
            from .http import options_from

            self._http = options_from(self.s.insecure, self.s.config)
        return self._http

    def _partial(self, url: str) -> Path:
        """The resumable download of ``url``: a stable path in cas/tmp, so that a later fetch
        continues it (use it inside ``hold_partial``)."""
        from ..store.lock import ensure_dir

        paths = self.store.paths
        ensure_dir(paths.data, paths.cas_tmp)
        return paths.cas_tmp / ("dl-" + hashlib.sha256(url.encode()).hexdigest()[:32]
                                + ".aci.part")

    def verify(self, name: str, data: Path, sig: Path | None) -> None:
        """Check ``sig`` over ``data`` with the keys trusted for ``name`` (unless
        --insecure-options=image). Without keys: trust-on-first-use over https when
        --trust-keys-from-https was given, else a clear refusal."""
        if self.s.insecure.skip_image():
            return
        if sig is None:
            raise TrustError(f'image "{name}" has no signature',
                             hint="use --insecure-options=image to run unsigned images")
        from ..trust import Keystore

        ks = Keystore(self.s.config)
        if not ks.has_keys_for(name) and self.s.trust_keys_from_https:
            self._trust_discovered_keys(ks, name)
        ks.verify(name, data, sig)

    def _trust_discovered_keys(self, ks: Any, name: str) -> None:
        """--trust-keys-from-https: keys named by the image's ac-discovery-pubkeys tags are
        trusted for the image name, without review, and said so as `rkt trust` does."""
        from ..trust import format_fingerprint, key_info
        from . import discovery, http

        urls = discovery.discover_pubkeys_with(name, self.http)
        allow_http = "pubkey" in self.s.insecure.options
        say = self.s.say or (lambda _line: None)
        for url in urls:
            if not url.startswith("https://") and not allow_http:
                say(f'not trusting "{url}": not fetched over https')
                continue
            # --insecure-options=pubkey lowers exactly this: keys may come over plain http
            opts = dataclasses.replace(self.http, allow_http=True) if allow_http else self.http
            armored = http.get_bytes(url, opts, 1 << 20)
            info = key_info(armored, url)
            say(f'prefix: "{name}"')
            say(f'key: "{url}"')
            say(f"gpg key fingerprint is: {format_fingerprint(info.fingerprint)}")
            for uid in info.uids:
                say(f"\t{uid}")
            path = ks.store(armored, name)
            say(f'Trusting "{url}" for prefix "{name}" without fingerprint review.')
            say(f'Added key for prefix "{name}" at "{path}"')

    # --- sources -------------------------------------------------------------
    def from_file(self, path: Path, signature: str | None) -> str:
        if not path.exists():
            raise NotFound(f'image file "{path}" not found')
        if not path.is_file():
            raise ImageError(f'"{path}" is not a file')
        if self.s.insecure.skip_image():
            return self.store.import_aci(path)
        sig = Path(signature) if signature else Path(str(path) + ".asc")
        if not sig.exists():
            raise TrustError(f'error opening signature file "{sig}": no such file',
                             hint="pass --signature FILE, or --insecure-options=image to skip "
                                  "verification")
        manifest = peek_manifest(path)
        self.verify(str(manifest.get("name", "")), path, sig)
        return self.store.import_aci(path)

    def from_url(self, url: str, signature: str | None = None) -> str:
        from .http import download

        remote = self.store.index.get_remote(url)
        if remote is not None and self.store.index.get(remote.key) is not None:
            fresh = time.time() < remote.download_time + remote.cache_max_age
            if self.s.pull_policy == "new" or fresh:
                return remote.key
        from ..store.tmp import hold_partial

        part = self._partial(url)
        etag = remote.etag if remote is not None and self.store.index.get(remote.key) else None
        sig_url = signature or (url[: -len(".aci")] + ".aci.asc" if url.endswith(".aci")
                                else url + ".asc")
        with hold_partial(self.store.paths, part):
            res = download(url, part, self.http, etag=etag, label="Downloading ACI")
            if res.status == 304 and remote is not None:
                self._remember(url, remote.sig_url, res.etag or remote.etag, remote.key,
                               res.max_age)
                return remote.key
            key = self._verify_and_import(part, sig_url, None, {})
        self._remember(url, sig_url, res.etag or "", key, res.max_age)
        return key

    def from_name(self, name: str, labels: Mapping[str, str], *, latest: bool) -> str:
        from ..store.tmp import hold_partial
        from . import discovery
        from .http import download

        ep = discovery.discover(name, labels, self.http)
        part = self._partial(ep.aci_url)
        with hold_partial(self.store.paths, part):
            download(ep.aci_url, part, self.http, label="Downloading ACI")
            key = self._verify_and_import(part, ep.sig_url, name, labels, latest=latest)
        self.fetch_dependencies(key)
        return key

    def _verify_and_import(self, aci: Path, sig_url: str | None, name: str | None,
                           labels: Mapping[str, str], *, latest: bool = False) -> str:
        sig_path: Path | None = None
        try:
            manifest = peek_manifest(aci)
            if name is not None:
                check_matches(manifest, name, labels)
            if not self.s.insecure.skip_image() and sig_url is not None:
                sig_path = self._fetch_signature(sig_url)
            self.verify(str(manifest.get("name", "")), aci, sig_path)
            return self.store.import_aci(aci, latest=latest)
        finally:
            aci.unlink(missing_ok=True)
            aci.with_name(aci.name + ".meta").unlink(missing_ok=True)
            if sig_path is not None:
                sig_path.unlink(missing_ok=True)

    def _fetch_signature(self, sig_url: str) -> Path:
        if "://" not in sig_url:
            return Path(sig_url)
        from ..store.tmp import private_dir
        from .http import download

        dest = private_dir(self.store.paths) / (
            "sig-" + hashlib.sha256(sig_url.encode()).hexdigest()[:32] + ".asc")
        dest.unlink(missing_ok=True)
        try:
            download(sig_url, dest, self.http, label="Downloading signature")
        except FetchError as e:
            dest.unlink(missing_ok=True)
            raise TrustError(f"cannot fetch the signature: {e.message}",
                             hint="use --insecure-options=image to skip verification") from e
        return dest

    def _remember(self, url: str, sig_url: str, etag: str, key: str, max_age: int | None) -> None:
        from ..store.index import Remote

        self.store.index.put_remote(Remote(aci_url=url, sig_url=sig_url, etag=etag, key=key,
                                           cache_max_age=max_age or 0,
                                           download_time=time.time()))

    # --- dependencies ----------------------------------------------------------
    def fetch_dependencies(self, key: str, _seen: frozenset[str] = frozenset()) -> None:
        """appc: dependencies are discovered, fetched and verified like the image itself."""
        if key in _seen:
            raise ImageError(f"dependency loop at {key}")
        manifest = json.loads(self.store.manifest_bytes(key))
        for dep in manifest.get("dependencies", []) or []:
            self.fetch_dependency(
                str(dep.get("imageName", "")),
                {str(lb["name"]): str(lb["value"]) for lb in dep.get("labels", []) or []},
                str(dep.get("imageID") or ""), str(manifest.get("name")), _seen | {key})

    def fetch_dependency(self, name: str, labels: Mapping[str, str], image_id: str,
                         parent: str, _seen: frozenset[str] = frozenset()) -> str:
        """One dependency of image ``parent`` (and its own dependencies), from the store or
        else discovered, fetched and verified; its key."""
        # os and arch as for images named on the command line
        want = {"os": "linux", "arch": host_arch(), **labels}
        key: str | None = None
        if image_id:
            try:
                key = self.store.resolve_id(image_id)
            except NotFound:
                key = None
        if key is None:
            key = self.store.find_by_name(name, want)
        if key is None:
            if self.s.pull_policy == "never":
                raise NotFound(f'dependency "{name}" of "{parent}" is not in the store',
                               hint="fetch it first")
            key = self.from_name(name, want, latest="version" not in want)
        if image_id and not key.startswith(image_id[:71]):
            raise ImageError(f'dependency "{name}": image ID mismatch')
        self.fetch_dependencies(key, _seen)
        return key


def check_policy(policy: str) -> str:
    if policy not in ("never", "new", "update"):
        raise UsageError(f'invalid pull policy "{policy}"', hint="use one of never, new, update")
    return policy
