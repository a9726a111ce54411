"""From an image argument to a store key (rkt/image/common.go classification, §1.4)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.platform import host_arch
from ..errors import NotFound, UsageError
from ..ids import looks_like_image_id
from .images import FetchSettings

if TYPE_CHECKING:
    from ..store import Store


class ImageKind(StrEnum):
    HASH = "hash"
    FILE = "file"
    URL = "url"
    DOCKER = "docker"
    NAME = "name"


def classify(text: str) -> ImageKind:
    if looks_like_image_id(text.lower()):
        return ImageKind.HASH
    if text.startswith("docker:"):
        return ImageKind.DOCKER
    if text.startswith(("http://", "https://", "file://")):
        return ImageKind.FILE if text.startswith("file://") else ImageKind.URL
    if text.startswith("/") or "./" in text or os.path.isfile(text):
        return ImageKind.FILE
    return ImageKind.NAME


def parse_name(text: str) -> tuple[str, dict[str, str]]:
    """appc ``name[:version][,label=value...]``."""
    from ..appc.types import is_ac_identifier

    head, *rest = text.split(",")
    labels: dict[str, str] = {}
    name, colon, version = head.partition(":")
    if not is_ac_identifier(name):
        # before anything is looked up or discovered (it went to the network)
        raise UsageError(f'invalid image name "{text}": "{name}" is not a valid AC identifier',
                         hint="use lower-case letters, digits and -._~/, as example.com/app")
    if colon:
        if not version:
            raise UsageError(f'invalid image name "{text}": empty version')
        labels["version"] = version
    for item in rest:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise UsageError(f'invalid image name "{text}": bad label "{item}"')
        labels[k] = v
    return name, labels


def resolve_image(store: Store, text: str, settings: FetchSettings,
                  signature: str | None = None) -> str:
    """The store key of an image argument, fetching (and verifying) it as the pull policy says:
    ``new`` uses the store first, ``update`` always asks the remote, ``never`` only the store."""
    from .images import Fetcher

    kind = classify(text)
    fetcher = Fetcher(store, settings)
    if kind == ImageKind.HASH:
        return store.resolve_id(text)
    if kind == ImageKind.FILE:
        path = text[len("file://"):] if text.startswith("file://") else text
        return fetcher.from_file(Path(path), signature)
    if kind == ImageKind.DOCKER:
        from .docker import fetch_docker

        return fetch_docker(store, text, settings, fetcher.http)
    if kind == ImageKind.URL:
        if settings.pull_policy == "never":
            remote = store.index.get_remote(text)
            if remote is None or store.index.get(remote.key) is None:
                raise NotFound(f'image "{text}" not found in the store (pull policy never)')
            return remote.key
        if text.startswith("http://") and "http" not in settings.insecure.options:
            raise UsageError(f'refusing to fetch "{text}" over plain http',
                             hint="use https, or --insecure-options=http")
        return fetcher.from_url(text, signature)
    name, labels = parse_name(text)
    # rkt looks images up for the host's os and arch unless asked otherwise.
    labels.setdefault("os", "linux")
    labels.setdefault("arch", host_arch())
    if settings.pull_policy != "update":
        key = store.find_by_name(name, labels)
        if key is not None:
            return key
        if settings.pull_policy == "never":
            raise NotFound(f'image "{text}" not found in the store',
                           hint="fetch it first, or use --pull-policy=new")
    return fetcher.from_name(name, labels, latest="version" not in labels)
