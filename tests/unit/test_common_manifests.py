"""common/manifests.py: its TypedDicts describe the pod manifest stage0 writes and the
documents appc's schema dumps, key for key; its readers give them back (pure)."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from rktd_less.appc.isolators import AppIsolatorFlags
from rktd_less.appc.manifest import parse_image_manifest, parse_pod_manifest
from rktd_less.cli.volume_args import parse_mount, parse_volume
from rktd_less.common.manifests import read_image_manifest, read_pod_manifest
from rktd_less.common.podpaths import PodPaths
from rktd_less.pod import from_manifest
from rktd_less.pod.prepare import AppRequest, PodPlan, ResolvedApp, pod_manifest, write_pod_dir

from .test_appc_manifest import FULL_IMAGE, FULL_POD

if TYPE_CHECKING:
    from rktd_less.common.manifests import ImageManifestDoc


def _typed_module() -> types.ModuleType:
    """The module with its TypedDicts defined: they exist for the type checker only (under
    ``if TYPE_CHECKING``), so the test runs the module's source with that block taken."""
    spec = importlib.util.find_spec("rktd_less.common.manifests")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    assert source.count("\nif TYPE_CHECKING:\n") == 1
    mod = types.ModuleType("typed_manifests")
    exec(compile(source.replace("\nif TYPE_CHECKING:\n", "\nif True:\n"), spec.origin, "exec"),
         mod.__dict__)
    return mod


TYPED = _typed_module()


def _hints(td: Any) -> dict[str, Any]:
    return typing.get_type_hints(td, globalns=vars(TYPED), include_extras=True)


def _required(td: Any) -> set[str]:
    out = set()
    for key, hint in _hints(td).items():
        origin = typing.get_origin(hint)
        if origin is typing.Required or (td.__total__ and origin is not typing.NotRequired):
            out.add(key)
    return out


def check(value: object, hint: Any, where: str = "$") -> None:
    """``value`` is what ``hint`` says: a TypedDict has no key it does not declare and every
    key it requires, recursively."""
    if typing.get_origin(hint) in (typing.Required, typing.NotRequired):
        hint = typing.get_args(hint)[0]
    if hint is Any:
        return
    if typing.is_typeddict(hint):
        assert isinstance(value, dict), where
        hints = _hints(hint)
        extra, missing = set(value) - set(hints), _required(hint) - set(value)
        assert not extra, f"{where}: not in {hint.__name__}: {extra}"
        assert not missing, f"{where}: {hint.__name__} lacks {missing}"
        for key, item in value.items():
            check(item, hints[key], f"{where}.{key}")
        return
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check(item, args[0], f"{where}[{i}]")
    elif origin is dict:
        assert isinstance(value, dict), where
        for key, item in value.items():
            check(key, args[0], f"{where} key")
            check(item, args[1], f"{where}.{key}")
    else:
        assert isinstance(value, hint), f"{where}: {value!r} is not {hint}"
        assert hint is bool or not isinstance(value, bool), f"{where}: {value!r} is not {hint}"


def _image(name: str, **app: Any) -> ImageManifestDoc:
    return cast("ImageManifestDoc", {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
            "labels": [{"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"},
                       {"name": "arch", "value": "amd64"}],
            "app": {"exec": ["/bin/sh"], "user": "0", "group": "0", **app}})


def _plan() -> PodPlan:
    web = ResolvedApp(
        request=AppRequest(image="example.com/web", exec_="/bin/httpd", args=("-f",),
                           user="100", working_dir="/srv", environment=(("B", "2"),),
                           readonly_rootfs=True, mounts=(parse_mount("volume=data,target=/d"),),
                           supplementary_gids=(5, 6), annotations=(("note", "x"),),
                           isolator_flags=AppIsolatorFlags(memory="64M", caps_retain="CAP_KILL"),
                           user_annotations=(("who", "me"),), user_labels=(("tier", "web"),)),
        key="sha512-" + "a" * 64,
        manifest=_image("example.com/web", environment=[{"name": "A", "value": "1"}],
                        mountPoints=[{"name": "cache", "path": "/cache", "readOnly": True}],
                        eventHandlers=[{"name": "pre-start", "exec": ["/bin/true"]}],
                        isolators=[{"name": "os/linux/no-new-privileges", "value": True}]))
    db = ResolvedApp(request=AppRequest(image="example.com/db"), key="sha512-" + "b" * 64,
                     manifest=_image("example.com/db"))
    return PodPlan(apps=(web, db), annotations=(("ip", "10.0.0.1"),), set_env=(("C", "3"),),
                   volumes=(parse_volume("data,kind=host,source=/srv/data,readOnly=true"),
                            parse_volume("tmp,kind=empty,mode=0700,uid=5,gid=6")),
                   mounts=(parse_mount("volume=tmp,target=/t"),))


def test_pod_manifest_written_by_stage0_round_trips_with_the_typed_keys(tmp_path: Path) -> None:
    manifest = pod_manifest(_plan())
    write_pod_dir(tmp_path, manifest, {"web": ("t1", b"{}"), "db": ("t2", b"{}")}, "s1", b"{}")
    path = PodPaths(tmp_path).manifest
    doc = read_pod_manifest(path)
    assert doc == manifest
    assert read_pod_manifest(path.read_text()) == read_pod_manifest(path.read_bytes()) == doc
    check(doc, TYPED.PodManifestDoc)
    # the keys the type names are the ones stage0 fills in
    web, db = doc["apps"]
    assert web["image"] == {"name": "example.com/web", "id": "sha512-" + "a" * 64,
                            "labels": _image("x")["labels"]}
    assert web["app"]["exec"] == ["/bin/httpd", "-f"] and web["app"]["user"] == "100"
    assert web["app"]["environment"] == [{"name": "A", "value": "1"}, {"name": "C", "value": "3"},
                                         {"name": "B", "value": "2"}]
    assert [i["name"] for i in web["app"]["isolators"]] == [
        "os/linux/no-new-privileges", "resource/memory", "os/linux/capabilities-retain-set"]
    assert web["readOnlyRootFS"] and not db["readOnlyRootFS"]
    assert {m["path"] for m in web["mounts"]} == {"/t", "/d", "/cache"}
    assert [v["name"] for v in doc["volumes"]] == ["data", "tmp", "cache"]
    assert doc["annotations"][-1] == {"name": "coreos.com/rkt/stage1/mutable", "value": "false"}
    # and it is a valid appc pod manifest
    parse_pod_manifest(path.read_text())


def test_appc_schema_documents_match_the_typeddicts() -> None:
    """Every key the schema writes (the spec's full examples) is declared, with its type."""
    check(parse_pod_manifest(json.dumps(FULL_POD)).to_dict(), TYPED.PodManifestDoc)
    check(parse_image_manifest(json.dumps(FULL_IMAGE)).to_dict(), TYPED.ImageManifestDoc)
    check(FULL_POD, TYPED.PodManifestDoc)
    check(FULL_IMAGE, TYPED.ImageManifestDoc)


def test_user_pod_manifest_completed_matches_the_typeddicts(tmp_path: Path) -> None:
    f = tmp_path / "pod.json"
    f.write_text(json.dumps(FULL_POD))
    out, ims = from_manifest.complete(from_manifest.load(str(f)), lambda i: i,
                                      lambda key: cast("ImageManifestDoc",
                                                       copy.deepcopy(FULL_IMAGE)))
    check(out, TYPED.PodManifestDoc)
    for im in ims:
        check(im, TYPED.ImageManifestDoc)


def test_a_typo_in_a_key_is_caught_by_the_check() -> None:
    with pytest.raises(AssertionError, match="readonlyRootFS"):
        check({"name": "a", "image": {"id": "x"}, "readonlyRootFS": True}, TYPED.RuntimeAppDoc)
    with pytest.raises(AssertionError, match="lacks"):
        check({"name": "a"}, TYPED.RuntimeAppDoc)


def test_read_image_manifest_from_file_bytes_and_text(tmp_path: Path) -> None:
    text = json.dumps(FULL_IMAGE)
    (tmp_path / "manifest").write_text(text)
    assert (read_image_manifest(tmp_path / "manifest") == read_image_manifest(text.encode())
            == read_image_manifest(text) == FULL_IMAGE)
    with pytest.raises(ValueError):
        read_image_manifest(b"{")
    with pytest.raises(OSError):
        read_pod_manifest(tmp_path / "absent")


def test_the_types_cost_nothing_at_run_time() -> None:
    """Importing the module defines no class and pulls in neither the appc schema nor
    dataclasses (stage1 imports it at every pod start)."""
    code = ("import sys, rktd_less.common.manifests as m; "
            "print(hasattr(m, 'PodManifestDoc'), 'rktd_less.appc.manifest' in sys.modules, "
            "'dataclasses' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False", "False"]
