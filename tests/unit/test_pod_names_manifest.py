"""Pure parts of --pod-name and --pod-manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rktd_less.errors import ManifestError, UsageError
from rktd_less.paths import Paths
from rktd_less.pod import from_manifest, names, poddir

KEY = "sha512-" + "a" * 128


@pytest.mark.parametrize("name", ["web", "web-1", "db2", "abc", "x" * 63])
def test_good_names(name: str) -> None:
    assert names.check(name) == name


@pytest.mark.parametrize("name", ["", "Web", "web_1", "-web", "x" * 64, "a b", "web/1"])
def test_bad_names(name: str) -> None:
    with pytest.raises(UsageError):
        names.check(name)


def test_claim_lookup_release(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    a = poddir.Embryo(paths)
    names.claim(paths, "web", a.uuid)
    assert names.lookup(paths, "web") == a.uuid
    assert poddir.resolve(paths, "web").uuid == a.uuid
    b = poddir.Embryo(paths)
    with pytest.raises(UsageError, match=f'pod name "web" is already used by pod {a.uuid}'):
        names.claim(paths, "web", b.uuid)
    names.release(paths, b.uuid, "web")  # not b's: untouched
    assert names.lookup(paths, "web") == a.uuid
    names.release(paths, a.uuid, "web")
    assert names.lookup(paths, "web") is None
    names.claim(paths, "web", b.uuid)
    assert names.lookup(paths, "web") == b.uuid


def test_stale_name_is_taken_over(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.pod_names.mkdir(parents=True)
    (paths.pod_names / "web").symlink_to("00000000-0000-0000-0000-000000000000")
    e = poddir.Embryo(paths)
    names.claim(paths, "web", e.uuid)
    assert names.lookup(paths, "web") == e.uuid


def test_conflicting_flags() -> None:
    base = {"volume": [], "mount": [], "set-env": [], "set-env-file": "", "inherit-env": False,
            "pull-policy": "new", "net": "none", "hostname": "h"}
    assert from_manifest.conflicts(base, 0) == []
    bad = dict(base, volume=["v,kind=empty"], **{"inherit-env": True})
    assert from_manifest.conflicts(bad, 2) == ["--volume", "--inherit-env", "images"]
    with pytest.raises(UsageError, match="conflicting flags set with --pod-manifest: an image"):
        from_manifest.check_flags(base, 1)


def _pod(apps: list[dict[str, object]], volumes: list[dict[str, object]] | None = None
         ) -> dict[str, object]:
    return {"acVersion": "0.8.11", "acKind": "PodManifest", "apps": apps,
            "volumes": volumes or []}


def test_load_validates(tmp_path: Path) -> None:
    f = tmp_path / "pod.json"
    with pytest.raises(UsageError, match="cannot read pod manifest"):
        from_manifest.load(str(f))
    f.write_text("{")
    with pytest.raises(ManifestError, match="invalid JSON"):
        from_manifest.load(str(f))
    f.write_text(json.dumps(_pod([])))
    with pytest.raises(ManifestError, match="has no apps"):
        from_manifest.load(str(f))
    f.write_text(json.dumps(_pod([{"name": "a", "image": {"id": KEY},
                                   "mounts": [{"volume": "nope", "path": "/x"}]}])))
    with pytest.raises(ManifestError, match="undeclared volume"):
        from_manifest.load(str(f))


def test_complete_fills_ids_names_and_implicit_volumes(tmp_path: Path) -> None:
    f = tmp_path / "pod.json"
    f.write_text(json.dumps(_pod([{"name": "a", "image": {"id": "sha512-aaaa"}}])))
    raw = from_manifest.load(str(f))
    im = {"name": "example.com/a", "labels": [{"name": "version", "value": "1"}],
          "app": {"exec": ["/bin/true"], "mountPoints": [{"name": "data", "path": "/data"}]}}
    out, ims = from_manifest.complete(raw, lambda i: KEY, lambda k: im)
    app = out["apps"][0]
    assert app["image"] == {"id": KEY, "name": "example.com/a", "labels": im["labels"]}
    assert app["mounts"] == [{"volume": "data", "path": "/data"}]
    assert out["volumes"][0]["name"] == "data" and out["volumes"][0]["kind"] == "empty"
    assert ims == [im]
    with pytest.raises(ManifestError, match='app "a" has nothing to run'):
        from_manifest.complete(raw, lambda i: KEY, lambda k: {"name": "x"})


RACER = """
import sys
from pathlib import Path
from rktd_less.errors import UsageError
from rktd_less.paths import Paths
from rktd_less.pod import names
import time
paths = Paths(Path(sys.argv[1]))
real_lookup = names.lookup
def slow_lookup(paths, name):  # widen the window between checking a link and replacing it
    found = real_lookup(paths, name)
    time.sleep(0.05)
    return found
names.lookup = slow_lookup
sys.stdin.readline()  # all start together
try:
    names.claim(paths, "web", sys.argv[2])
    print("won")
except UsageError:
    print("lost")
"""


def test_racing_claims_of_a_stale_name_have_one_winner(tmp_path: Path) -> None:
    """A stale link (its pod gone) is taken over by exactly one of many racing claimers (the
    check-then-replace let two of them both win)."""
    import subprocess
    import sys

    paths = Paths(tmp_path)
    gone = poddir.Embryo(paths)
    names.claim(paths, "web", gone.uuid)
    gone.close()
    import shutil

    shutil.rmtree(paths.pod("prepare", gone.uuid))  # its pod is gone: the link is stale
    for _ in range(5):
        racers = [poddir.Embryo(paths) for _ in range(8)]
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), r.uuid],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).parents[2]) for r in racers]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=30)[0].strip() for p in procs]
        assert results.count("won") == 1, results
        winner = racers[results.index("won")].uuid
        assert names.lookup(paths, "web") == winner
        for r in racers:  # all gone again: the next round races for a stale link anew
            r.close()
            shutil.rmtree(paths.pod("prepare", r.uuid))
