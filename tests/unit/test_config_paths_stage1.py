"""paths.d, stage1.d and `rkt config` (rkt/config/*.go): layering, rkt's checks, rkt's JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rktd_less.config import ConfigDirs, load_paths, load_stage1, merged_json
from rktd_less.errors import UsageError


def dirs(tmp_path: Path) -> ConfigDirs:
    return ConfigDirs(system=tmp_path / "sys", local=tmp_path / "local", user=tmp_path / "user")


def put(base: Path, sub: str, name: str, doc: dict[str, object]) -> None:
    (base / sub).mkdir(parents=True, exist_ok=True)
    (base / sub / name).write_text(json.dumps({"rktVersion": "v1", **doc}))


def test_layers_override_per_value(tmp_path: Path) -> None:
    c = dirs(tmp_path)
    put(c.system, "paths.d", "a.json", {"rktKind": "paths", "data": "/sys-data",
                                        "stage1-images": "/sys-images"})
    put(c.local, "paths.d", "a.json", {"rktKind": "paths", "data": "/local-data"})
    p = load_paths(c)
    assert (p.data, p.stage1_images) == ("/local-data", "/sys-images")
    put(c.system, "stage1.d", "a.json", {"rktKind": "stage1", "name": "example.com/s1",
                                         "version": "1", "location": "/s1.aci"})
    assert c.user is not None
    put(c.user, "stage1.d", "b.json", {"rktKind": "stage1", "location": "https://x/s.aci"})
    s = load_stage1(c)
    assert (s.name, s.version, s.location) == ("example.com/s1", "1", "https://x/s.aci")


def test_a_value_twice_in_one_directory(tmp_path: Path) -> None:
    c = dirs(tmp_path)
    put(c.local, "paths.d", "a.json", {"rktKind": "paths", "data": "/a"})
    put(c.local, "paths.d", "b.json", {"rktKind": "paths", "data": "/b"})
    with pytest.raises(UsageError, match="data directory is already specified"):
        load_paths(c)
    put(c.local, "stage1.d", "a.json", {"rktKind": "stage1", "location": "docker://x/y"})
    put(c.local, "stage1.d", "b.json", {"rktKind": "stage1", "location": "/y.aci"})
    with pytest.raises(UsageError, match="location of a default stage1 image is already"):
        load_stage1(c)


def test_rkt_config_json(tmp_path: Path) -> None:
    c = dirs(tmp_path)
    put(c.local, "auth.d", "a.json", {"rktKind": "auth", "domains": ["b.example", "a.example"],
                                      "type": "basic",
                                      "credentials": {"user": "u", "password": "p"}})
    put(c.local, "auth.d", "d.json", {"rktKind": "dockerAuth", "registries": ["r.example"],
                                      "credentials": {"user": "du", "password": "dp"}})
    assert merged_json(c) == {"stage0": [
        {"rktVersion": "v1", "rktKind": "auth", "domains": ["a.example"], "type": "basic",
         "credentials": {"user": "u", "password": "p"}},
        {"rktVersion": "v1", "rktKind": "auth", "domains": ["b.example"], "type": "basic",
         "credentials": {"user": "u", "password": "p"}},
        {"rktVersion": "v1", "rktKind": "dockerAuth", "registries": ["r.example"],
         "credentials": {"user": "du", "password": "dp"}},
        {"rktVersion": "v1", "rktKind": "paths", "data": "", "stage1-images": ""},
        {"rktVersion": "v1", "rktKind": "stage1", "name": "", "version": "", "location": ""},
    ]}
