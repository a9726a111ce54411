"""acbuild in the test bed, with a real systemd, systemd-nspawn, gpg and an HTTPS server:
``run`` steps (layering order, what reaches the image, a failed step, refusals), the seed's
script end to end (build → sign → publish → discovery over HTTPS → ``rkt trust`` → ``rkt run``
by name → the page through ``--port``) and a Makefile-driven build of two images.

The commands are run as a user runs them: ``acbuild`` and ``rkt`` on PATH are small wrappers
that add this module's rkt data and configuration directories (``--dir``, ``--local-config``,
``--system-config``); nothing else is added.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.gpg import session_keys
from tests.helpers.https_server import CertFiles, Server, make_certs, serve
from tests.integration.rktenv import Rkt, destroy, new_env, wait_for

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def env() -> Iterator[Rkt]:
    e = new_env("acbuild")
    yield e
    destroy(e)


@pytest.fixture(scope="module")
def tools(env: Rkt) -> Path:
    """A bin directory whose ``acbuild`` and ``rkt`` use this module's rkt directories."""
    d = env.work / "bin"
    d.mkdir()
    flags = (f"--dir={env.data} --local-config={env.local_config} "
             f"--system-config={env.system_config}")
    for tool in ("acbuild", "rkt"):
        (d / tool).write_text(f'#!/bin/sh\nexec {BIN / tool} {flags} "$@"\n')
        (d / tool).chmod(0o755)
    return d


@pytest.fixture(scope="module")
def rootfs(env: Rkt) -> Path:
    """A busybox root filesystem: /bin/busybox and a link for each of its applets."""
    root = env.work / "busybox-rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    subprocess.run(["cp", "/bin/busybox", str(root / "bin" / "busybox")], check=True)
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            (root / "bin" / a).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def sh(tools: Path, script: str, cwd: Path, *, check: bool = True, input: str | None = None,
       extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", **(extra_env or {})}
    cp = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                        env=environ, input=input, timeout=300,
                        stdin=None if input is not None else subprocess.DEVNULL)
    if check and cp.returncode != 0:
        raise AssertionError(f"exit {cp.returncode}\n{script}\nstdout: {cp.stdout}\n"
                             f"stderr: {cp.stderr}")
    return cp


def workdir(env: Rkt, name: str) -> Path:
    d = env.work / name
    d.mkdir()
    return d


def own_layer(work: Path) -> list[str]:
    root = work / ".acbuild" / "currentaci" / "rootfs"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def snapshot(work: Path) -> dict[str, tuple[int, bytes]]:
    """The build context, every entry with its mode and content (what a refused or failed
    command must leave exactly as it was)."""
    out: dict[str, tuple[int, bytes]] = {}
    for p in sorted((work / ".acbuild").rglob("*")):
        st = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(p.relative_to(work))] = (st.st_mode, data)
    return out


def no_leftovers() -> None:
    assert ".acbuild" not in Path("/proc/self/mountinfo").read_text()
    units = subprocess.run(["systemctl", "list-units", "--all", "--no-legend", "acbuild-run-*"],
                           capture_output=True, text=True, check=True).stdout
    assert units.strip() == "", units


def test_run_layers_dependencies_in_appc_order_and_keeps_only_the_step(
        env: Rkt, tools: Path, rootfs: Path) -> None:
    w = workdir(env, "layers")
    for name, who in (("dep-b", "B"), ("dep-c", "C")):
        (w / f"{name}.who").write_text(who + "\n")
        (w / f"{name}.only").write_text(name[-1] + "\n")
        sh(tools, f"""set -e
            mkdir {name}.d && cd {name}.d
            acbuild begin && acbuild set-name example.com/{name}
            acbuild copy ../{name}.who /etc/who && acbuild copy ../{name}.only /etc/only-{name[-1]}
            acbuild write ../{name}.aci && acbuild end && cd ..
            rkt --insecure-options=image fetch {name}.aci""", w)
    sh(tools, f"""set -e; mkdir bb.d && cd bb.d
        acbuild begin {rootfs} && acbuild set-name example.com/bb && acbuild write ../bb.aci
        acbuild end && rkt --insecure-options=image fetch ../bb.aci""", w)
    (w / "mine").write_text("mine\n")
    sh(tools, """set -e; acbuild begin; acbuild set-name example.com/layered
        acbuild dep add example.com/bb; acbuild dep add example.com/dep-b
        acbuild dep add example.com/dep-c; acbuild copy mine /etc/mine""", w)

    # the last dependency wins (acbuild put the first on top)
    cp = sh(tools, "acbuild run -- /bin/sh -c 'cat /etc/who /etc/only-b /etc/only-c'", w)
    assert (cp.stdout, cp.stderr) == ("C\nb\nc\n", "")
    # the host's DNS during the step, read-only: it cannot be copied into the image
    cp = sh(tools, "acbuild run -- cat /etc/resolv.conf", w)
    assert cp.stdout == Path("/etc/resolv.conf").read_text()
    assert sh(tools, "acbuild run -- /bin/sh -c 'echo x >> /etc/resolv.conf'", w,
              check=False).returncode != 0
    # a tree deeper than an image may hold: refused, nothing of it kept
    cp = sh(tools, "acbuild run -- /bin/sh -c 'mkdir -p /deep/$(seq 300 | tr \"\\n\" /)'",
            w, check=False)
    assert cp.returncode == 1 and "too deep" in cp.stderr, cp.stderr
    # the step is a unit of systemd's while it runs
    step = subprocess.Popen([str(tools / "acbuild"), "run", "--", "sleep", "3"], cwd=w,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def listed() -> str:
        return subprocess.run(["systemctl", "list-units", "--no-legend", "acbuild-run-*"],
                              capture_output=True, text=True).stdout

    assert wait_for(lambda: re.search(r"acbuild-run-[0-9a-f]{16}\.service +loaded active "
                                      r"running acbuild run in ", listed()), 10), listed()
    assert step.wait(timeout=30) == 0

    cp = sh(tools, "acbuild run -- /bin/sh -c 'mkdir /srv && echo new > /srv/new && "
                   "rm /etc/mine /etc/only-b && date > /tmp/x && touch /run/x'", w)
    assert cp.stderr.count("\n") == 1 and '"/etc/only-b"' in cp.stderr and "stay" in cp.stderr
    # only what the step made: no resolv.conf, localtime, machine-id, mount points, whiteouts
    assert own_layer(w) == ["etc", "srv", "srv/new"]
    root = w / ".acbuild" / "currentaci" / "rootfs"
    for p in [root, *root.rglob("*")]:
        assert not [x for x in os.listxattr(p, follow_symlinks=False)
                    if x.startswith("trusted.overlay.")], p

    # a failed step: its status, and the build exactly as it was
    before = snapshot(w)
    cp = sh(tools, "acbuild run -- /bin/sh -c 'echo x > /srv/junk; rm /srv/new; exit 3'", w,
            check=False)
    assert (cp.returncode, cp.stderr) == (3, "")
    assert snapshot(w) == before

    sh(tools, "acbuild set-exec -- /bin/cat /etc/who /etc/only-b", w)
    sh(tools, "acbuild write layered.aci && acbuild end", w)
    with tarfile.open(w / "layered.aci") as tar:
        assert sorted(tar.getnames()) == ["manifest", "rootfs", "rootfs/etc", "rootfs/srv",
                                          "rootfs/srv/new"]
    # rkt renders the written image as the step saw it; the deletion did not reach it
    out = env("run", "--insecure-options=image", str(w / "layered.aci")).stdout
    assert out == "C\nb\n"
    no_leftovers()


def test_run_stdio_environment_working_dir_and_refusals(env: Rkt, tools: Path,
                                                        rootfs: Path) -> None:
    w = workdir(env, "basics")
    sh(tools, f"acbuild begin {rootfs} && acbuild environment add GREETING hi", w)
    cp = sh(tools, "acbuild run -- echo success", w)
    assert (cp.stdout, cp.stderr) == ("success\n", "")  # acbuild's TestRun
    assert sh(tools, "acbuild run --working-dir /etc -- pwd", w).stdout == "/etc\n"
    # nothing in the command is expanded on the way ($, systemd's % specifiers)
    assert sh(tools, "acbuild run -- /bin/sh -c 'echo $GREETING ${GREETING} %n $$ \\$'",
              w).stdout == "hi hi %n 2 $\n"  # PID 2: nspawn --as-pid2
    assert sh(tools, "acbuild run -- cat", w, input="piped\n").stdout == "piped\n"
    # a command killed by a signal: nspawn's stub init (PID 1) reports 255
    assert sh(tools, "acbuild run -- /bin/sh -c 'kill -9 $$'", w, check=False).returncode == 255
    manifest = sh(tools, "acbuild cat-manifest", w).stdout
    assert 'acbuild run \\"--\\" \\"echo\\" \\"success\\"' in manifest

    before = snapshot(w)
    cp = sh(tools, "acbuild run --engine=invalid-engine -- true", w, check=False)
    assert (cp.returncode, cp.stderr) == (1, 'run: no such engine "invalid-engine"\n')
    cp = sh(tools, "setpriv --reuid=65534 --regid=65534 --clear-groups acbuild run -- true", w,
            check=False)
    assert cp.returncode == 1 and cp.stderr.startswith("run: acbuild run needs root"), cp
    assert len(cp.stderr.splitlines()) == 1
    cp = sh(tools, "acbuild run -- /no/such/command", w, check=False)
    assert cp.returncode != 0
    assert snapshot(w) == before
    cp = sh(tools, "acbuild --work-path=/ run -- true", w, check=False)
    assert (cp.returncode, cp.stderr) == (
        1, 'run: no build in progress in this working dir - try "acbuild begin"\n')
    sh(tools, "acbuild end", w)
    no_leftovers()


def test_run_on_the_callers_terminal(env: Rkt, tools: Path, rootfs: Path) -> None:
    """On a terminal the step is interactive (nspawn --console=interactive): a shell to
    look around in the image being built, its exit status acbuild's."""
    from tests.integration.test_interactive import Terminal

    w = workdir(env, "tty")
    sh(tools, f"acbuild begin {rootfs}", w)
    t = Terminal([str(tools / "acbuild"), f"--work-path={w}", "run", "--", "/bin/sh", "-i"])
    try:
        t.expect(b"# ")
        t.send(b"echo typed-$((6*7)) > /typed; cat /typed; tty\n")
        t.expect(b"typed-42")
        t.expect(b"/dev/pts/")
        t.send(b"exit 4\n")
        assert t.wait() == 4
    finally:
        t.close()
    assert "typed" not in own_layer(w)  # a failed step: nothing of it in the build
    sh(tools, "acbuild end", w)
    no_leftovers()


def test_without_root_every_command_but_run(tools: Path) -> None:
    """As nobody: a whole build works and every file of the image is root's once written; a
    tarball with other users' files is refused (it would lose them); run says what it needs."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="acbuild-nonroot-", dir="/var/tmp"))
    try:
        os.chmod(base, 0o755)
        w = base / "w"
        w.mkdir()
        (w / "f").write_text("file\n")
        with tarfile.open(w / "others.tar", "w") as tar:
            info = tarfile.TarInfo("etc/x")
            info.uid = info.gid = 1000
            tar.addfile(info)
        os.chown(w, 65534, 65534)
        os.chown(w / "f", 65534, 65534)
        # the real acbuild (the module's wrapper lives where nobody may not enter)
        nobody = ("setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/nonexistent "
                  f"{BIN / 'acbuild'}")
        cp = sh(tools, f"""set -e
            {nobody} begin
            for c in "set-name example.com/nr" "label add version 1" "environment add A b" \
                     "port add http tcp 80" "mount add data /data" "copy f /etc/f" \
                     "set-exec -- /bin/true"; do {nobody} $c; done
            {nobody} write nr.aci
            {nobody} end""", w)
        assert "not running as root" in cp.stderr
        with tarfile.open(w / "nr.aci") as tar:
            members = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
            m = json.loads(tar.extractfile("manifest").read())  # type: ignore[union-attr]
        assert members["rootfs/etc/f"] == (0, 0) and set(members.values()) == {(0, 0)}
        assert m["name"] == "example.com/nr" and m["app"]["exec"] == ["/bin/true"]
        cp = sh(tools, f"{nobody} begin ./others.tar", w, check=False)
        assert cp.returncode == 1 and "owned by users other than root" in cp.stderr
        sh(tools, f"{nobody} begin", w)
        cp = sh(tools, f"{nobody} run -- true", w, check=False)
        assert cp.returncode == 1 and "needs root" in cp.stderr
        assert sh(tools, f"{nobody} dep rm x", w, check=False).returncode == 2
        sh(tools, f"{nobody} end", w)
        assert sorted(p.name for p in w.iterdir()) == ["f", "nr.aci", "others.tar"]
    finally:
        shutil.rmtree(base)


# --- the seed's script, published and run by name --------------------------------------------
SITE = """set -e
# the documented publishing layout (docs/acbuild.md): a static HTTPS site
mkdir -p site/images/example.com
cp "$1" "$1.asc" site/images/example.com/
gpg --export --armor "$KEY" > site/pubkeys.gpg
cat > site/index.html <<'PAGE'
<!DOCTYPE html>
<html><head>
<meta name="ac-discovery" content="example.com https://example.com/images/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
</head><body></body></html>
PAGE
"""
BASE = """set -e
acbuild begin "$1"
trap 'acbuild end' EXIT
acbuild set-name example.com/base
acbuild label add version latest
acbuild write --overwrite --sign "$KEY" base-latest-linux-amd64.aci
"""
# The seed's script line for line, with the version label `rkt run example.com/web:latest` asks
# for (rkt checks every label a name asks for against the image) and the signing key.
SEED = """set -e
acbuild --debug begin
trap 'acbuild --debug end' EXIT
acbuild --debug set-name example.com/web
acbuild --debug label add version latest
acbuild --debug dep add example.com/base          # discovered over HTTPS, signature verified
acbuild --debug run -- /bin/sh -c 'mkdir -p /www && echo hello > /www/index.html'
acbuild --debug port add http tcp 80
acbuild --debug mount add html /www
acbuild --debug set-exec -- /bin/httpd -f -p 80 -h /www
acbuild --debug write --overwrite --sign "$KEY" web-latest-linux-amd64.aci
"""


@pytest.fixture(scope="module")
def certs(env: Rkt) -> CertFiles:
    return make_certs(env.work / "certs", names=["example.com"])


@pytest.fixture
def example_com() -> Iterator[None]:
    """example.com is 127.0.0.1 in the test bed's /etc/hosts (put back afterwards)."""
    hosts = Path("/etc/hosts")
    saved = hosts.read_bytes()
    hosts.write_bytes(saved + b"127.0.0.1\texample.com\n")
    try:
        assert socket.gethostbyname("example.com") == "127.0.0.1"  # nothing leaves the bed
        yield
    finally:
        hosts.write_bytes(saved)


def serve_site(server: Server, site: Path) -> None:
    """What any static file server does with the site: each file at its path, index.html
    at its directory's path."""
    server.files.clear()
    for p in site.rglob("*"):
        if p.is_file():
            rel = "/" + str(p.relative_to(site))
            server.files[rel] = p.read_bytes()
            if p.name == "index.html":
                server.files[rel[: -len("index.html")]] = p.read_bytes()


def http_get(port: int) -> str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return ""
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return body if head.startswith("HTTP/1.0 200") or head.startswith("HTTP/1.1 200") else ""


def test_seed_script_build_sign_publish_trust_and_run_by_name(
        env: Rkt, tools: Path, rootfs: Path, certs: CertFiles, example_com: None) -> None:
    key = session_keys().alice
    w = workdir(env, "seed")
    site = w / "site"
    extra = {"KEY": key.fingerprint, "GNUPGHOME": str(key.home),
             "SSL_CERT_FILE": str(certs.ca_file)}
    env.extra_env = {**os.environ, "SSL_CERT_FILE": str(certs.ca_file)}
    with serve(certs, port=443) as server:
        (w / "base").mkdir()
        sh(tools, f"bash -c {sh_quote(BASE)} base {rootfs}", w / "base", extra_env=extra)
        assert (w / "base" / "base-latest-linux-amd64.aci.asc").read_text().startswith(
            "-----BEGIN PGP SIGNATURE-----")
        sh(tools, f"bash -c {sh_quote(SITE)} site base/base-latest-linux-amd64.aci", w,
           extra_env=extra)
        serve_site(server, site)

        # not trusted yet: dep add is refused and the build stays as it was
        sh(tools, "acbuild begin && acbuild set-name example.com/try", w / "base")
        before = snapshot(w / "base")
        cp = sh(tools, "acbuild dep add example.com/base", w / "base", check=False,
                extra_env=extra)
        assert cp.returncode == 1 and len(cp.stderr.splitlines()) == 1, cp
        assert cp.stderr.startswith("dependency add: ") and "trust" in cp.stderr, cp.stderr
        assert snapshot(w / "base") == before
        sh(tools, "acbuild end", w / "base")

        cp = env("trust", "--skip-fingerprint-review", "--prefix=example.com/base")
        assert key.fingerprint in cp.stdout.replace(" ", "").lower()
        cp = sh(tools, SEED, w, extra_env=extra)
        assert server.seen("/images/example.com/base-latest-linux-amd64.aci.asc")
        assert (w / "web-latest-linux-amd64.aci.asc").is_file()
        assert not (w / ".acbuild").exists()  # the trap ended the build
        sh(tools, f"bash -c {sh_quote(SITE)} site web-latest-linux-amd64.aci", w,
           extra_env=extra)
        serve_site(server, site)

        env("trust", "--skip-fingerprint-review", "--prefix=example.com/web")
        with tarfile.open(w / "web-latest-linux-amd64.aci") as tar:
            assert sorted(tar.getnames()) == ["manifest", "rootfs", "rootfs/www",
                                              "rootfs/www/index.html"]
        uf = env.uuid_file()
        # the image's mount point "html" wants a volume (an appc mount point without one is
        # an empty volume, as in rkt): here the page the build step wrote, from the image
        pages = w / "extracted"
        env("fetch", "example.com/web:latest")
        env("image", "extract", "--rootfs-only", "example.com/web:latest", str(pages))
        env("run", "--detach", f"--uuid-file-save={uf}", "--port=http:8080",
            f"--volume=html,kind=host,source={pages / 'www'},readOnly=true",
            "example.com/web:latest")
    uuid = uf.read_text().strip()
    try:
        assert wait_for(lambda: http_get(8080) == "hello\n", 15)
    finally:
        env("stop", uuid)
        env("status", "--wait=30s", uuid)
        env("gc", "--grace-period=0s")
    no_leftovers()


def sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


MAKEFILE = """\
# two images; the second depends on the first (docs/acbuild.md)
all: app.aci

base.aci: rootfs/bin/busybox
\tmkdir -p base.d
\tacbuild --work-path=base.d begin ./rootfs
\tacbuild --work-path=base.d set-name example.com/mk-base
\tacbuild --work-path=base.d write --overwrite $@ || { acbuild --work-path=base.d end; exit 1; }
\tacbuild --work-path=base.d end

app.aci: base.aci
\tmkdir -p app.d
\tacbuild --work-path=app.d begin
\tacbuild --work-path=app.d set-name example.com/mk-app
\tacbuild --work-path=app.d --insecure-options=image dep add ./base.aci   # unsigned: made here
\tacbuild --work-path=app.d run -- /bin/sh -c 'echo built by make > /greeting'
\tacbuild --work-path=app.d set-exec -- /bin/cat /greeting
\tacbuild --work-path=app.d write --overwrite $@
\tacbuild --work-path=app.d end
"""


def test_makefile_builds_two_images_the_second_on_the_first(env: Rkt, tools: Path,
                                                            rootfs: Path) -> None:
    w = workdir(env, "make")
    subprocess.run(["cp", "-a", str(rootfs), str(w / "rootfs")], check=True)
    (w / "Makefile").write_text(MAKEFILE)
    sh(tools, "make", w)
    with tarfile.open(w / "app.aci") as tar:
        f = tar.extractfile("manifest")
        assert f is not None
        deps = json.loads(f.read())["dependencies"]
        assert [d["imageName"] for d in deps] == ["example.com/mk-base"] and deps[0]["imageID"]
        assert sorted(tar.getnames()) == ["manifest", "rootfs", "rootfs/greeting"]
    out = env("run", "--insecure-options=image", str(w / "app.aci")).stdout
    assert out == "built by make\n"
    assert "Nothing to be done" in sh(tools, "make", w).stdout
    no_leftovers()
