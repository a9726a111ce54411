"""A TPM 2.0, spoken to with raw commands (no TSS library, no daemon): ``/dev/tpmrm0`` (the
kernel's resource manager) or a software TPM's TCP data port (swtpm), named like a TCTI:
``device:/dev/tpmrm0`` or ``swtpm:host=127.0.0.1,port=2321``.

Only the two commands measurement needs: TPM2_PCR_Read and TPM2_PCR_Extend of the SHA-256 bank
(command layout: reference packaging-tpm.md §3). The byte builders and parsers are pure.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

from ..errors import RktError

TPM_ST_NO_SESSIONS = 0x8001
TPM_ST_SESSIONS = 0x8002
TPM_CC_PCR_EXTEND = 0x182
TPM_CC_PCR_READ = 0x17E
TPM_ALG_SHA256 = 0x000B
TPM_RS_PW = 0x40000009
MAX_PCR = 23
DEFAULT_DEVICE = "/dev/tpmrm0"


class TpmError(RktError):
    """The TPM cannot be reached or refused a command."""


def pcr_extend_command(pcr: int, digest: bytes) -> bytes:
    if len(digest) != 32:
        raise ValueError("a SHA-256 digest has 32 bytes")
    auth = struct.pack(">IHBH", TPM_RS_PW, 0, 0, 0)  # empty password session
    body = (struct.pack(">I", pcr) + struct.pack(">I", len(auth)) + auth
            + struct.pack(">IH", 1, TPM_ALG_SHA256) + digest)
    return struct.pack(">HII", TPM_ST_SESSIONS, 10 + len(body), TPM_CC_PCR_EXTEND) + body


def pcr_read_command(pcr: int) -> bytes:
    select = bytearray(3)
    select[pcr // 8] |= 1 << (pcr % 8)
    body = struct.pack(">IHB", 1, TPM_ALG_SHA256, 3) + bytes(select)
    return struct.pack(">HII", TPM_ST_NO_SESSIONS, 10 + len(body), TPM_CC_PCR_READ) + body


def response_code(resp: bytes) -> int:
    if len(resp) < 10:
        raise TpmError(f"short TPM response ({len(resp)} bytes)")
    return int(struct.unpack(">I", resp[6:10])[0])


def pcr_read_digest(resp: bytes) -> bytes:
    """The SHA-256 value from a TPM2_PCR_Read response (its last 32 bytes)."""
    rc = response_code(resp)
    if rc != 0:
        raise TpmError(f"TPM2_PCR_Read failed: TPM response code 0x{rc:x}")
    if len(resp) < 10 + 4 + 10 + 4 + 2 + 32:
        raise TpmError("TPM2_PCR_Read returned no SHA-256 value (is the bank allocated?)")
    return resp[-32:]


@dataclass(frozen=True)
class Tcti:
    kind: str  # "device" | "swtpm"
    path: str = DEFAULT_DEVICE
    host: str = "127.0.0.1"
    port: int = 2321

    @classmethod
    def parse(cls, text: str) -> Tcti:
        kind, _, conf = text.partition(":")
        if kind == "device":
            return cls("device", path=conf or DEFAULT_DEVICE)
        if kind == "swtpm":
            opts = dict(kv.partition("=")[::2] for kv in conf.split(",") if kv)
            try:
                return cls("swtpm", host=opts.get("host", "127.0.0.1"),
                           port=int(opts.get("port", "2321")))
            except ValueError:
                raise TpmError(f"invalid TCTI {text!r}", hint="swtpm:host=H,port=N") from None
        raise TpmError(f"unknown TCTI {text!r}",
                       hint="device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321")

    def __str__(self) -> str:
        return f"device:{self.path}" if self.kind == "device" else (
            f"swtpm:host={self.host},port={self.port}")


def transact(tcti: Tcti, command: bytes, timeout: float = 5.0) -> bytes:
    """Send one command, return the whole response."""
    try:
        if tcti.kind == "device":
            fd = os.open(tcti.path, os.O_RDWR | os.O_CLOEXEC)
            try:
                os.write(fd, command)
                return os.read(fd, 4096)
            finally:
                os.close(fd)
        with socket.create_connection((tcti.host, tcti.port), timeout=timeout) as s:
            s.sendall(command)
            resp = b""
            while len(resp) < 10 or len(resp) < struct.unpack(">I", resp[2:6])[0]:
                chunk = s.recv(4096)
                if not chunk:
                    break
                resp += chunk
            return resp
    except OSError as e:
        raise TpmError(f"cannot reach the TPM at {tcti}: {e.strerror or e}") from e


def pcr_read(tcti: Tcti, pcr: int) -> bytes:
    return pcr_read_digest(transact(tcti, pcr_read_command(pcr)))


def pcr_extend(tcti: Tcti, pcr: int, digest: bytes) -> None:
    rc = response_code(transact(tcti, pcr_extend_command(pcr, digest)))
    if rc != 0:
        raise TpmError(f"TPM2_PCR_Extend of PCR {pcr} failed: TPM response code 0x{rc:x}")
