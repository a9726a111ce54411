"""Docker / OCI manifests as the registry client reads them (pure; reference §5).

- the media types a pull accepts (``ACCEPT``) and their groups: image manifests, manifest lists /
  OCI indexes, image configs, layers; the size limits of what is read into memory;
- ``media_type_of``: a manifest's type from the Content-Type header, else from the document;
- ``select_manifest``: the platform entry of a manifest list, as docker picks it;
- ``image_descriptors``: the config and layer descriptors of an image manifest, validated.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import FetchError
from .docker_ref import DIGEST_RE, DockerRef

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
LIST_TYPES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX))
CONFIG_TYPES = ("application/vnd.docker.container.image.v1+json",
                "application/vnd.oci.image.config.v1+json")
LAYER_TYPES = frozenset({
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})
MAX_MANIFEST = 4 << 20  # what docker itself accepts
MAX_CONFIG = 64 << 20

Descriptor = tuple[str, int, str]  # (digest, size, media type)


def select_manifest(manifests: object, os_: str, arch: str,
                    variant: str | None = None) -> dict[str, Any] | None:
    """The entry of a manifest list / OCI index for ``os_/arch[/variant]``, as docker picks it:
    an exact variant match first; without a wanted variant, arm64 prefers ``v8``/none."""
    if not isinstance(manifests, list):
        return None
    found: list[dict[str, Any]] = []
    for m in manifests:
        p = m.get("platform") if isinstance(m, dict) else None
        if isinstance(p, dict) and p.get("os") == os_ and p.get("architecture") == arch:
            found.append(m)

    def var(m: dict[str, Any]) -> str:
        return str(m["platform"].get("variant") or "")

    preferred = [variant] if variant else [""]
    if arch == "arm64" and variant in (None, "", "v8"):
        preferred = ["v8", ""]  # docker treats arm64 and arm64/v8 as one platform
    for want in preferred:
        for m in found:
            if var(m) == want:
                return m
    return found[0] if found and not variant else None


def platforms(manifests: object) -> str:
    """The platforms a manifest list offers, for an error message."""
    out = []
    for m in manifests if isinstance(manifests, list) else ():
        p = m.get("platform") if isinstance(m, dict) else None
        if isinstance(p, dict):
            out.append("/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k)))
    return ", ".join(out) or "none"


def descriptor(ref: DockerRef, d: object, what: str) -> Descriptor:
    if not isinstance(d, dict):
        raise FetchError(f'docker image "{ref}": the manifest has no valid {what}')
    digest, size, media_type = d.get("digest"), d.get("size"), d.get("mediaType", "")
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise FetchError(f'docker image "{ref}": unsupported {what} digest {json.dumps(digest)}')
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FetchError(f'docker image "{ref}": invalid size of {what} {digest}')
    return digest, size, str(media_type)


def json_object(ref: DockerRef, body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise FetchError(f'docker image "{ref}": the {what} is not a JSON object')
    return doc


def media_type_of(header: str, doc: dict[str, Any]) -> str:
    ct = header.partition(";")[0].strip().lower()
    if ct and ct not in ("application/json", "text/plain", "application/octet-stream"):
        return ct  # the registry's word, as docker takes it
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if doc.get("schemaVersion") == 1:
        return "application/vnd.docker.distribution.manifest.v1+json"
    if doc.get("schemaVersion") == 2 and "manifests" in doc:
        return OCI_INDEX
    if doc.get("schemaVersion") == 2 and "config" in doc:
        return OCI_MANIFEST
    return ct or "(none)"


def image_descriptors(ref: DockerRef, doc: dict[str, Any], manifest_type: str
                      ) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors (base layer first) of an image manifest of type
    ``manifest_type``; a FetchError for anything a pull cannot convert."""
    if manifest_type not in IMAGE_TYPES:
        raise FetchError(f'docker image "{ref}" has an unsupported manifest type'
                         f' "{manifest_type}"',
                         hint="only Docker schema 2 and OCI image manifests are supported")
    config = descriptor(ref, doc.get("config"), "config")
    _config_digest, config_size, config_type = config
    if config_type and config_type not in CONFIG_TYPES:
        raise FetchError(f'docker image "{ref}" is not a container image (config type'
                         f' "{config_type}")')
    if config_size > MAX_CONFIG:
        raise FetchError(f'docker image "{ref}": config of {config_size} bytes is too big')
    raw_layers = doc.get("layers")
    if not isinstance(raw_layers, list):
        raise FetchError(f'docker image "{ref}": the manifest has no "layers" list')
    layers = [descriptor(ref, d, "layer") for d in raw_layers]
    for _d, _size, layer_type in layers:
        if layer_type not in LAYER_TYPES:
            raise FetchError(f'docker image "{ref}" has a layer of unsupported type'
                             f' "{layer_type}"')
    return config, layers
