"""appc spec v0.8.11: image and pod manifests, names and labels (pure, no I/O)."""

from .manifest import (
    App,
    Dependency,
    ImageManifest,
    Mount,
    PodManifest,
    RuntimeApp,
    RuntimeImage,
    dumps,
    parse_image_manifest,
    parse_pod_manifest,
)
from .types import (
    APPC_VERSION,
    VALID_OS_ARCH,
    EventHandler,
    ExposedPort,
    Isolator,
    MountPoint,
    NameValue,
    Port,
    Volume,
    app_name_from_image_name,
    is_ac_identifier,
    is_ac_name,
    os_arch_error,
    sanitize_ac_name,
)

__all__ = [
    "APPC_VERSION", "VALID_OS_ARCH", "App", "Dependency", "EventHandler", "ExposedPort",
    "ImageManifest", "Isolator", "Mount", "MountPoint", "NameValue", "PodManifest", "Port",
    "RuntimeApp", "RuntimeImage", "Volume", "app_name_from_image_name", "dumps",
    "is_ac_identifier", "is_ac_name", "os_arch_error", "parse_image_manifest",
    "parse_pod_manifest", "sanitize_ac_name",
]
