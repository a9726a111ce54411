"""A user-namespace range as stage0 records it and stage1 reads it (``SHIFT:COUNT``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RktError

COUNT = 0x10000


@dataclass(frozen=True)
class UidRange:
    shift: int
    count: int = COUNT

    def serialize(self) -> str:
        return f"{self.shift}:{self.count}"

    @classmethod
    def parse(cls, text: str) -> UidRange:
        shift, sep, count = text.strip().partition(":")
        if not sep or not shift.isdigit() or not count.isdigit() or int(shift) == 0:
            raise RktError(f"invalid user namespace range {text.strip()!r}",
                           hint="expected SHIFT:COUNT")
        return cls(int(shift), int(count))
