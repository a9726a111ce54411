"""From an image argument to a store key (rkt/image/common.go classification, §1.4)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Insecure
from ..errors import ImageError, NotFound, UsageError
from ..ids import looks_like_image_id
from ..stage1.image import host_arch

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
    head, *rest = text.split(",")
    labels: dict[str, str] = {}
    name, colon, version = head.partition(":")
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


def import_file(store: Store, path_text: str, insecure: Insecure,
                signature: str | None = None) -> str:
    path = Path(path_text[len("file://"):] if path_text.startswith("file://") else path_text)
    if not path.exists():
        raise NotFound(f'image file "{path}" not found')
    if not path.is_file():
        raise ImageError(f'"{path}" is not a file')
    if not insecure.skip_image():
        sig = Path(signature) if signature else Path(str(path) + ".asc")
        if not sig.exists():
            raise ImageError(f'error opening signature file "{sig}": no such file',
                             hint="pass --signature FILE, or --insecure-options=image to skip "
                                  "verification")
        raise ImageError("signature verification is not available in this build yet",
                         hint="use --insecure-options=image for images you trust")
    return store.import_aci(path)


def resolve_image(store: Store, text: str, insecure: Insecure, pull_policy: str = "new",
                  signature: str | None = None) -> str:
    kind = classify(text)
    if kind == ImageKind.HASH:
        return store.resolve_id(text)
    if kind == ImageKind.FILE:
        return import_file(store, text, insecure, signature)
    if kind == ImageKind.DOCKER:
        raise ImageError(f'cannot fetch "{text}": docker images are not supported yet')
    if kind == ImageKind.URL:
        raise ImageError(f'cannot fetch "{text}": remote images are not supported yet',
                         hint="download it and pass the local file")
    name, labels = parse_name(text)
    # rkt looks images up for the host's os and arch unless asked otherwise.
    labels.setdefault("os", "linux")
    labels.setdefault("arch", host_arch())
    key = store.find_by_name(name, labels) if pull_policy != "update" else None
    if key is None:
        raise NotFound(f'image "{text}" not found in the store',
                       hint="fetch it first (`rkt fetch FILE`), or name a local .aci file")
    return key
