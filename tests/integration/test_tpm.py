"""TPM measurement of pods into a throw-away software TPM (swtpm on 127.0.0.1): the pod's event
log replays to the PCR, as read independently by tpm2-tools; policy require refuses a pod whose
measurement fails, measure runs it with a warning."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rktd_less.pod import measure
from tests.helpers.aci import build_aci
from tests.integration.rktenv import Rkt, wait_for

INSECURE = "--insecure-options=image"
PCR = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def swtpm(env: Rkt) -> Iterator[str]:
    assert shutil.which("swtpm"), "swtpm is installed by scripts/install.sh"
    state = env.work / "swtpm"
    state.mkdir()
    port = _free_port()
    proc = subprocess.Popen(
        ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
         "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
         "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
         "--flags", "not-need-init,startup-clear"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        assert wait_for(up, timeout=10), "swtpm did not come up"
        yield f"swtpm:host=127.0.0.1,port={port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _configure(env: Rkt, tcti: str, policy: str = "measure") -> None:
    d = env.local_config / "tpm.d"
    d.mkdir(parents=True, exist_ok=True)
    (d / "tpm.json").write_text(json.dumps({"rktKind": "tpm", "rktVersion": "v1",
                                            "tcti": tcti, "pcr": PCR, "policy": policy}))


def _pcrread(tcti: str) -> str:
    out = subprocess.run(["tpm2_pcrread", f"sha256:{PCR}"], capture_output=True, text=True,
                         check=True, env={**os.environ, "TPM2TOOLS_TCTI": tcti}).stdout
    return out.split("0x", 1)[1].strip().lower()


@pytest.fixture(scope="module")
def aci(env: Rkt) -> Path:
    return build_aci(env.work / "busybox.aci", name="example.com/measured", version="1.0")


def _run(env: Rkt, aci: Path, *extra: str, check: bool = True
         ) -> tuple[subprocess.CompletedProcess[str], str]:
    uf = env.uuid_file()
    cp = env("run", INSECURE, f"--uuid-file-save={uf}", *extra, str(aci), "--exec", "/bin/sh",
             "--", "-c", "echo ran", check=check)
    return cp, uf.read_text().strip() if uf.exists() else ""


def test_log_replays_to_the_pcr(env: Rkt, aci: Path, swtpm: str) -> None:
    _configure(env, swtpm)
    cp, uuid = _run(env, aci)
    assert cp.stdout == "ran\n"
    status = dict(line.split("=", 1) for line in env("status", uuid).stdout.splitlines())
    log = Path(status["tpm-log"])
    records = measure.parse_log(log.read_bytes())
    pcr, replayed, logged = measure.replay(records)
    assert pcr == PCR and replayed == logged
    assert logged.hex() == _pcrread(swtpm)  # what the TPM itself says
    kinds = [r["content"]["type"] for r in records[1:-1]]
    assert kinds == ["stage1", "app", "pod-manifest", "stage1-args"]
    pod_bytes = (log.parent / "pod").read_bytes()
    assert records[3]["content"]["sha512"] == hashlib.sha512(pod_bytes).hexdigest()
    image_id = json.loads(pod_bytes)["apps"][0]["image"]["id"]
    assert records[2]["content"] == {"type": "app", "name": "measured", "image": image_id}
    assert uuid in records[4]["content"]["args"]
    # a tampered event no longer replays
    records[2]["content"]["image"] = "sha512-" + "0" * 64
    with pytest.raises(Exception, match="does not match its digest"):
        measure.replay(records)

    # the next pod's log starts where this one ended
    _, uuid2 = _run(env, aci)
    log2 = Path(dict(line.split("=", 1) for line in env("status", uuid2).stdout.splitlines()
                     )["tpm-log"])
    records2 = measure.parse_log(log2.read_bytes())
    assert records2[0]["pcr_before"] == logged.hex()
    assert measure.replay(records2)[1].hex() == _pcrread(swtpm)


def test_require_refuses_a_pod_it_cannot_measure(env: Rkt, aci: Path) -> None:
    dead = "swtpm:host=127.0.0.1,port=" + str(_free_port())
    _configure(env, dead, policy="require")
    before = env.pod_files()
    cp, _ = _run(env, aci, check=False)
    assert cp.returncode == 254, cp
    assert "TPM measurement failed" in cp.stderr and "require" in cp.stderr, cp
    assert len(cp.stderr.strip().splitlines()) == 1 and "ran" not in cp.stdout
    assert env.pod_files() == before  # no pod left

    _configure(env, dead, policy="measure")
    cp, uuid = _run(env, aci)
    assert cp.stdout == "ran\n" and "warning: TPM measurement failed" in cp.stderr, cp
    assert "tpm-log=" not in env("status", uuid).stdout
    (env.local_config / "tpm.d" / "tpm.json").unlink()
