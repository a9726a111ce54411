"""appc isolators rkt understood: their values checked, built from rkt's per-app flags, and
merged with the image's by rkt's rules (pure; reference isolation.md §1, rkt.md §4.4).

Values keep appc's JSON shape, so they go into the pod manifest as they are and stage1 reads
them from there: ``{"set": [...]}`` (capabilities), ``{"set": [...], "errno": "EPERM"}``
(seccomp), ``{"request": q, "limit": q}`` (resources), a number (cpu-shares, oom-score-adj), a
boolean (no-new-privileges).
"""

from __future__ import annotations

import errno as errnomod
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..common.seccomp_sets import KNOWN as KNOWN_SYSCALLS
from ..errors import ManifestError, RktError

CAPS_RETAIN = "os/linux/capabilities-retain-set"
CAPS_REMOVE = "os/linux/capabilities-remove-set"
SECCOMP_RETAIN = "os/linux/seccomp-retain-set"
SECCOMP_REMOVE = "os/linux/seccomp-remove-set"
NO_NEW_PRIVS = "os/linux/no-new-privileges"
MEMORY = "resource/memory"
CPU = "resource/cpu"
CPU_SHARES = "os/linux/cpu-shares"
OOM_SCORE_ADJ = "os/linux/oom-score-adj"

# Linux capability numbers (linux/capability.h); CapBnd in /proc/<pid>/status is their bit mask
CAPABILITIES: dict[str, int] = {name: n for n, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
    "CAP_BPF", "CAP_CHECKPOINT_RESTORE"))}

# appc ace.md: the bounding set of an app without a capabilities isolator (rkt's order)
DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_KILL",
    "CAP_MKNOD", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID",
    "CAP_SETPCAP", "CAP_SETFCAP", "CAP_SYS_CHROOT")

# seccomp group names rkt knew (stage1 seccomp.go), and what each stands for in stage1
SECCOMP_GROUPS = (
    "@appc.io/all", "@appc.io/empty",
    "@rkt/default-blacklist", "@rkt/default-whitelist",
    "@docker/default-blacklist", "@docker/default-whitelist",
    "@systemd/clock", "@systemd/default-whitelist", "@systemd/mount", "@systemd/network-io",
    "@systemd/obsolete", "@systemd/privileged", "@systemd/process", "@systemd/raw-io")

MIN_MEMORY = 4096  # rkt: a lower --memory is a typo, not a limit

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_SUFFIX: dict[str, Fraction] = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60)}


class IsolatorError(ManifestError):
    """An isolator value rkt would refuse (from a flag, an image or a pod manifest)."""


def parse_quantity(text: str, what: str = "limit") -> Fraction:
    """A Kubernetes resource quantity (``50M``, ``123Mi``, ``500m``, ``1e3``)."""
    m = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise IsolatorError(f"error parsing {what}: quantities must match the regular "
                            f"expression '{_QUANTITY.pattern}'")
    num, suffix = m.groups()
    try:
        value = Fraction(num)
    except ValueError:
        raise IsolatorError(f"error parsing {what}: unable to parse quantity's number") from None
    if suffix in _SUFFIX:
        return value * _SUFFIX[suffix]
    exp = re.fullmatch(r"[eE]([-+]?[0-9]+)", suffix)
    if exp is None:
        raise IsolatorError(f"error parsing {what}: unable to parse quantity's suffix")
    return value * Fraction(10) ** int(exp.group(1))


def capability_name(raw: object) -> str:
    name = str(raw).strip().upper()
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    if name not in CAPABILITIES:
        raise IsolatorError(f'unknown capability "{raw}"',
                            hint="names as in capabilities(7), e.g. CAP_NET_ADMIN")
    return name


def errno_name(raw: object) -> str:
    name = str(raw).strip().upper()
    if name not in errnomod.__dict__ or not name.startswith("E") or name == "E":
        raise IsolatorError(f'unknown errno "{raw}"', hint="an errno(3) name, e.g. EPERM")
    return name


def syscall_entry(raw: object) -> str:
    """One seccomp set entry: a syscall name or one of rkt's ``@group`` names."""
    text = str(raw).strip()
    if text.startswith("@"):
        if text not in SECCOMP_GROUPS:
            raise IsolatorError(f'unknown seccomp group "{text}"',
                                hint="groups: " + " ".join(SECCOMP_GROUPS))
        return text
    if text not in KNOWN_SYSCALLS:
        raise IsolatorError(f'unknown syscall "{text}"',
                            hint="see `systemd-analyze syscall-filter @known`")
    return text


def _set(value: object, name: str) -> list[object]:
    items = value.get("set") if isinstance(value, Mapping) else None
    if not isinstance(items, list):
        raise IsolatorError(f'{name}: "set" must be a list')
    if not items:
        raise IsolatorError(f"{name}: set must be non-empty")
    return items


def _int(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise IsolatorError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise IsolatorError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def normalize(name: str, value: Any) -> Any:
    """The checked value of one isolator (names upper-cased, CAP_ added); unknown isolator names
    pass unchanged (appc: an executor ignores isolators it does not know)."""
    if name in (CAPS_RETAIN, CAPS_REMOVE):
        return {"set": [capability_name(c) for c in _set(value, name)]}
    if name in (SECCOMP_RETAIN, SECCOMP_REMOVE):
        out: dict[str, Any] = {"set": [syscall_entry(s) for s in _set(value, name)]}
        if isinstance(value, Mapping) and value.get("errno"):
            out["errno"] = errno_name(value["errno"])
        return out
    if name == NO_NEW_PRIVS:
        if not isinstance(value, bool):
            raise IsolatorError(f"{name} must be true or false, got {value!r}")
        return value
    if name in (MEMORY, CPU):
        if not isinstance(value, Mapping):
            raise IsolatorError(f'{name}: expected {{"request": ..., "limit": ...}}')
        for k in ("request", "limit"):
            if value.get(k) is not None:
                parse_quantity(str(value[k]), k)
        return dict(value)
    if name == CPU_SHARES:
        return _int(value, name, 2, 262144)
    if name == OOM_SCORE_ADJ:
        return _int(value, name, -1000, 1000)
    return value


def check_all(isolators: Sequence[Mapping[str, Any]], app: str | None = None
              ) -> list[dict[str, Any]]:
    """Every isolator of an app checked; more than one of a capabilities or seccomp kind is an
    error (rkt: ``too many seccomp isolators specified``). ``app`` names the app in errors."""
    try:
        return _check_all(isolators)
    except RktError as e:
        if app is None:
            raise
        raise IsolatorError(f'app "{app}": {e.message}', hint=e.hint) from None


def _check_all(isolators: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = [{"name": i["name"], "value": normalize(str(i["name"]), i.get("value"))}
           for i in isolators]
    names = [i["name"] for i in out]
    if CAPS_RETAIN in names and CAPS_REMOVE in names:
        raise IsolatorError("cannot use both capabilities-retain-set and "
                            "capabilities-remove-set on the same app")
    if sum(n in (SECCOMP_RETAIN, SECCOMP_REMOVE) for n in names) > 1:
        raise IsolatorError("too many seccomp isolators specified")
    return out


# ---- rkt's per-app flags -------------------------------------------------------------------

@dataclass(frozen=True)
class AppIsolatorFlags:
    """The isolator flags given after one image (raw strings, checked by :func:`from_flags`)."""

    memory: str | None = None
    cpu: str | None = None
    cpu_shares: str | None = None
    oom_score_adj: str | None = None
    caps_retain: str | None = None
    caps_remove: str | None = None
    seccomp: str | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.memory, self.cpu, self.cpu_shares,
                                           self.oom_score_adj, self.caps_retain,
                                           self.caps_remove, self.seccomp))


def _atoi(flag: str, text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text.strip()):
        raise IsolatorError(f'invalid argument "{text}" for "--{flag}" flag: '
                            f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def seccomp_flag(text: str) -> tuple[str, dict[str, Any]]:
    """``--seccomp mode=retain|remove[,errno=ENAME],sys1,@group,...`` → (isolator name, value),
    with rkt's errors."""
    mode, errno, entries = "", "", []
    for item in text.split(","):
        k, eq, v = item.partition("=")
        if eq:
            if k == "mode":
                if v not in ("retain", "remove"):
                    raise IsolatorError("invalid seccomp mode command-line override",
                                        hint="--seccomp mode=retain|remove,SYSCALL,...")
                mode = v
            elif k == "errno":
                errno = v
            else:
                raise IsolatorError("invalid seccomp command-line override",
                                    hint=f'unknown key "{k}": only mode= and errno=')
        elif item.strip():
            entries.append(item.strip())
    if not mode:
        raise IsolatorError("invalid seccomp mode command-line override",
                            hint="--seccomp needs mode=retain or mode=remove")
    name = SECCOMP_RETAIN if mode == "retain" else SECCOMP_REMOVE
    value: dict[str, Any] = {"set": entries}
    if errno:
        value["errno"] = errno
    return name, normalize(name, value)


def from_flags(f: AppIsolatorFlags) -> list[dict[str, Any]]:
    """The isolators the flags stand for, in rkt's order (memory, cpu, cpu-shares,
    oom-score-adj, capabilities, seccomp)."""
    out: list[dict[str, Any]] = []
    if f.caps_retain is not None and f.caps_remove is not None:
        raise IsolatorError("cannot use both --caps-retain and --caps-remove on the same image")
    if f.memory is not None:
        limit = parse_quantity(f.memory, "request")
        if limit < MIN_MEMORY:
            raise IsolatorError(f"memory limit of {int(limit)} bytes too low. Try a reasonable "
                                "value, such as --memory=16M")
        out.append({"name": MEMORY, "value": {"request": f.memory, "limit": f.memory}})
    if f.cpu is not None:
        if parse_quantity(f.cpu, "request") <= 0:
            raise IsolatorError(f'--cpu must be above 0, got "{f.cpu}"')
        out.append({"name": CPU, "value": {"request": f.cpu, "limit": f.cpu}})
    if f.cpu_shares is not None:
        out.append({"name": CPU_SHARES,
                    "value": normalize(CPU_SHARES, _atoi("cpu-shares", f.cpu_shares))})
    if f.oom_score_adj is not None:
        out.append({"name": OOM_SCORE_ADJ,
                    "value": normalize(OOM_SCORE_ADJ, _atoi("oom-score-adj", f.oom_score_adj))})
    for flag, name in ((f.caps_retain, CAPS_RETAIN), (f.caps_remove, CAPS_REMOVE)):
        if flag is not None:
            out.append({"name": name,
                        "value": normalize(name, {"set": [c for c in flag.split(",") if c]})})
    if f.seccomp is not None:
        sname, svalue = seccomp_flag(f.seccomp)
        out.append({"name": sname, "value": svalue})
    return out


def merge(image: Sequence[Mapping[str, Any]], f: AppIsolatorFlags) -> list[dict[str, Any]]:
    """rkt's stage0 prepareIsolators: --memory/--cpu are appended (the last one counts),
    --cpu-shares/--oom-score-adj replace by name, --caps-* drop the image's capability sets,
    --seccomp replaces both seccomp kinds."""
    cli = from_flags(f)
    out = [dict(i) for i in image]
    for iso in cli:
        name = iso["name"]
        if name in (CAPS_RETAIN, CAPS_REMOVE):
            replaced: tuple[str, ...] = (CAPS_RETAIN, CAPS_REMOVE)
        elif name in (SECCOMP_RETAIN, SECCOMP_REMOVE):
            replaced = (SECCOMP_RETAIN, SECCOMP_REMOVE)
        elif name in (CPU_SHARES, OOM_SCORE_ADJ):
            replaced = (name,)
        else:
            replaced = ()
        out = [i for i in out if i["name"] not in replaced]
        out.append(iso)
    return out


def last(isolators: Sequence[Mapping[str, Any]], *names: str) -> Mapping[str, Any] | None:
    """The last isolator with one of ``names`` (rkt: the last memory/cpu isolator wins)."""
    found = None
    for i in isolators:
        if i.get("name") in names:
            found = i
    return found

