"""`docker://` images: pull from a Docker Registry v2, convert to one squashed ACI
(docker2aci's rules, reference §5), import, and cache by manifest digest.

Docker images carry no appc signature, so, as in rkt, they need --insecure-options=image.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.platform import host_arch
from ..errors import TrustError

if TYPE_CHECKING:
    from ..store import Store
    from .http import HttpOptions
    from .images import FetchSettings
    from .registry import DockerRef


def cache_url(ref: DockerRef) -> str:
    """The remote-cache key of a docker image: what was asked for, tag or digest."""
    what = f"@{ref.digest}" if ref.digest else f":{ref.tag}"
    return f"docker://{ref.registry}/{ref.repository}{what}"


def fetch_docker(store: Store, text: str, settings: FetchSettings, http: HttpOptions) -> str:
    from ..convert.manifest import aci_manifest
    from ..convert.squash import squash
    from ..store.index import Remote
    from . import registry

    if not settings.insecure.skip_image():
        raise TrustError("docker images cannot be signature-verified",
                         hint="use --insecure-options=image to fetch docker images")
    ref = registry.parse_docker_ref(text)
    url = cache_url(ref)
    remote = store.index.get_remote(url)
    cached = remote if remote is not None and store.index.get(remote.key) is not None else None
    if cached is not None and (settings.pull_policy == "new" or ref.digest):
        return cached.key
    if settings.pull_policy == "never":
        if cached is None:
            from ..errors import NotFound

            raise NotFound(f'image "{text}" not found in the store (pull policy never)')
        return cached.key
    # update: one manifest request tells whether the tag still names the same image
    if cached is not None and registry.manifest_digest(ref, http) == cached.etag:
        return cached.key
    from ..store.tmp import private_dir

    work = Path(tempfile.mkdtemp(prefix="docker-", dir=private_dir(store.paths)))
    try:
        pulled = registry.pull(ref, work / "blobs", http, os="linux", arch=_docker_arch())
        manifest = aci_manifest(
            pulled.config, appc_name=ref.appc_name, tag=ref.tag or "latest",
            registry=ref.registry, repository=ref.repository, original_name=text,
            manifest_digest=pulled.manifest_digest, image_id=pulled.config_digest)
        out = work / "image.aci"
        squash([(layer.path, layer.media_type) for layer in pulled.layers], manifest, out)
        key = store.import_aci(out, latest=(ref.tag == "latest" and not ref.digest))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # what the tag resolves to (a manifest list's digest for multi-arch images), as
    # manifest_digest() reports it for the next `update`
    store.index.put_remote(Remote(aci_url=url, sig_url="", etag=pulled.ref_digest, key=key,
                                  cache_max_age=0, download_time=time.time()))
    return key


def _docker_arch() -> str:
    return {"amd64": "amd64", "aarch64": "arm64", "i386": "386"}.get(host_arch(), host_arch())
