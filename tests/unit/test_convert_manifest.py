"""Docker/OCI image config → appc ImageManifest (docker2aci's GenerateManifestV22 rules)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rktd_less.appc.manifest import parse_image_manifest
from rktd_less.convert import aci_manifest, appc_image_name
from rktd_less.convert.manifest import appc_os_arch, docker_user
from rktd_less.errors import ManifestError

REDIS_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-05-01T12:00:00.123456789Z",
    "author": "Jane <jane@example.com>",
    "comment": "imported",
    "config": {
        "User": "redis:redis",
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/bin", "REDIS_VERSION=7.2.4",
                "EMPTY=", "NOVALUE", "PATH=/bin"],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["redis-server"],
        "WorkingDir": "/data",
        "ExposedPorts": {"6379/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}, "/var/lib/redis": {}},
        "Labels": {"maintainer": "x"},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
}

ARGS: dict[str, Any] = dict(
    appc_name="registry-1.docker.io/library/redis", tag="7.2",
    registry="registry-1.docker.io", repository="library/redis",
    original_name="redis:7.2", manifest_digest="sha256:" + "a" * 64,
    image_id="sha256:" + "b" * 64)


def convert(config: dict[str, Any], **over: Any) -> dict[str, Any]:
    m = aci_manifest(config, **{**ARGS, **over})
    parse_image_manifest(json.dumps(m))  # every output must be a valid appc manifest
    return m


def labels(m: dict[str, Any]) -> dict[str, str]:
    return {lb["name"]: lb["value"] for lb in m["labels"]}


def ann_map(m: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in m["annotations"]}


def with_inner(**inner: Any) -> dict[str, Any]:
    return {"architecture": "amd64", "os": "linux", "config": inner}


def test_full_mapping() -> None:
    m = convert(REDIS_CONFIG, parent_id="sha256:" + "c" * 64)
    assert m["acKind"] == "ImageManifest" and m["acVersion"] == "0.8.11"
    assert m["name"] == "registry-1.docker.io/library/redis"
    assert m["labels"] == [{"name": "arch", "value": "amd64"}, {"name": "os", "value": "linux"},
                           {"name": "version", "value": "7.2"}]
    assert m["app"] == {
        "exec": ["docker-entrypoint.sh", "redis-server"],
        "user": "redis", "group": "redis",
        "workingDirectory": "/data",
        "environment": [{"name": "PATH", "value": "/bin"},
                        {"name": "REDIS_VERSION", "value": "7.2.4"},
                        {"name": "EMPTY", "value": ""}],
        "mountPoints": [{"name": "volume-data", "path": "/data"},
                        {"name": "volume-var-lib-redis", "path": "/var/lib/redis"}],
        "ports": [{"name": "53-udp", "protocol": "udp", "port": 53, "count": 1,
                   "socketActivated": False},
                  {"name": "6379-tcp", "protocol": "tcp", "port": 6379, "count": 1,
                   "socketActivated": False}],
    }
    assert ann_map(m) == {
        "author": "Jane <jane@example.com>",
        "created": "2024-05-01T12:00:00.123456789Z",
        "docker-comment": "imported",
        "appc.io/docker/originalname": "redis:7.2",
        "appc.io/docker/registryurl": "registry-1.docker.io",
        "appc.io/docker/repository": "library/redis",
        "appc.io/docker/tag": "7.2",
        "appc.io/docker/imageid": "sha256:" + "b" * 64,
        "appc.io/docker/parentimageid": "sha256:" + "c" * 64,
        "appc.io/docker/manifesthash": "sha256:" + "a" * 64,
        "appc.io/docker/entrypoint": '["docker-entrypoint.sh"]',
        "appc.io/docker/cmd": '["redis-server"]',
    }
    assert "userLabels" not in m["app"]  # docker2aci's v2.2 path does not set them


@pytest.mark.parametrize(("entrypoint", "cmd", "exec_"), [
    (["/bin/sh", "-c"], ["echo hi"], ["/bin/sh", "-c", "echo hi"]),
    (None, ["/bin/sh"], ["/bin/sh"]),
    (["/entry"], None, ["/entry"]),
    (["/entry"], [], ["/entry"]),
    ("/bin/true", None, ["/bin/true"]),  # Docker's strslice: a bare string
    (None, None, None),
    ([], [], None),
])
def test_exec_is_entrypoint_then_cmd(entrypoint: Any, cmd: Any, exec_: Any) -> None:
    inner: dict[str, Any] = {}
    if entrypoint is not None:
        inner["Entrypoint"] = entrypoint
    if cmd is not None:
        inner["Cmd"] = cmd
    m = convert(with_inner(**inner))
    assert m["app"].get("exec") == exec_
    ann = ann_map(m)
    assert ("appc.io/docker/entrypoint" in ann) == bool(entrypoint)
    assert ("appc.io/docker/cmd" in ann) == bool(cmd)
    if entrypoint and isinstance(entrypoint, list):
        assert json.loads(ann["appc.io/docker/entrypoint"]) == entrypoint


def test_entrypoint_annotation_is_compact_json_like_go() -> None:
    m = convert(with_inner(Entrypoint=["/bin/sh", "-c", "echo é"]))
    assert ann_map(m)["appc.io/docker/entrypoint"] == '["/bin/sh","-c","echo é"]'


@pytest.mark.parametrize(("user", "want"), [
    ("", ("0", "0")),
    ("nobody", ("nobody", "nobody")),
    ("1000", ("1000", "1000")),
    ("1000:100", ("1000", "100")),
    ("www-data:www-data", ("www-data", "www-data")),
    (":100", ("0", "100")),
    ("app:", ("app", "app")),
])
def test_user_forms(user: str, want: tuple[str, str]) -> None:
    assert docker_user(user) == want
    app = convert(with_inner(User=user))["app"]
    assert (app["user"], app["group"]) == want


def test_no_user_field_is_root() -> None:
    app = convert(with_inner(Cmd=["x"]))["app"]
    assert (app["user"], app["group"]) == ("0", "0")


def test_environment_order_duplicates_and_equals_in_values() -> None:
    env = convert(with_inner(Env=["A=1", "B=x=y", "NOEQUALS", "A=2", "C="]))["app"]["environment"]
    assert env == [{"name": "A", "value": "2"}, {"name": "B", "value": "x=y"},
                   {"name": "C", "value": ""}]


def test_working_directory_defaults_to_root() -> None:
    assert convert(with_inner())["app"]["workingDirectory"] == "/"
    assert convert(with_inner(WorkingDir="/srv/app/"))["app"]["workingDirectory"] == "/srv/app"
    assert convert(with_inner(WorkingDir="app"))["app"]["workingDirectory"] == "/app"


def test_ports_sorted_by_name_default_tcp() -> None:
    ports = convert(with_inner(ExposedPorts={"8080": {}, "80/tcp": {}, "53/udp": {},
                                             "443/tcp": {}}))["app"]["ports"]
    assert [(p["name"], p["protocol"], p["port"]) for p in ports] == [
        ("443-tcp", "tcp", 443), ("53-udp", "udp", 53), ("80-tcp", "tcp", 80),
        ("8080", "tcp", 8080)]
    assert all(p["count"] == 1 and p["socketActivated"] is False for p in ports)


@pytest.mark.parametrize("bad", ["http/tcp", "0/tcp", "70000/udp", "80-90/tcp"])
def test_bad_port_is_a_manifest_error(bad: str) -> None:
    with pytest.raises(ManifestError, match="ExposedPorts"):
        convert(with_inner(ExposedPorts={bad: {}}))


def test_volumes_names_and_duplicates() -> None:
    mps = convert(with_inner(Volumes={"/var/lib/data": {}, "/data": {}, "/data/": {},
                                      "/Data": {}, "/var/log": {}}))["app"]["mountPoints"]
    assert mps == [
        {"name": "volume-data", "path": "/Data"},
        {"name": "volume-data-1", "path": "/data"},
        {"name": "volume-data-2", "path": "/data/"},
        {"name": "volume-var-lib-data", "path": "/var/lib/data"},
        {"name": "volume-var-log", "path": "/var/log"},
    ]


def test_relative_volume_is_refused() -> None:
    with pytest.raises(ManifestError, match="Volumes"):
        convert(with_inner(Volumes={"data": {}}))


@pytest.mark.parametrize(("os_", "arch", "variant", "want"), [
    ("linux", "amd64", "", ("linux", "amd64")),
    ("linux", "386", "", ("linux", "i386")),
    ("linux", "arm64", "v8", ("linux", "aarch64")),
    ("linux", "arm64", "", ("linux", "aarch64")),
    ("linux", "arm", "", ("linux", "armv6l")),
    ("linux", "arm", "v6", ("linux", "armv6l")),
    ("linux", "arm", "v7", ("linux", "armv7l")),
    ("linux", "ppc64le", "", ("linux", "ppc64le")),
    ("linux", "s390x", "", ("linux", "s390x")),
    ("linux", "riscv64", "", None),
    ("linux", "arm", "v5", None),
    ("windows", "amd64", "", None),
    ("", "", "", None),
])
def test_os_arch_translation(os_: str, arch: str, variant: str,
                             want: tuple[str, str] | None) -> None:
    assert appc_os_arch(os_, arch, variant) == want
    m = convert({"os": os_, "architecture": arch, "variant": variant})
    lb = labels(m)
    if want is None:
        assert "os" not in lb and "arch" not in lb
    else:
        assert (lb["os"], lb["arch"]) == want


def test_no_config_object_means_no_app() -> None:
    m = convert({"architecture": "amd64", "os": "linux"})
    assert "app" not in m
    assert "appc.io/docker/entrypoint" not in ann_map(m)


def test_empty_values_are_left_out() -> None:
    m = convert({"config": {}}, tag="", original_name="", parent_id=None)
    assert "version" not in labels(m)
    ann = ann_map(m)
    for key in ("appc.io/docker/tag", "appc.io/docker/originalname",
                "appc.io/docker/parentimageid", "author", "created", "docker-comment"):
        assert key not in ann
    assert ann["appc.io/docker/repository"] == "library/redis"


@pytest.mark.parametrize(("config", "field"), [
    ({"config": {"Env": "A=1"}}, "config.Env"),
    ({"config": {"Env": [1]}}, "config.Env"),
    ({"config": {"Cmd": {"x": 1}}}, "config.Cmd"),
    ({"config": {"User": 0}}, "config.User"),
    ({"config": {"ExposedPorts": ["80/tcp"]}}, "config.ExposedPorts"),
    ({"config": {"Env": ["BAD NAME=1"]}}, "config.Env"),
    ({"config": []}, "config"),
    ({"os": 1}, "os"),
])
def test_malformed_config_names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ManifestError) as exc:
        aci_manifest(config, **ARGS)
    assert f'"{field}"' in str(exc.value)
    assert "\n" not in str(exc.value)


def test_invalid_image_name_is_refused() -> None:
    with pytest.raises(ManifestError, match="AC Identifier"):
        aci_manifest({}, **{**ARGS, "appc_name": "Registry/Redis"})


@pytest.mark.parametrize(("registry", "repo", "want"), [
    ("registry-1.docker.io", "library/redis", "registry-1.docker.io/library/redis"),
    ("localhost:5000", "busybox", "localhost_5000/busybox"),
    ("quay.io", "Org/My_Image", "quay.io/org/my_image"),
    ("registry.example", "a__b/c--d", "registry.example/a_b/c-d"),
])
def test_appc_image_name(registry: str, repo: str, want: str) -> None:
    assert appc_image_name(registry, repo) == want
    convert({}, appc_name=want)


@pytest.mark.parametrize(("created", "kept"), [
    ("2024-05-01T12:00:00Z", True), ("2015-10-31T22:22:56.015925234Z", True),
    ("2020-01-01T00:00:00+02:00", True), ("yesterday", False), ("2024-05-01", False)])
def test_created_must_be_rfc3339(created: str, kept: bool) -> None:
    ann = ann_map(convert({"created": created}))
    assert ann.get("created") == (created if kept else None)
