"""A member of group `rkt` uses the store without root (rkt §1.1): fetch, image list,
cat-manifest, extract, render, export and verify work, `rkt run` is refused; what root writes
the member reads and the other way round; nothing the member extracts keeps a setuid bit.

Creates group `rkt` (if missing) and a throwaway user in it, and removes both afterwards.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, destroy, new_env, sh

REPO = Path(__file__).resolve().parents[2]
USER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class Member:
    name: str
    uid: int
    gid: int  # of group rkt
    home: Path


def _unreachable(path: Path) -> list[str]:
    """Ancestors of ``path`` that users other than their owner cannot enter."""
    bad = []
    for p in [path, *path.parents]:
        if not p.stat().st_mode & stat.S_IXOTH:
            bad.append(f"{p} ({stat.filemode(p.stat().st_mode)})")
    return bad


@pytest.fixture
def env() -> Iterator[Rkt]:
    e = new_env("nonroot")
    try:
        yield e
    finally:
        destroy(e)


@pytest.fixture
def member(env: Rkt) -> Iterator[Member]:
    # The non-root user runs this checkout's venv and reads the scratch dir: both must be
    # enterable by other users (a checkout under a 0700 home directory would not be).
    for p in (Path(sys.executable).parent, REPO / "rktd_less", env.data):
        bad = _unreachable(p)
        assert not bad, f"non-root users cannot reach {p}: fix the modes of {bad}"
    made_group = False
    try:
        grp.getgrnam("rkt")
    except KeyError:
        sh("groupadd", "--system", "rkt")
        made_group = True
    name = f"rkt-t-{uuid.uuid4().hex[:8]}"
    home = env.work / "home"
    try:
        sh("useradd", "--no-create-home", "--home-dir", str(home), "--shell",
           "/usr/sbin/nologin", "--groups", "rkt", "--user-group", name)
        pw = pwd.getpwnam(name)
        home.mkdir()
        os.chown(home, pw.pw_uid, pw.pw_gid)
        yield Member(name, pw.pw_uid, grp.getgrnam("rkt").gr_gid, home)
    finally:
        sh("userdel", name, check=False)
        if made_group:
            sh("groupdel", "rkt", check=False)


def as_member(env: Rkt, m: Member, *args: str, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    argv = ["setpriv", f"--reuid={m.uid}", f"--regid={m.uid}", "--init-groups", "--",
            *env.argv(*args)]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=m.home,
                        env={**USER_ENV, "HOME": str(m.home)}, stdin=subprocess.DEVNULL)
    if check and cp.returncode != 0:
        raise AssertionError(f"rkt {' '.join(args)} as {m.name} exited {cp.returncode}\n"
                             f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
    return cp


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_member_of_group_rkt_uses_the_store_without_root(env: Rkt, member: Member) -> None:
    m = member
    root_aci = build_aci(env.work / "root.aci", name="example.com/by-root",
                         files={"usr/bin/suid": (b"#!/bin/sh\n", 0o4755)})
    user_aci = build_aci(env.work / "user.aci", name="example.com/by-user", version="2.0",
                         files={"usr/bin/sgid": (b"#!/bin/sh\n", 0o2755)})

    # root creates the store: shared with group rkt
    root_id = env("fetch", "--full", "--insecure-options=image", str(root_aci)).stdout.strip()
    cas = env.data / "cas"
    for d in (cas / "db", cas / "blob", cas / "imageManifest"):
        assert (_mode(d), d.stat().st_gid) == (0o2775, m.gid), d
    for d in (cas, cas / "tmp", cas / "locks"):  # sticky: members cannot rename root's
        assert (_mode(d), d.stat().st_gid) == (0o3775, m.gid), d
    assert (_mode(cas / "db" / "images.sqlite"), (cas / "db" / "images.sqlite").stat().st_gid) \
        == (0o664, m.gid)

    # the member writes into root's store and index
    user_id = as_member(env, m, "fetch", "--full", "--insecure-options=image",
                        str(user_aci)).stdout.strip()
    blob = cas / "blob" / "sha512" / user_id[7:9] / user_id
    st = blob.stat()
    assert (st.st_uid, st.st_gid, _mode(blob)) == (m.uid, m.gid, 0o644)

    listing = as_member(env, m, "image", "list", "--no-legend", "--full").stdout
    assert {line.split()[1] for line in listing.splitlines()} == {
        "example.com/by-root:1.0", "example.com/by-user:2.0"}
    manifest = json.loads(as_member(env, m, "image", "cat-manifest",
                                    "example.com/by-root").stdout)
    assert manifest["name"] == "example.com/by-root"

    # extract / render / export as the member: files are the member's, no setuid/setgid bits
    out = m.home / "x"
    as_member(env, m, "image", "extract", "example.com/by-root", str(out))
    suid = out / "rootfs" / "usr" / "bin" / "suid"
    assert suid.stat().st_uid == m.uid and not _mode(suid) & 0o6000
    as_member(env, m, "image", "render", "--rootfs-only", "example.com/by-user",
              str(m.home / "r"))
    sgid = m.home / "r" / "usr" / "bin" / "sgid"
    assert sgid.stat().st_uid == m.uid and not _mode(sgid) & 0o6000
    as_member(env, m, "image", "export", root_id, str(m.home / "root.aci"))
    digest = hashlib.sha512((m.home / "root.aci").read_bytes()).hexdigest()
    assert root_id == "sha512-" + digest[:64]
    # as root, as `rkt run` would: a tree in cas/tree (in a process of its own, as rkt's)
    sh(sys.executable, "-c", "import sys; from rktd_less.paths import Paths; "
       "from rktd_less.store import Store; Store(Paths.from_dir(sys.argv[1])).render(sys.argv[2])",
       str(env.data), root_id)
    cp = as_member(env, m, "image", "verify", root_id, user_id)
    assert cp.stdout.count("successfully verified checksum") == 2
    # the rendered trees are root's (cas/tree 2700): the member is told they were not checked
    assert cp.stderr.splitlines() == [
        "verify: warning: rendered trees not verified: cannot access "
        f"{env.data / 'cas' / 'tree'} (run as root)"]

    # running pods needs root
    cp = as_member(env, m, "run", "--insecure-options=image", "example.com/by-user",
                   check=False)
    assert cp.returncode == 254
    assert "cannot run as unprivileged user" in cp.stderr

    # root reads what the member wrote
    listing = env("image", "list", "--no-legend", "--full").stdout
    assert {line.split()[0] for line in listing.splitlines()} == {root_id, user_id}
    env("image", "extract", "--rootfs-only", user_id, str(env.work / "root-x"))
    sgid = env.work / "root-x" / "usr" / "bin" / "sgid"
    assert sgid.stat().st_uid == 0 and _mode(sgid) == 0o2755  # root keeps what the image says
    # and the member still writes after root did (-wal/-shm stayed group-writable)
    as_member(env, m, "image", "rm", "example.com/by-user")
    assert env("image", "list", "--no-legend", "--full").stdout.split()[0] == root_id

    # root's rendered trees are root's alone (they keep setuid-root files): the member's
    # image rm leaves them, root's image gc takes them
    tree = sh(sys.executable, "-c", "import sys; from rktd_less.paths import Paths; "
              "from rktd_less.store import Store; "
              "print(Store(Paths.from_dir(sys.argv[1])).render(sys.argv[2]))",
              str(env.data), root_id).stdout.strip()
    assert _mode(cas / "tree") == 0o2700
    cp = as_member(env, m, "image", "rm", root_id)
    assert cp.stdout == f'successfully removed aci for image: "{root_id}"\n'
    assert (cas / "tree" / tree).is_dir()
    gc = env("image", "gc")
    assert gc.stderr == f'gc: removed treestore "{tree}"\n'
    assert not (cas / "tree" / tree).exists()


def _tmpfiles_modes() -> dict[str, int]:
    text = (REPO / "units" / "tmpfiles.d" / "rkt.conf").read_text()
    return {f[1].removeprefix("/var/lib/rkt").lstrip("/"): int(f[2], 8)
            for f in (ln.split() for ln in text.splitlines())
            if len(f) >= 3 and f[0] == "d" and f[1].startswith("/var/lib/rkt")}


def _first_command(env: Rkt, which: str) -> None:
    """Root's first command on a store that does not exist yet (the https, discovery and
    docker fetches fail: nothing listens there; what they create is what counts)."""
    if which == "local":
        aci = build_aci(env.work / "first.aci", name="example.com/first")
        env("fetch", "--insecure-options=image", str(aci))
    elif which == "https":
        env("fetch", "https://127.0.0.1:1/image.aci", check=False)
    elif which == "discovery":  # a successful one, over HTTPS from a server of our own
        import os

        from tests.helpers.https_server import discovery_html, make_certs, serve

        certs_dir = env.work / "certs"
        certs_dir.mkdir()
        certs = make_certs(certs_dir)
        aci = build_aci(env.work / "hello.aci", name="localhost/hello", version="1.0")
        with serve(certs, port=443) as server:
            server.files["/images/hello-1.0.aci"] = aci.read_bytes()
            server.files["/hello"] = discovery_html(
                aci=[("localhost/hello", "https://localhost/images/hello-{version}.aci")])
            env("fetch", "--insecure-options=image", "localhost/hello:1.0",
                env={**os.environ, "SSL_CERT_FILE": str(certs.ca_file)})
    elif which == "docker":
        env("fetch", "--insecure-options=image,http", "docker://127.0.0.1:1/nothing:1",
            check=False)
    elif which == "trust":
        from tests.helpers.gpg import session_keys

        key = env.work / "alice.gpg"
        key = session_keys().alice.export(key)
        env("trust", "--skip-fingerprint-review", "--prefix=example.com/signed", str(key))
        # then a signed local fetch by root: the trusted keys are root's, the store too
        aci = build_aci(env.work / "root-signed.aci", name="example.com/signed")
        session_keys().alice.sign(aci)
        env("fetch", str(aci))


@pytest.mark.parametrize("which", ["local", "https", "discovery", "docker", "trust"])
def test_member_fetches_into_a_store_root_created(env: Rkt, member: Member,
                                                  which: str) -> None:
    """Whichever command made the store, it has units/tmpfiles.d's modes and group, and a
    member of group rkt can fetch into it (after a failing https fetch a member got
    `cannot create a temp file in …/cas/tmp: Permission denied`)."""
    import shutil

    shutil.rmtree(env.data)  # the first command creates the data dir itself
    _first_command(env, which)
    assert env.data.is_dir()
    modes = _tmpfiles_modes()
    for rel in ("", "cas", "cas/db", "cas/tmp", "cas/locks"):  # made by every first command
        assert (env.data / rel).is_dir(), (which, rel)
    for rel, mode in modes.items():
        d = env.data / rel
        if d.exists():
            assert (_mode(d), d.stat().st_gid) == (mode, member.gid), (which, rel)
    name = "example.com/signed" if which == "trust" else "example.com/by-member"
    aci = build_aci(env.work / f"member-{which}.aci", name=name, version="2.0")
    if which == "trust":  # a signed image, verified with root's trusted key
        from tests.helpers.gpg import session_keys

        session_keys().alice.sign(aci)
        key = as_member(env, member, "fetch", str(aci)).stdout.strip()
    else:
        key = as_member(env, member, "fetch", "--insecure-options=image", str(aci)).stdout.strip()
    assert re.fullmatch(r"sha512-[0-9a-f]{32}", key), key
    assert f"{name}:2.0" in env("image", "list", "--no-legend").stdout
    assert list((env.data / "cas" / "tmp").iterdir()) == []  # nothing left behind


def test_member_lists_pods_as_in_rkt(env: Rkt, member: Member) -> None:
    """Pod dirs are group rkt's to read (2750 phase dirs, as rkt's tmpfiles.d): a member sees
    root's pods in `rkt list` and `rkt status`."""
    aci = build_aci(env.work / "pod.aci", name="example.com/pod")
    uf = env.uuid_file()
    env("run", "--insecure-options=image", f"--uuid-file-save={uf}", str(aci), "--exec",
        "/bin/sh", "--", "-c", "exit 3", check=False)
    uuid = uf.read_text()
    listing = as_member(env, member, "list", "--no-legend", "--full").stdout
    row = next(ln.split("\t") for ln in listing.splitlines() if ln.startswith(uuid))
    assert (row[1], row[2], row[4]) == ("pod", "example.com/pod:1.0", "exited"), row
    status = as_member(env, member, "status", uuid).stdout
    assert "state=exited" in status and "app-pod=3" in status, status
    # but nothing of the pod is writable for the member
    pod = next((env.data / "pods").glob(f"*/{uuid}"))
    assert not _mode(pod) & 0o022 and _mode(pod.parent) == 0o2750
