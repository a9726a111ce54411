"""appc image and pod manifests (spec v0.8.11, ``spec/aci.md``, ``spec/pods.md``).

``from_dict`` validates and raises :class:`ManifestError`; ``to_dict`` gives back the JSON appc
expects (empty optional fields left out), so parse → dump round-trips a valid manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ManifestError
from .types import (
    APPC_VERSION,
    EventHandler,
    ExposedPort,
    Isolator,
    Loc,
    MountPoint,
    NameValue,
    Port,
    Volume,
    abs_path,
    ac_identifier,
    ac_name,
    array,
    boolean,
    get_value,
    image_hash,
    integer,
    obj,
    parse_annotations,
    parse_environment,
    parse_labels,
    q,
    req,
    semver,
    str_map,
    string,
    strings,
)

IMAGE_MANIFEST_KIND = "ImageManifest"
POD_MANIFEST_KIND = "PodManifest"


def _kind(loc: Loc, d: dict[str, Any], want: str) -> None:
    kind = string(loc.at("acKind"), req(loc, d, "acKind"))
    if kind != want:
        loc.at("acKind").fail(f"{q(kind)} must be {q(want)}")


def _pairs_out(pairs: tuple[NameValue, ...]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in pairs]


@dataclass(frozen=True)
class App:
    exec: tuple[str, ...]
    user: str
    group: str
    supplementary_gids: tuple[int, ...] = ()
    event_handlers: tuple[EventHandler, ...] = ()
    working_directory: str = ""
    environment: tuple[NameValue, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    mount_points: tuple[MountPoint, ...] = ()
    ports: tuple[Port, ...] = ()
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_dict(cls, raw: object, loc: Loc | None = None) -> App:
        loc = loc or Loc("app")
        d = obj(loc, raw)
        exec_ = strings(loc.at("exec"), d.get("exec"))
        # appc: exec[0] without a "/" is looked up in PATH, so only an empty one is invalid.
        if exec_ and not exec_[0]:
            loc.at("exec").fail("must not start with an empty string")
        handlers = tuple(EventHandler.from_dict(loc.at("eventHandlers").at(i), h)
                         for i, h in enumerate(array(loc, d, "eventHandlers")))
        names = [h.name for h in handlers]
        for n in names:
            if names.count(n) > 1:
                loc.at("eventHandlers").fail(f"has more than one handler {q(n)}")
        wd = d.get("workingDirectory")
        return cls(
            exec=exec_,
            user=string(loc.at("user"), req(loc, d, "user"), empty_ok=False),
            group=string(loc.at("group"), req(loc, d, "group"), empty_ok=False),
            supplementary_gids=tuple(
                integer(loc.at("supplementaryGIDs").at(i), g, 0)
                for i, g in enumerate(array(loc, d, "supplementaryGIDs"))),
            event_handlers=handlers,
            working_directory="" if not wd else abs_path(loc.at("workingDirectory"), wd),
            environment=parse_environment(loc.at("environment"), array(loc, d, "environment")),
            isolators=tuple(Isolator.from_dict(loc.at("isolators").at(i), x)
                            for i, x in enumerate(array(loc, d, "isolators"))),
            mount_points=tuple(MountPoint.from_dict(loc.at("mountPoints").at(i), x)
                               for i, x in enumerate(array(loc, d, "mountPoints"))),
            ports=tuple(Port.from_dict(loc.at("ports").at(i), x)
                        for i, x in enumerate(array(loc, d, "ports"))),
            user_annotations=str_map(loc, d, "userAnnotations"),
            user_labels=str_map(loc, d, "userLabels"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"exec": list(self.exec)}
        if self.event_handlers:
            out["eventHandlers"] = [h.to_dict() for h in self.event_handlers]
        out["user"] = self.user
        out["group"] = self.group
        if self.supplementary_gids:
            out["supplementaryGIDs"] = list(self.supplementary_gids)
        if self.working_directory:
            out["workingDirectory"] = self.working_directory
        if self.environment:
            out["environment"] = _pairs_out(self.environment)
        if self.mount_points:
            out["mountPoints"] = [m.to_dict() for m in self.mount_points]
        if self.ports:
            out["ports"] = [p.to_dict() for p in self.ports]
        if self.isolators:
            out["isolators"] = [i.to_dict() for i in self.isolators]
        if self.user_annotations:
            out["userAnnotations"] = dict(self.user_annotations)
        if self.user_labels:
            out["userLabels"] = dict(self.user_labels)
        return out


@dataclass(frozen=True)
class Dependency:
    image_name: str
    image_id: str | None = None
    labels: tuple[NameValue, ...] = ()
    size: int = 0

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> Dependency:
        d = obj(loc, raw)
        image_id = d.get("imageID")
        return cls(
            image_name=ac_identifier(loc.at("imageName"), req(loc, d, "imageName")),
            image_id=None if not image_id else image_hash(loc.at("imageID"), image_id),
            labels=parse_labels(loc.at("labels"), array(loc, d, "labels")),
            size=integer(loc.at("size"), d.get("size") or 0, 0),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"imageName": self.image_name}
        if self.image_id:
            out["imageID"] = self.image_id
        if self.labels:
            out["labels"] = _pairs_out(self.labels)
        if self.size:
            out["size"] = self.size
        return out

    def label_map(self) -> dict[str, str]:
        return {lb.name: lb.value for lb in self.labels}


@dataclass(frozen=True)
class ImageManifest:
    name: str
    ac_version: str = APPC_VERSION
    labels: tuple[NameValue, ...] = ()
    app: App | None = None
    dependencies: tuple[Dependency, ...] = ()
    path_whitelist: tuple[str, ...] = ()
    annotations: tuple[NameValue, ...] = ()

    @classmethod
    def from_dict(cls, raw: object) -> ImageManifest:
        loc = Loc("image manifest")
        d = obj(loc, raw)
        _kind(loc, d, IMAGE_MANIFEST_KIND)
        app = d.get("app")
        return cls(
            ac_version=semver(loc.at("acVersion"), req(loc, d, "acVersion")),
            name=ac_identifier(loc.at("name"), req(loc, d, "name")),
            labels=parse_labels(loc.at("labels"), array(loc, d, "labels")),
            app=None if app is None else App.from_dict(app, loc.at("app")),
            dependencies=tuple(Dependency.from_dict(loc.at("dependencies").at(i), x)
                               for i, x in enumerate(array(loc, d, "dependencies"))),
            path_whitelist=tuple(abs_path(loc.at("pathWhitelist").at(i), p)
                                 for i, p in enumerate(array(loc, d, "pathWhitelist"))),
            annotations=parse_annotations(loc.at("annotations"), array(loc, d, "annotations")),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"acKind": IMAGE_MANIFEST_KIND, "acVersion": self.ac_version,
                               "name": self.name}
        if self.labels:
            out["labels"] = _pairs_out(self.labels)
        if self.app is not None:
            out["app"] = self.app.to_dict()
        if self.annotations:
            out["annotations"] = _pairs_out(self.annotations)
        if self.dependencies:
            out["dependencies"] = [dep.to_dict() for dep in self.dependencies]
        if self.path_whitelist:
            out["pathWhitelist"] = list(self.path_whitelist)
        return out

    def label(self, name: str) -> str | None:
        return get_value(self.labels, name)

    def annotation(self, name: str) -> str | None:
        return get_value(self.annotations, name)

    def label_map(self) -> dict[str, str]:
        return {lb.name: lb.value for lb in self.labels}


@dataclass(frozen=True)
class RuntimeImage:
    id: str
    name: str | None = None
    labels: tuple[NameValue, ...] = ()

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> RuntimeImage:
        d = obj(loc, raw)
        name = d.get("name")
        return cls(id=image_hash(loc.at("id"), req(loc, d, "id")),
                   name=None if not name else ac_identifier(loc.at("name"), name),
                   labels=parse_labels(loc.at("labels"), array(loc, d, "labels")))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out["id"] = self.id
        if self.labels:
            out["labels"] = _pairs_out(self.labels)
        return out


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    app_volume: Volume | None = None

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> Mount:
        d = obj(loc, raw)
        av = d.get("appVolume")
        return cls(volume=ac_name(loc.at("volume"), req(loc, d, "volume")),
                   path=string(loc.at("path"), req(loc, d, "path"), empty_ok=False),
                   app_volume=None if av is None else Volume.from_dict(loc.at("appVolume"), av))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"volume": self.volume, "path": self.path}
        if self.app_volume is not None:
            out["appVolume"] = self.app_volume.to_dict()
        return out


@dataclass(frozen=True)
class RuntimeApp:
    name: str
    image: RuntimeImage
    app: App | None = None
    read_only_root_fs: bool = False
    mounts: tuple[Mount, ...] = ()
    annotations: tuple[NameValue, ...] = ()

    @classmethod
    def from_dict(cls, loc: Loc, raw: object) -> RuntimeApp:
        d = obj(loc, raw)
        app = d.get("app")
        return cls(
            name=ac_name(loc.at("name"), req(loc, d, "name")),
            image=RuntimeImage.from_dict(loc.at("image"), req(loc, d, "image")),
            app=None if app is None else App.from_dict(app, loc.at("app")),
            read_only_root_fs=boolean(loc, d, "readOnlyRootFS"),
            mounts=tuple(Mount.from_dict(loc.at("mounts").at(i), m)
                         for i, m in enumerate(array(loc, d, "mounts"))),
            annotations=parse_annotations(loc.at("annotations"), array(loc, d, "annotations")),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "image": self.image.to_dict()}
        if self.app is not None:
            out["app"] = self.app.to_dict()
        if self.read_only_root_fs:
            out["readOnlyRootFS"] = True
        if self.mounts:
            out["mounts"] = [m.to_dict() for m in self.mounts]
        if self.annotations:
            out["annotations"] = _pairs_out(self.annotations)
        return out


@dataclass(frozen=True)
class PodManifest:
    apps: tuple[RuntimeApp, ...] = ()
    ac_version: str = APPC_VERSION
    volumes: tuple[Volume, ...] = ()
    isolators: tuple[Isolator, ...] = ()
    annotations: tuple[NameValue, ...] = ()
    ports: tuple[ExposedPort, ...] = ()
    user_annotations: tuple[tuple[str, str], ...] = ()
    user_labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_dict(cls, raw: object) -> PodManifest:
        loc = Loc("pod manifest")
        d = obj(loc, raw)
        _kind(loc, d, POD_MANIFEST_KIND)
        apps = tuple(RuntimeApp.from_dict(loc.at("apps").at(i), a)
                     for i, a in enumerate(array(loc, d, "apps")))
        volumes = tuple(Volume.from_dict(loc.at("volumes").at(i), v)
                        for i, v in enumerate(array(loc, d, "volumes")))
        seen: set[str] = set()
        for a in apps:
            if a.name in seen:
                loc.at("apps").fail(f"has more than one app named {q(a.name)}")
            seen.add(a.name)
        declared = {v.name for v in volumes}
        if len(declared) != len(volumes):
            names = [v.name for v in volumes]
            dup = next(n for n in names if names.count(n) > 1)
            loc.at("volumes").fail(f"has more than one volume named {q(dup)}")
        for i, a in enumerate(apps):
            for j, m in enumerate(a.mounts):
                if m.app_volume is None and m.volume not in declared:
                    loc.at("apps").at(i).at("mounts").at(j).fail(
                        f"refers to undeclared volume {q(m.volume)}")
        return cls(
            ac_version=semver(loc.at("acVersion"), req(loc, d, "acVersion")),
            apps=apps,
            volumes=volumes,
            isolators=tuple(Isolator.from_dict(loc.at("isolators").at(i), x)
                            for i, x in enumerate(array(loc, d, "isolators"))),
            annotations=parse_annotations(loc.at("annotations"), array(loc, d, "annotations")),
            ports=tuple(ExposedPort.from_dict(loc.at("ports").at(i), x)
                        for i, x in enumerate(array(loc, d, "ports"))),
            user_annotations=str_map(loc, d, "userAnnotations"),
            user_labels=str_map(loc, d, "userLabels"),
        )

    def to_dict(self) -> dict[str, Any]:
        # appc leaves these lists without omitempty: always present.
        out: dict[str, Any] = {
            "acVersion": self.ac_version, "acKind": POD_MANIFEST_KIND,
            "apps": [a.to_dict() for a in self.apps],
            "volumes": [v.to_dict() for v in self.volumes],
            "isolators": [i.to_dict() for i in self.isolators],
            "annotations": _pairs_out(self.annotations),
            "ports": [p.to_dict() for p in self.ports],
        }
        if self.user_annotations:
            out["userAnnotations"] = dict(self.user_annotations)
        if self.user_labels:
            out["userLabels"] = dict(self.user_labels)
        return out

    def app(self, name: str) -> RuntimeApp | None:
        return next((a for a in self.apps if a.name == name), None)

    def annotation(self, name: str) -> str | None:
        return get_value(self.annotations, name)


# A manifest is read into memory and parsed in pure Python: one larger than this is not a
# manifest (real ones are a few kB; Docker itself caps its image manifests at 4 MiB).
MAX_MANIFEST = 1 << 20


def _load(data: bytes | str, doc: str) -> Any:
    if len(data) > MAX_MANIFEST:
        raise ManifestError(f"{doc}: larger than {MAX_MANIFEST} bytes")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{doc}: invalid JSON: {e}") from e


def parse_image_manifest(data: bytes | str) -> ImageManifest:
    return ImageManifest.from_dict(_load(data, "image manifest"))


def parse_pod_manifest(data: bytes | str) -> PodManifest:
    return PodManifest.from_dict(_load(data, "pod manifest"))


class _ToDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def dumps(obj_: _ToDict, pretty: bool = False) -> str:
    """JSON text; ``pretty`` indents with tabs as rkt's cat-manifest does."""
    if pretty:
        return json.dumps(obj_.to_dict(), indent="\t")
    return json.dumps(obj_.to_dict(), separators=(",", ":"))
