"""Reading a pod's journal: the only python-systemd user.

A pod's journald writes to ``/var/log/journal/<machine-id>`` of the machine (nspawn
``--link-journal=try-host``), which outlives the pod until ``rkt gc``; apps' output is there
under ``SYSLOG_IDENTIFIER=<app>`` (stage1 iomux@.service).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from systemd import journal as sdjournal


def _item(entry: dict[str, object]) -> tuple[str, str]:
    """(identifier, message) of one entry; a message that is not UTF-8 comes as bytes."""
    msg = entry.get("MESSAGE", "")
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    return str(entry.get("SYSLOG_IDENTIFIER", "")), text


def _reader(directory: Path, idents: Sequence[str]) -> sdjournal.Reader:
    r = sdjournal.Reader(path=str(directory))
    for ident in idents:
        r.add_match(SYSLOG_IDENTIFIER=ident)  # one field given several times: any of them
    return r


def read(directory: Path, idents: Sequence[str], *, lines: int | None = None,
         follow: bool = False, alive: Callable[[], bool] = lambda: False
         ) -> Iterator[tuple[str, str]]:
    """(identifier, message) of the entries of ``idents``; the last ``lines`` of them, and
    with ``follow`` new ones as they come while ``alive()`` (the pod runs)."""
    r = _reader(directory, idents)
    try:
        tail: collections.deque[tuple[str, str]] = collections.deque(maxlen=lines)
        for entry in r:
            tail.append(_item(entry))
        yield from tail
        while follow:
            running = alive()
            r.wait(0.5)
            got = False
            for entry in r:
                got = True
                yield _item(entry)
            if not running and not got:
                return
    finally:
        r.close()
