"""TPM: raw TPM2 command bytes, TCTI names, measured events, the log and its replay, tpm.d."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from rktd_less.errors import RktError, UsageError
from rktd_less.host import tpm
from rktd_less.pod import measure


def test_pcr_extend_command_layout() -> None:
    d = hashlib.sha256(b"x").digest()
    cmd = tpm.pcr_extend_command(15, d)
    tag, size, cc = struct.unpack(">HII", cmd[:10])
    assert (tag, size, cc) == (0x8002, len(cmd), 0x182)
    assert struct.unpack(">I", cmd[10:14])[0] == 15
    assert struct.unpack(">I", cmd[14:18])[0] == 9  # password session size
    assert struct.unpack(">IHBH", cmd[18:27]) == (0x40000009, 0, 0, 0)
    assert struct.unpack(">IH", cmd[27:33]) == (1, 0x000B) and cmd[33:] == d
    with pytest.raises(ValueError):
        tpm.pcr_extend_command(15, b"short")


def test_pcr_read_command_and_response() -> None:
    cmd = tpm.pcr_read_command(16)
    assert struct.unpack(">HII", cmd[:10]) == (0x8001, len(cmd), 0x17E)
    assert cmd[-3:] == bytes([0, 0, 1])  # PCR 16: bit 0 of the third byte
    value = bytes(range(32))
    resp = struct.pack(">HII", 0x8001, 10 + 4 + 10 + 4 + 2 + 32, 0) + bytes(18) + (
        struct.pack(">H", 32) + value)
    assert tpm.pcr_read_digest(resp) == value
    with pytest.raises(tpm.TpmError, match="0x907"):
        tpm.pcr_read_digest(struct.pack(">HII", 0x8001, 10, 0x907))


def test_tcti_names() -> None:
    assert tpm.Tcti.parse("device:/dev/tpmrm0") == tpm.Tcti("device", path="/dev/tpmrm0")
    t = tpm.Tcti.parse("swtpm:host=127.0.0.1,port=2400")
    assert (t.kind, t.host, t.port) == ("swtpm", "127.0.0.1", 2400)
    assert str(t) == "swtpm:host=127.0.0.1,port=2400"
    for bad in ("mssim:port=1", "swtpm:port=x"):
        with pytest.raises(tpm.TpmError):
            tpm.Tcti.parse(bad)


def test_unreachable_tpm_is_one_error() -> None:
    with pytest.raises(tpm.TpmError, match="cannot reach the TPM"):
        tpm.pcr_read(tpm.Tcti("device", path="/nonexistent/tpmrm0"), 15)


def test_log_replays_and_detects_edits() -> None:
    evs = measure.events("deps-sha512-s1", [("web", "sha512-aa")], b'{"pod": 1}', ["--net=host"])
    assert [e["content"]["type"] for e in evs] == ["stage1", "app", "pod-manifest",
                                                  "stage1-args"]
    before = bytes(32)
    after = before
    for e in evs:
        after = measure.extend(after, bytes.fromhex(e["sha256"]))
    records = measure.parse_log(measure.log_text(23, before, evs, after))
    assert measure.replay(records) == (23, after, after)
    records[1]["content"]["image"] = "other"
    with pytest.raises(RktError, match="does not match its digest"):
        measure.replay(records)


def _cfg(base: Path, doc: object) -> None:
    (base / "tpm.d").mkdir(parents=True, exist_ok=True)
    (base / "tpm.d" / "tpm.json").write_text(json.dumps(doc))


def test_config(tmp_path: Path) -> None:
    system, local = tmp_path / "system", tmp_path / "local"
    nodev = tmp_path / "no-tpmrm0"
    assert measure.load_config([system, local], device=nodev) is None
    dev = tmp_path / "tpmrm0"
    dev.touch()
    assert measure.load_config([system, local], device=dev) == measure.TpmConfig(
        tcti=f"device:{dev}", pcr=15, policy="measure")
    _cfg(system, {"rktKind": "tpm", "rktVersion": "v1", "tcti": "swtpm:port=1", "pcr": 23})
    _cfg(local, {"rktKind": "tpm", "rktVersion": "v1", "policy": "require"})
    assert measure.load_config([system, local], device=nodev) == measure.TpmConfig(
        tcti="swtpm:port=1", pcr=23, policy="require")
    _cfg(local, {"rktKind": "tpm", "rktVersion": "v1", "policy": "off"})
    assert measure.load_config([system, local], device=dev) is None
    _cfg(local, {"rktKind": "tpm", "rktVersion": "v1", "pcr": 24})
    with pytest.raises(UsageError, match="invalid TPM PCR 24"):
        measure.load_config([system, local], device=nodev)
    _cfg(local, {"rktKind": "paths", "rktVersion": "v1"})
    with pytest.raises(UsageError, match="invalid config file"):
        measure.load_config([system, local], device=nodev)
