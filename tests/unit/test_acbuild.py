"""acbuild's commands on a real build context in a temporary directory (no root needed but for
nothing here): the manifest field by field, the rootfs, exit statuses (1 refused, 2 rm of what
is not there, 3 usage) and that a refused command leaves the build as it was."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from rktd_less.cli.acbuild import main


class Build:
    def __init__(self, work: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.work = work
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        self.capsys.readouterr()
        got = main(["--work-path", str(self.work), *args])
        out, err = self.capsys.readouterr()
        assert got == code, (args, out, err)
        return out, err

    @property
    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.work / ".acbuild" / "currentaci" / "manifest").read_text())
        return data

    @property
    def app(self) -> dict[str, Any]:
        app: dict[str, Any] = self.manifest["app"]
        return app

    @property
    def rootfs(self) -> Path:
        return self.work / ".acbuild" / "currentaci" / "rootfs"


@pytest.fixture
def b(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Build:
    work = tmp_path / "work"
    work.mkdir()
    build = Build(work, capsys)
    build("begin")
    return build


def pairs(items: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(i["name"], i["value"]) for i in items]


def test_begin_gives_a_skeleton_and_end_removes_it(b: Build) -> None:
    # the caller's alone: an image's setuid files or device nodes are not other users' way in
    assert (b.work / ".acbuild").stat().st_mode & 0o777 == 0o700
    m = b.manifest
    assert m["acKind"] == "ImageManifest" and m["name"] == "acbuild-unnamed"
    assert pairs(m["labels"]) == [("arch", "amd64"), ("os", "linux")]
    assert "app" not in m and list(b.rootfs.iterdir()) == []
    _, err = b("begin", code=1)
    assert "begin: build already in progress in this working dir" in err
    b("end")
    assert list(b.work.iterdir()) == []
    _, err = b("cat-manifest", code=1)
    assert err == 'cat-manifest: no build in progress in this working dir - try "acbuild ' \
                  'begin"\n'
    b("end", code=1)


def test_set_commands(b: Build) -> None:
    b("set-name", "example.com/web")
    b("set-exec", "--", "/bin/httpd", "-f", "-p", "80", "-h", "/www")  # -h is httpd's
    b("set-user", "www")
    b("set-group", "www")
    b("set-supp-groups", "10", "20")
    b("set-working-directory", "/srv")
    b("set-event-handler", "pre-start", "--", "/bin/prep", "x")
    b("set-eh", "post-stop", "--", "/bin/done")
    b("set-event-handler", "pre-start", "--", "/bin/prep2")  # replaced
    assert b.manifest["name"] == "example.com/web"
    app = b.app
    assert app["exec"] == ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]
    assert (app["user"], app["group"]) == ("www", "www")
    assert app["supplementaryGIDs"] == [10, 20]
    assert app["workingDirectory"] == "/srv"
    assert app["eventHandlers"] == [{"name": "post-stop", "exec": ["/bin/done"]},
                                    {"name": "pre-start", "exec": ["/bin/prep2"]}]
    before = b.manifest
    for bad in (["set-name", "Not A Name"], ["set-working-directory", "rel"],
                ["set-supp-groups", "wheel"], ["set-event-handler", "on-boot", "--", "/x"]):
        _, err = b(*bad, code=1)
        assert err.startswith(bad[0] + ": ") and err.count("\n") == 1, err
    assert b.manifest == before


def test_a_new_app_runs_as_root(b: Build) -> None:
    b("set-exec", "--", "/bin/true")
    assert (b.app["user"], b.app["group"]) == ("0", "0")


@pytest.mark.parametrize(("group", "where"), [("label", "labels"),
                                              ("annotation", "annotations"),
                                              ("environment", "environment")])
def test_name_value_lists(b: Build, group: str, where: str) -> None:
    def items() -> list[tuple[str, str]]:
        doc = b.app if where == "environment" else b.manifest
        return [p for p in pairs(doc.get(where, []))
                if p[0] not in ("arch", "os") and not p[0].startswith("coreos.com/acbuild/")]

    b(group, "add", "one", "1")
    b(group, "add", "two", "2")
    b(group, "add", "one", "uno")  # replaced, moved to the end
    assert items() == [("two", "2"), ("one", "uno")]
    b(group, "rm", "two")
    assert items() == [("one", "uno")]
    before = b.manifest
    _, err = b(group, "rm", "two", code=2)
    assert "not found" in err
    assert b.manifest == before


def test_label_rules(b: Build) -> None:
    for args in (["name", "x"], ["os", "plan9"], ["Bad Label", "x"]):
        b("label", "add", *args, code=1)
    b("environment", "add", "1BAD", "x", code=1)


def _stored(b: Build, tmp_path: Path, name: str, *labels: str) -> str:
    """An image built here and fetched into the test's own store (rkt --dir): its key."""
    from rktd_less.cli.main import main as rkt

    work = tmp_path / f"img-{name.replace('/', '-')}-{len(list(tmp_path.iterdir()))}"
    work.mkdir()
    other = Build(work, b.capsys)
    other("begin")
    other("set-name", name)
    for lb in labels:
        other("label", "add", *lb.split("=", 1))
    aci = work / "image.aci"
    other("write", str(aci))
    other("end")
    b.capsys.readouterr()
    assert rkt(["--dir", str(tmp_path / "rkt"), "--insecure-options=image", "fetch",
                str(aci)]) == 0
    return b.capsys.readouterr().out.strip()


def test_dependencies(b: Build, tmp_path: Path) -> None:
    """dep add edits the manifest and has the dependency at once: here from the local store
    (no discovery); one that can be had from nowhere is refused and not added."""
    store = ["--dir", str(tmp_path / "rkt")]
    _stored(b, tmp_path, "example.com/base", "version=1.0")
    _stored(b, tmp_path, "example.com/base", "version=2.0")
    other = _stored(b, tmp_path, "example.com/other")
    full_id = next((tmp_path / "rkt" / "cas" / "blob").rglob(other + "*")).name
    b(*store, "dep", "add", "example.com/base:1.0", "--label", "arch=amd64")
    b(*store, "dependency", "add", "example.com/other", "--image-id", full_id, "--size", "42")
    assert b.manifest["dependencies"] == [
        {"imageName": "example.com/base",
         "labels": [{"name": "arch", "value": "amd64"}, {"name": "version", "value": "1.0"}]},
        {"imageName": "example.com/other", "imageID": full_id, "size": 42}]
    b(*store, "dep", "add", "example.com/base", "--label", "version=2.0")  # replaced, last
    deps = b.manifest["dependencies"]
    assert [d["imageName"] for d in deps] == ["example.com/other", "example.com/base"]
    assert deps[1]["labels"] == [{"name": "version", "value": "2.0"}]
    b("dep", "rm", "example.com/other")
    b("dep", "rm", "example.com/other", code=2)
    before = b.manifest
    b(*store, "dep", "add", "example.com/x", "--image-id", "sha1-00", code=1)
    b(*store, "dep", "add", "example.com/x", "--size", "-1", code=1)
    # not in the store, and its discovery (https://localhost/missing) finds no server
    _out, err = b(*store, "dep", "add", "localhost/missing", code=1)
    assert err.startswith("dependency add: ") and len(err.splitlines()) == 1, err
    assert b.manifest == before


def test_a_dependency_from_a_local_aci_file(b: Build, tmp_path: Path) -> None:
    """acbuild #227: ``dep add ./base.aci``. The file is verified like any image (its .asc,
    or --insecure-options=image), stored, and named by its name, version and ID."""
    store = ["--dir", str(tmp_path / "rkt")]
    other = Build(tmp_path / "w2", b.capsys)
    (tmp_path / "w2").mkdir()
    other("begin")
    other("set-name", "example.com/local")
    other("label", "add", "version", "3.0")
    aci = tmp_path / "local.aci"
    other("write", str(aci))
    other("end")
    before = b.manifest
    _out, err = b(*store, "dep", "add", str(aci), code=1)
    assert "signature" in err and len(err.splitlines()) == 1, err
    assert b.manifest == before
    b(*store, "--insecure-options=image", "dep", "add", str(aci))
    dep = b.manifest["dependencies"][-1]
    assert dep["imageName"] == "example.com/local"
    assert dep["labels"] == [{"name": "version", "value": "3.0"}]
    assert dep["imageID"].startswith("sha512-") and len(dep["imageID"]) == 7 + 64
    b(*store, "dep", "add", str(tmp_path / "nope.aci"), code=1)


def test_mounts_and_ports(b: Build) -> None:
    b("mount", "add", "html", "/www", "--read-only")
    b("volume", "add", "data", "/data")
    b("mount", "rm", "/data")  # by path
    assert b.app["mountPoints"] == [{"name": "html", "path": "/www", "readOnly": True}]
    b("mount", "rm", "data", code=2)
    b("port", "add", "http", "tcp", "80")
    b("port", "add", "dns", "udp", "53", "--count", "2", "--socket-activated")
    assert b.app["ports"] == [
        {"name": "http", "protocol": "tcp", "port": 80, "count": 1, "socketActivated": False},
        {"name": "dns", "protocol": "udp", "port": 53, "count": 2, "socketActivated": True}]
    before = b.manifest
    for bad in (["--", "neg", "tcp", "-1"], ["high", "tcp", "65536"], ["p", "sctp", "1"],
                ["p", "tcp", "x"], ["p", "tcp", "65535", "--count", "2"]):
        b("port", "add", *bad, code=1)
    assert b.manifest == before
    b("port", "rm", "53")  # by number
    b("port", "rm", "http")
    b("port", "rm", "http", code=2)
    assert "ports" not in b.app


def test_isolators(b: Build, tmp_path: Path) -> None:
    f = tmp_path / "mem.json"
    f.write_text('{"limit": "1G"}')
    b("isolator", "add", "resource/memory", str(f))
    assert b.app["isolators"] == [{"name": "resource/memory", "value": {"limit": "1G"}}]
    f.write_text('{"limit": "lots"}')
    b("isolator", "add", "resource/memory", str(f), code=1)
    f.write_text("not json")
    b("isolator", "add", "resource/cpu", str(f), code=1)
    b("isolator", "rm", "resource/memory")
    b("isolator", "rm", "resource/memory", code=2)


def test_history_and_no_history(b: Build) -> None:
    b("mount", "add", "html", "/www", "--read-only")
    b("--no-history", "label", "add", "a", "b")
    b("set-exec", "--", "/bin/sh", "-c", 'echo "hi"')
    history = [p for p in pairs(b.manifest["annotations"])]
    assert history == [
        ("coreos.com/acbuild/command-1", 'acbuild mount add "html" "/www" "--read-only"'),
        ("coreos.com/acbuild/command-2",
         'acbuild set-exec "--" "/bin/sh" "-c" "echo \\"hi\\""')]


def test_replace_and_cat_manifest(b: Build, tmp_path: Path) -> None:
    new = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/new",
           "app": {"exec": ["/x"], "user": "0", "group": "0"}}
    f = tmp_path / "m.json"
    f.write_text(json.dumps(new, indent=4))
    b("--no-history", "replace-manifest", str(f))
    out, _ = b("cat-manifest")
    assert json.loads(out) == new and out.count("\n") == 1
    out, _ = b("cat-manifest", "--pretty-print")
    assert json.loads(out) == new and out.startswith("{\n\t")
    f.write_text('{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "Bad Name"}')
    b("replace-manifest", str(f), code=1)
    f.write_text("{")
    b("replace-manifest", str(f), code=1)
    assert b.manifest == new


def test_copy(b: Build, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_text("f")
    (src / "g").write_text("g")
    b("copy", str(src / "d"), "/srv/www")
    b("copy", str(src / "g"), "/etc/g.conf")
    b("copy-to-dir", str(src / "d"), str(src / "g"), "/opt")
    b("copy", str(tmp_path / "nothing"), "/x", code=1)
    files = sorted(str(p.relative_to(b.rootfs)) for p in b.rootfs.rglob("*") if p.is_file())
    assert files == ["etc/g.conf", "opt/d/f", "opt/g", "srv/www/f"]
    (b.rootfs / "lnk").symlink_to("/")  # the image's links stay in the image
    b("copy", str(src / "g"), "/lnk/escaped")
    assert (b.rootfs / "escaped").read_text() == "g"


def _tar_of(aci: Path) -> bytes:
    return gzip.decompress(aci.read_bytes())


def test_write(b: Build, tmp_path: Path) -> None:
    out = tmp_path / "web.aci"
    _, err = b("write", str(out), code=1)
    assert "can't write ACI, name was never set" in err and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "work"] == []
    b("set-name", "example.com/web")
    (b.rootfs / "www").mkdir()
    (b.rootfs / "www" / "index.html").write_text("hello\n")
    stdout, err = b("write", str(out))
    assert "no exec" in err  # a warning only
    data = _tar_of(out)
    assert stdout.strip() == "sha512-" + hashlib.sha512(data).hexdigest()
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert names[0] == "manifest" and "rootfs/www/index.html" in names
        f = tar.extractfile("manifest")
        assert f is not None and json.loads(f.read())["name"] == "example.com/web"
    b("write", str(out), code=1)
    b("set-exec", "--", "/bin/true")
    stdout2, _ = b("write", "--overwrite", str(out))
    assert stdout2 != stdout
    b("write", str(tmp_path / "no" / "dir.aci"), code=1)


def test_write_sign(b: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--sign KEYID: ACI.asc by gpg from the caller's GnuPG home, checked here by gpg itself;
    an unknown key refuses the write whole; a write over a signed ACI without --sign removes
    the signature it would no longer match."""
    import subprocess

    from tests.helpers.gpg import session_keys

    key = session_keys().alice
    monkeypatch.setenv("GNUPGHOME", str(key.home))
    b("set-name", "example.com/web")
    b("set-exec", "--", "/bin/true")
    out = tmp_path / "web.aci"
    # a key the home lacks: refused (gpg's --default-key would have signed with another)
    _, err = b("write", "--sign", "0123456789ABCDEF", str(out), code=1)
    assert err.startswith('write: cannot sign with key "0123456789ABCDEF": ') and \
        len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # nothing half-written
    b("write", "--sign", key.fingerprint, str(out))
    asc = tmp_path / "web.aci.asc"
    assert asc.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    check = subprocess.run(["gpg", "--homedir", str(key.home), "--status-fd", "1", "--verify",
                            str(asc), str(out)], capture_output=True, text=True)
    assert check.returncode == 0 and f"VALIDSIG {key.fingerprint.upper()}" in check.stdout
    _, err = b("write", "--overwrite", str(out))
    assert not asc.exists() and f'removed "{asc}"' in err


def test_begin_from_an_aci_a_directory_and_a_rootfs_tarball(b: Build, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    b("set-name", "example.com/base")
    b("set-exec", "--", "/bin/sh")
    (b.rootfs / "bin").mkdir()
    (b.rootfs / "bin" / "sh").write_text("#!")
    aci = tmp_path / "base.aci"
    b("write", str(aci))
    b("end")
    b("begin", str(aci))
    assert b.manifest["name"] == "example.com/base" and b.app["exec"] == ["/bin/sh"]
    assert (b.rootfs / "bin" / "sh").read_text() == "#!"
    b("end")
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "x").write_text("x")
    b("begin", str(tree))
    assert b.manifest["name"] == "acbuild-unnamed" and (b.rootfs / "etc" / "x").exists()
    b("end")
    ball = tmp_path / "rootfs.tar"
    with tarfile.open(ball, "w") as tar:
        tar.add(tree, arcname=".")
    b("begin", str(ball))
    assert (b.rootfs / "etc" / "x").read_text() == "x"
    b("end")
    b("begin", str(tmp_path / "missing.aci"), code=1)
    assert list(b.work.iterdir()) == []  # nothing half-made


def test_modify_edits_an_aci_in_place(b: Build, tmp_path: Path) -> None:
    b("set-name", "example.com/base")
    aci = tmp_path / "base.aci"
    b("write", str(aci))
    b("end")
    b("--modify", str(aci), "label", "add", "version", "2.0")
    with tarfile.open(aci) as tar:
        f = tar.extractfile("manifest")
        assert f is not None
        assert ("version", "2.0") in pairs(json.loads(f.read())["labels"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.aci", "work"]
    b("--modify", str(aci), "label", "rm", "nope", code=2)


def test_usage_errors_exit_3(b: Build) -> None:
    _, err = b("frob", code=3)
    assert err == 'frob: unknown command "frob" (see `acbuild help`)\n'
    b("label", "add", "onlyname", code=3)
    b("label", code=3)
    b("set-name", "--bogus", "x", code=3)
    b("write", code=3)


def test_a_second_acbuild_in_the_same_build_is_refused(b: Build) -> None:
    import fcntl
    import os

    fd = os.open(b.work / ".acbuild" / "lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _, err = b("label", "add", "a", "b", code=1)
        assert "lock already held - is another acbuild running in this working dir?" in err
    finally:
        os.close(fd)
    b("label", "add", "a", "b")
