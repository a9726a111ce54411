"""Static types of the appc manifests as JSON documents (spec v0.8.11), and their readers, for
stage0 and stage1 alike (rkt's ``common/``).

The full schema, with validation, is ``appc/manifest.py``; it costs ~10 ms to import, too much
for the stage1 run entrypoint at every pod start. These are ``typing.TypedDict`` classes: the
documents stay the plain dicts ``json.loads`` gives, nothing is built or checked; the classes
give mypy their keys and types. The keys are appc's JSON keys exactly (as the schema's
``to_dict`` writes them): a key appc lets a document leave out is optional (``total=False``),
the ones it requires or always writes are ``Required``. Read optional keys with ``.get()`` and
a default.

The classes exist for the type checker only (``if TYPE_CHECKING``): defining them at import
would cost 0.7 ms (2 ms with postponed annotations: ``typing`` compiles every field's string),
so this module costs what any small module does (~0.15 ms), its two readers.
Import them the same way, under ``if TYPE_CHECKING:``, in modules with
``from __future__ import annotations``; in code, name them as strings (``cast("VolumeDoc", v)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from typing import Any, Required, TypedDict

    class NameValueDoc(TypedDict):
        """A label, an annotation or an environment variable."""

        name: str
        value: str

    class IsolatorDoc(TypedDict):
        """Its value stays raw JSON, as appc's ``json.RawMessage``: stage1 interprets the isolators
        it knows (``appc/isolators.py``)."""

        name: str
        value: Any

    class EventHandlerDoc(TypedDict):
        name: str  # pre-start | post-stop
        exec: list[str]

    class MountPointDoc(TypedDict, total=False):
        name: Required[str]
        path: Required[str]
        readOnly: bool

    class PortDoc(TypedDict, total=False):
        name: Required[str]
        protocol: Required[str]
        port: Required[int]
        count: int
        socketActivated: bool

    class ExposedPortDoc(TypedDict, total=False):
        """A pod-level port forward (``rkt run --port``)."""

        name: Required[str]
        hostPort: Required[int]
        hostIP: str
        podPort: PortDoc

    class AppDoc(TypedDict, total=False):
        """The app of an image manifest, or of a pod manifest's app (the image's with the command
        line's overrides). appc requires ``user`` and ``group`` in a valid one, but readers fall
        back from the pod manifest's app to the image's and then to ``{}``, every field read
        with its default (user and group "0"): so no key is required here."""

        exec: list[str]
        user: str
        group: str
        supplementaryGIDs: list[int]
        eventHandlers: list[EventHandlerDoc]
        workingDirectory: str
        environment: list[NameValueDoc]
        isolators: list[IsolatorDoc]
        mountPoints: list[MountPointDoc]
        ports: list[PortDoc]
        userAnnotations: dict[str, str]
        userLabels: dict[str, str]

    class DependencyDoc(TypedDict, total=False):
        imageName: Required[str]
        imageID: str
        labels: list[NameValueDoc]
        size: int

    class ImageManifestDoc(TypedDict, total=False):
        acKind: Required[str]  # "ImageManifest"
        acVersion: Required[str]
        name: Required[str]
        labels: list[NameValueDoc]
        app: AppDoc
        annotations: list[NameValueDoc]
        dependencies: list[DependencyDoc]
        pathWhitelist: list[str]

    class VolumeDoc(TypedDict, total=False):
        """A pod volume: ``host`` (``source`` is the machine's path) or ``empty`` (made in the pod
        directory with ``mode``, ``uid``, ``gid``)."""

        name: Required[str]
        kind: Required[str]  # host | empty
        source: str
        readOnly: bool
        recursive: bool
        mode: str
        uid: int
        gid: int

    class MountDoc(TypedDict, total=False):
        """One of an app's mounts: the pod volume ``volume`` at ``path`` in the app's rootfs.
        ``readOnly`` is not appc's (its Mount has none): stage1 honours it, should a writer
        add it."""

        volume: Required[str]
        path: Required[str]
        readOnly: bool
        appVolume: VolumeDoc

    class ImageRefDoc(TypedDict, total=False):
        """A pod manifest app's image: its store key (``id``), name and labels."""

        id: Required[str]
        name: str
        labels: list[NameValueDoc]

    class RuntimeAppDoc(TypedDict, total=False):
        name: Required[str]
        image: Required[ImageRefDoc]
        app: AppDoc  # absent in a user's --pod-manifest: the image's app runs
        readOnlyRootFS: bool
        mounts: list[MountDoc]
        annotations: list[NameValueDoc]

    class PodManifestDoc(TypedDict, total=False):
        # appc writes these lists even when empty (no omitempty)
        acKind: Required[str]  # "PodManifest"
        acVersion: Required[str]
        apps: Required[list[RuntimeAppDoc]]
        volumes: Required[list[VolumeDoc]]
        isolators: Required[list[IsolatorDoc]]
        annotations: Required[list[NameValueDoc]]
        ports: Required[list[ExposedPortDoc]]
        userAnnotations: dict[str, str]
        userLabels: dict[str, str]


def read_pod_manifest(source: Path | bytes | str) -> PodManifestDoc:
    """The pod manifest stage0 wrote in the pod directory (``PodPaths.manifest``), from the
    file or its text. Not checked again: stage0 made it from validated image manifests and
    flags, or validated the user's (``--pod-manifest``) with the appc schema, before writing
    it. OSError and ValueError (not JSON) pass to the caller."""
    data = source.read_text() if isinstance(source, Path) else source
    return cast("PodManifestDoc", json.loads(data))


def read_image_manifest(source: Path | bytes | str) -> ImageManifestDoc:
    """An image manifest from its file (``PodPaths.app_image_manifest``, the stage1's) or its
    bytes/text (``Store.manifest_bytes``). Not checked again: the store validated it with the
    appc schema when it imported the image, and stage0 copied it into the pod directory as it
    is. OSError and ValueError (not JSON) pass to the caller."""
    data = source.read_bytes() if isinstance(source, Path) else source
    return cast("ImageManifestDoc", json.loads(data))

