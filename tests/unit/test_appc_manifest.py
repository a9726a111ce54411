"""appc schema: image and pod manifests validate with precise messages and round-trip."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rktd_less.appc.manifest import (
    ImageManifest,
    PodManifest,
    dumps,
    parse_image_manifest,
    parse_pod_manifest,
)
from rktd_less.appc.types import (
    VALID_OS_ARCH,
    app_name_from_image_name,
    is_ac_identifier,
    is_ac_name,
)
from rktd_less.errors import ManifestError

FULL_IMAGE: dict[str, Any] = {
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/reduce-worker",
    "labels": [{"name": "version", "value": "1.0.0"}, {"name": "arch", "value": "amd64"},
               {"name": "os", "value": "linux"}],
    "app": {
        "exec": ["/usr/bin/reduce-worker", "--quiet"],
        "eventHandlers": [{"name": "pre-start", "exec": ["/usr/bin/setup"]},
                          {"name": "post-stop", "exec": ["/usr/bin/cleanup"]}],
        "user": "100",
        "group": "300",
        "supplementaryGIDs": [400, 500],
        "workingDirectory": "/opt/work",
        "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}],
        "mountPoints": [{"name": "work", "path": "/var/lib/work", "readOnly": True}],
        "ports": [{"name": "health", "protocol": "tcp", "port": 4000, "count": 1,
                   "socketActivated": True}],
        "isolators": [{"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}},
                      {"name": "os/linux/no-new-privileges", "value": True}],
        "userAnnotations": {"maintainer": "a@example.com"},
        "userLabels": {"tier": "backend"},
    },
    "annotations": [{"name": "authors", "value": "Carly"},
                    {"name": "created", "value": "2014-10-27T19:32:58Z"}],
    "dependencies": [{"imageName": "example.com/reduce-worker-base",
                      "imageID": "sha512-" + "a" * 128,
                      "labels": [{"name": "os", "value": "linux"},
                                 {"name": "env", "value": "canary"}],
                      "size": 12345}],
    "pathWhitelist": ["/etc/ca/example.com/crt", "/usr/bin/map-reduce-worker"],
}

FULL_POD: dict[str, Any] = {
    "acVersion": "0.8.11",
    "acKind": "PodManifest",
    "apps": [
        {"name": "reduce-worker",
         "image": {"name": "example.com/reduce-worker", "id": "sha512-" + "b" * 64,
                   "labels": [{"name": "version", "value": "1.0.0"}]},
         "app": {"exec": ["/bin/rw"], "user": "0", "group": "0"},
         "readOnlyRootFS": True,
         "mounts": [{"volume": "work", "path": "/var/lib/work"},
                    {"volume": "extra", "path": "/extra",
                     "appVolume": {"name": "extra", "kind": "host", "source": "/srv/extra",
                                   "readOnly": True}}],
         "annotations": [{"name": "foo", "value": "baz"}]},
        {"name": "backup", "image": {"id": "sha512-" + "c" * 64}},
    ],
    "volumes": [{"name": "work", "kind": "host", "source": "/opt/tenant1/work",
                 "readOnly": True, "recursive": False},
                {"name": "scratch", "kind": "empty", "mode": "0700", "uid": 1000, "gid": 100}],
    "isolators": [{"name": "resource/memory", "value": {"limit": "4G"}}],
    "annotations": [{"name": "ip-address", "value": "10.1.2.3"}],
    "ports": [{"name": "health", "hostPort": 4001, "hostIP": "127.0.0.1"},
              {"name": "www", "hostPort": 8080,
               "podPort": {"name": "www", "protocol": "tcp", "port": 80, "count": 1,
                           "socketActivated": False}}],
    "userAnnotations": {"note": "x"},
    "userLabels": {"team": "y"},
}


def _image(**changes: Any) -> dict[str, Any]:
    m = copy.deepcopy(FULL_IMAGE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        d: Any = m
        for p in parents:
            d = d[int(p)] if p.isdigit() else d[p]
        if value is _DELETE:
            del d[last]
        elif last.isdigit():
            d[int(last)] = value
        else:
            d[last] = value
    return m


_DELETE = object()


def test_full_image_manifest_round_trips() -> None:
    im = ImageManifest.from_dict(FULL_IMAGE)
    assert im.to_dict() == FULL_IMAGE
    assert json.loads(dumps(im)) == FULL_IMAGE
    assert im.label("version") == "1.0.0"
    assert im.label("nope") is None
    assert im.annotation("authors") == "Carly"
    assert im.app is not None and im.app.exec == ("/usr/bin/reduce-worker", "--quiet")
    assert im.app.isolators[0].value == {"request": "250m", "limit": "500m"}  # raw JSON kept
    assert im.dependencies[0].label_map() == {"os": "linux", "env": "canary"}


def test_minimal_manifest_dumps_without_empty_optionals() -> None:
    im = parse_image_manifest(b'{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a/b",'
                              b'"labels":[],"dependencies":null,"app":{"exec":[],"user":"0",'
                              b'"group":"0","environment":[]}}')
    assert im.to_dict() == {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a/b",
                            "app": {"exec": [], "user": "0", "group": "0"}}


def test_dumps_pretty_uses_tabs_and_compact_has_no_spaces() -> None:
    im = ImageManifest(name="example.com/x")
    assert dumps(im) == '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x"}'
    assert dumps(im, pretty=True).splitlines()[1] == '\t"acKind": "ImageManifest",'


def test_relative_exec_is_accepted_and_kept() -> None:
    im = ImageManifest.from_dict(_image(app__exec=["sh", "-c", "true"]))
    assert im.app is not None and im.app.exec == ("sh", "-c", "true")


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "Foo"}, 'image manifest: "name" "Foo" is not a valid AC Identifier'),
    ({"name": "example.com/a_"},
     'image manifest: "name" "example.com/a_" is not a valid AC Identifier'),
    ({"name": _DELETE}, 'image manifest: "name" is required'),
    ({"acKind": "PodManifest"}, 'image manifest: "acKind" "PodManifest" must be "ImageManifest"'),
    ({"acVersion": "0.8"}, 'image manifest: "acVersion" "0.8" is not a valid semantic version'),
    ({"acVersion": "0.0.0"}, 'image manifest: "acVersion" must not be 0.0.0'),
    ({"labels__1": {"name": "version", "value": "2"}},
     'image manifest: "labels" has duplicate label "version"'),
    ({"labels__1": {"name": "name", "value": "x"}},
     'image manifest: "labels" must not contain a label called "name"'),
    ({"labels__0": {"name": "Version", "value": "x"}},
     'image manifest: "labels[0].name" "Version" is not a valid AC Identifier'),
    ({"labels__2": {"name": "os", "value": "plan9"}},
     'image manifest: "labels" bad os "plan9" (must be one of: darwin, freebsd, linux)'),
    ({"labels__1": {"name": "arch", "value": "x86_64"}},
     'image manifest: "labels" bad arch "x86_64" for linux (must be one of: amd64, i386,'),
    ({"app__user": _DELETE}, 'image manifest: "app.user" is required'),
    ({"app__group": ""}, 'image manifest: "app.group" must not be empty'),
    ({"app__exec": "/bin/sh"}, 'image manifest: "app.exec" must be a list of strings'),
    ({"app__exec": ["", "x"]}, 'image manifest: "app.exec" must not start with an empty string'),
    ({"app__workingDirectory": "opt"},
     'image manifest: "app.workingDirectory" "opt" must be an absolute path'),
    ({"app__environment__0": {"name": "1X", "value": ""}},
     'image manifest: "app.environment[0].name" "1X" is not a valid environment variable name'),
    ({"app__environment": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
     'image manifest: "app.environment" has duplicate environment variable "A"'),
    ({"app__eventHandlers__1": {"name": "pre-start", "exec": []}},
     'image manifest: "app.eventHandlers" has more than one handler "pre-start"'),
    ({"app__eventHandlers__0": {"name": "on-crash", "exec": []}},
     'image manifest: "app.eventHandlers[0].name" "on-crash" must be one of: pre-start, '
     'post-stop'),
    ({"app__ports__0__port": 70000},
     'image manifest: "app.ports[0].port" 70000 is out of range 1..65535'),
    ({"app__mountPoints__0__name": "Work"},
     'image manifest: "app.mountPoints[0].name" "Work" is not a valid AC Name'),
    ({"app__isolators__0": {"name": "resource/cpu"}},
     'image manifest: "app.isolators[0].value" is required'),
    ({"app__supplementaryGIDs": [1, "2"]},
     'image manifest: "app.supplementaryGIDs[1]" must be an integer'),
    ({"app__userLabels": {"a": 1}}, 'image manifest: "app.userLabels" must be an object'),
    ({"dependencies__0__imageID": "md5-abc"},
     'image manifest: "dependencies[0].imageID" "md5-abc" is not a valid image ID'),
    ({"dependencies__0__imageName": _DELETE},
     'image manifest: "dependencies[0].imageName" is required'),
    ({"pathWhitelist": ["etc/x"]},
     'image manifest: "pathWhitelist[0]" "etc/x" must be an absolute path'),
    ({"annotations": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]},
     'image manifest: "annotations" has duplicate annotation "a"'),
    ({"app": []}, 'image manifest: "app" must be a JSON object'),
])
def test_invalid_image_manifests(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as ei:
        ImageManifest.from_dict(_image(**changes))
    assert str(ei.value).startswith(message)
    assert "\n" not in str(ei.value)


def test_bad_json_and_non_object() -> None:
    with pytest.raises(ManifestError, match=r"^image manifest: invalid JSON: "):
        parse_image_manifest(b'{"acKind": ')
    with pytest.raises(ManifestError, match=r"^image manifest: invalid JSON: "):
        parse_image_manifest(b"\xff\xfe")
    with pytest.raises(ManifestError, match=r"^image manifest: must be a JSON object$"):
        parse_image_manifest(b"[]")


def test_every_valid_os_arch_pair_is_accepted() -> None:
    for os_, archs in VALID_OS_ARCH.items():
        for arch in archs:
            m = _image(labels=[{"name": "os", "value": os_}, {"name": "arch", "value": arch}])
            assert ImageManifest.from_dict(m).label("arch") == arch
    # arch without os is not checked (appc: arch only makes sense with an os)
    assert ImageManifest.from_dict(_image(labels=[{"name": "arch", "value": "z80"}]))


@pytest.mark.parametrize(("text", "ident", "name"), [
    ("example.com/app", True, False), ("app-1", True, True), ("a.b~c_d/e", True, False),
    ("App", False, False), ("-a", False, False), ("a--b", False, False), ("a//b", False, False),
    ("", False, False), ("a/", False, False),
])
def test_identifier_and_name_regexes(text: str, ident: bool, name: bool) -> None:
    assert is_ac_identifier(text) is ident
    assert is_ac_name(text) is name


@pytest.mark.parametrize(("image", "app"), [
    ("coreos.com/etcd", "etcd"), ("busybox", "busybox"), ("example.com/My_App", "my-app"),
    ("quay.io/coreos/etcd-v3.2", "etcd-v3-2"), ("example.com/a__b", "a-b"),
    ("registry/foo~bar", "foo-bar"),
])
def test_app_name_from_image_name(image: str, app: str) -> None:
    assert app_name_from_image_name(image) == app


def test_full_pod_manifest_round_trips() -> None:
    pm = PodManifest.from_dict(FULL_POD)
    assert pm.to_dict() == FULL_POD
    assert parse_pod_manifest(dumps(pm, pretty=True)).to_dict() == FULL_POD
    ra = pm.app("reduce-worker")
    assert ra is not None and ra.read_only_root_fs and ra.mounts[1].app_volume is not None
    assert pm.app("nope") is None


def test_pod_manifest_defaults_and_always_present_lists() -> None:
    pm = parse_pod_manifest(json.dumps({
        "acVersion": "0.8.11", "acKind": "PodManifest",
        "apps": [{"name": "a", "image": {"id": "sha512-" + "d" * 64}}],
        "volumes": [{"name": "v", "kind": "empty"}], "isolators": None}))
    assert pm.to_dict() == {
        "acVersion": "0.8.11", "acKind": "PodManifest",
        "apps": [{"name": "a", "image": {"id": "sha512-" + "d" * 64}}],
        "volumes": [{"name": "v", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0}],
        "isolators": [], "annotations": [], "ports": []}


def _pod(**changes: Any) -> dict[str, Any]:
    p = copy.deepcopy(FULL_POD)
    p.update(changes)
    return p


@pytest.mark.parametrize(("pod", "message"), [
    (_pod(acKind="ImageManifest"), 'pod manifest: "acKind" "ImageManifest" must be "PodManifest"'),
    (_pod(apps=[FULL_POD["apps"][1], FULL_POD["apps"][1]]),
     'pod manifest: "apps" has more than one app named "backup"'),
    (_pod(volumes=[FULL_POD["volumes"][0], FULL_POD["volumes"][0]]),
     'pod manifest: "volumes" has more than one volume named "work"'),
    (_pod(volumes=[FULL_POD["volumes"][1]]),
     'pod manifest: "apps[0].mounts[0]" refers to undeclared volume "work"'),
    (_pod(apps=[{"name": "Bad", "image": {"id": "sha512-" + "e" * 64}}]),
     'pod manifest: "apps[0].name" "Bad" is not a valid AC Name'),
    (_pod(apps=[{"name": "a", "image": {}}]), 'pod manifest: "apps[0].image.id" is required'),
    (_pod(volumes=[{"name": "work", "kind": "host", "source": "rel"}]),
     'pod manifest: "volumes[0].source" must be an absolute path for a host volume'),
    (_pod(volumes=[{"name": "work", "kind": "nfs"}]),
     'pod manifest: "volumes[0].kind" "nfs" must be one of: host, empty'),
    (_pod(volumes=[{"name": "work", "kind": "host", "source": "/x", "uid": 1}]),
     'pod manifest: "volumes[0].uid" cannot be set for a host volume'),
    (_pod(volumes=[{"name": "work", "kind": "empty", "source": "/x"}]),
     'pod manifest: "volumes[0].source" must be empty for an empty volume'),
    (_pod(ports=[{"name": "p", "hostPort": 1, "hostIP": "300.1.1.1"}]),
     'pod manifest: "ports[0].hostIP" "300.1.1.1" is not an IP address'),
])
def test_invalid_pod_manifests(pod: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as ei:
        PodManifest.from_dict(pod)
    assert str(ei.value) == message
