"""rkt run --interactive: the app gets the caller's terminal (through the pod's unit and
nspawn's console), Ctrl-C reaches the app, ^]^]^] kills the pod, the terminal's settings come
back; with a pipe instead of a terminal the app reads the data and then EOF (rkt #2414)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import select
import string
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt

INSECURE = "--insecure-options=image"


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/busybox", version="1.0",
                     exec_=("/bin/sh",))


class Terminal:
    """``argv`` on a new pseudo-terminal as its controlling terminal, like a user's shell."""

    def __init__(self, argv: list[str]) -> None:
        self.master, self.slave = os.openpty()
        termios.tcsetattr(self.slave, termios.TCSANOW, termios.tcgetattr(self.slave))
        self.before = termios.tcgetattr(self.slave)
        slave = self.slave

        def ctty() -> None:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                     preexec_fn=ctty, close_fds=True)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while text not in self.seen:
            left = end - time.monotonic()
            assert left > 0, f"{text!r} not seen; got {self.seen!r}"
            if select.select([self.master], [], [], min(left, 0.2))[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    assert text in self.seen, f"{text!r} not seen before EOF: {self.seen!r}"
                self.seen += chunk
            else:  # our end of the terminal stays open: its output ends when the process does
                assert self.proc.poll() is None, \
                    f"{text!r} not seen; exited {self.proc.returncode}: {self.seen!r}"

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            if select.select([self.master], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.master, 65536)
        return self.proc.wait(timeout=1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def test_shell_on_the_callers_terminal(env: Rkt, aci: Path) -> None:
    t = Terminal(env.argv("run", "--interactive", INSECURE, str(aci), "--exec", "/bin/sh"))
    try:
        t.expect(b"# ")
        t.send(b"tty; echo answer=$((6*7)); [ -t 0 ] && echo stdin-is-a-tty\n")
        t.expect(b"answer=42")
        t.expect(b"stdin-is-a-tty")
        assert b"/dev/pts/" in t.seen or b"/dev/console" in t.seen  # a terminal, not "not a tty"
        t.send(b"exit 5\n")
        assert t.wait() == 5
        # nspawn put the terminal into raw mode; it is back as it was
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()


def test_ctrl_c_reaches_the_app(env: Rkt, aci: Path) -> None:
    t = Terminal(env.argv("run", "--interactive", INSECURE, str(aci), "--exec", "/bin/sh",
                          "--", "-c", 'trap "echo got-sigint; exit 9" INT; echo ready; '
                                      "while :; do sleep 0.1; done"))
    try:
        t.expect(b"ready")
        t.send(b"\x03")
        t.expect(b"got-sigint")
        assert t.wait() == 9
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()


def test_window_size_changes_reach_the_app(env: Rkt, aci: Path) -> None:
    t = Terminal(env.argv("run", "--interactive", INSECURE, str(aci), "--exec", "/bin/sh",
                          "--", "-c", "trap 'echo size=$(/bin/busybox stty size)' WINCH; "
                                      "echo size=$(/bin/busybox stty size); "
                                      "while :; do sleep 0.1; done"))
    try:
        t.expect(b"size=")
        # what a terminal emulator does when its window is resized
        fcntl.ioctl(t.master, termios.TIOCSWINSZ, struct.pack("HHHH", 41, 101, 0, 0))
        t.expect(b"size=41 101")
        t.send(b"\x1d\x1d\x1d")
        t.wait()
    finally:
        t.close()


def test_three_ctrl_close_brackets_kill_the_pod(env: Rkt, aci: Path) -> None:
    uf = env.uuid_file()
    t = Terminal(env.argv("run", "--interactive", f"--uuid-file-save={uf}", INSECURE, str(aci),
                          "--exec", "/bin/sh", "--", "-c", "echo ready; exec sleep 600"))
    try:
        t.expect(b"ready")
        t0 = time.monotonic()
        t.send(b"\x1d\x1d\x1d")
        status = t.wait(timeout=30)
        assert time.monotonic() - t0 < 15
        assert status != 0
        assert termios.tcgetattr(t.slave) == t.before
        assert "state=exited" in env("status", uf.read_text()).stdout
    finally:
        t.close()


def test_piped_stdin_reaches_the_app_then_eof(env: Rkt, aci: Path) -> None:
    """`cat file | rkt run --interactive ...` (rkt #2414 hung here)."""
    cp = env("run", "--interactive", INSECURE, str(aci), "--exec", "/bin/sh", "--", "-c",
             'while read -r l; do echo "got $l"; done; echo eof', input="a\nb c\n", timeout=60)
    assert cp.stdout == "got a\ngot b c\neof\n"
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \t\n"
    text = "".join(random.Random(7).choice(alphabet) for _ in range(300_000))
    cp = env("run", "--interactive", INSECURE, str(aci), "--exec", "/bin/cat", input=text,
             timeout=60)
    assert cp.stdout == text
    # no input at all (stdin is /dev/null): immediate EOF, not a hang
    cp = env("run", "--interactive", INSECURE, str(aci), "--exec", "/bin/sh", "--", "-c",
             "cat; echo done", timeout=60)
    assert cp.stdout == "done\n"


def test_interactive_needs_exactly_one_image(env: Rkt, aci: Path) -> None:
    cp = env("run", "--interactive", INSECURE, str(aci), "--name=a", str(aci), "--name=b",
             check=False)
    assert cp.returncode == 254
    assert cp.stderr.strip() == "run: interactive option only supports one image"


def test_piped_stdin_is_shared_with_event_handlers_like_a_pipeline(env: Rkt) -> None:
    """The service's pre-start and post-stop open stdin too (systemd opens it per command): a
    handler that reads takes what it reads, one that does not takes nothing, the app gets the
    rest and then EOF."""
    img = build_aci(env.work / "handlers.aci", name="example.com/handlers", exec_=("/bin/cat",),
                    app_extra={"eventHandlers": [
                        {"name": "pre-start",
                         "exec": ["/bin/sh", "-c", 'read -r first; echo "pre got $first"']},
                        {"name": "post-stop", "exec": ["/bin/sh", "-c", "echo post"]}]})
    cp = env("run", "--interactive", INSECURE, str(img), input="one\ntwo\nthree\n", timeout=60)
    assert cp.stdout == "pre got one\ntwo\nthree\npost\n"
    quiet = build_aci(env.work / "quiet.aci", name="example.com/quiet", exec_=("/bin/cat",),
                      app_extra={"eventHandlers": [
                          {"name": "pre-start", "exec": ["/bin/true"]}]})
    cp = env("run", "--interactive", INSECURE, str(quiet), input="all\nof it\n", timeout=60)
    assert cp.stdout == "all\nof it\n"


def test_enter_on_a_terminal_follows_window_size(env: Rkt, aci: Path) -> None:
    uuid = env("run", "--detach", INSECURE, str(aci), "--exec", "/bin/sleep", "--", "600",
               timeout=60).stdout.strip()
    t = Terminal(env.argv("enter", uuid, "/bin/sh", "-c",
                          "trap 'echo size=$(/bin/busybox stty size)' WINCH; [ -t 0 ] && "
                          "echo tty-ok; while :; do sleep 0.1; done"))
    try:
        t.expect(b"tty-ok")
        fcntl.ioctl(t.master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
        t.expect(b"size=33 77")
        t.send(b"\x03")  # Ctrl-C reaches the entered command, not rkt
        assert t.wait() == 130
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()
        env("stop", "--force", uuid, check=False)
