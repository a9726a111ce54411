"""rkt's ``--net`` grammar (``common.NetList``), pure.

``--net=n1[:ARGS],n2,...``, repeatable (the lists merge). ``ARGS`` reaches the plugin verbatim
as ``CNI_ARGS`` (``IP=10.1.2.3;K=V``). No flag, or a bare ``--net``, is ``default``. Specials:
``host`` (no network namespace; wins when listed with others, as in rkt), ``none`` (a namespace
with only ``lo``), ``all`` (every configured network); ``default`` and ``default-restricted``
are ordinary networks that the stage1 image configures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import UsageError

DEFAULT = "default"
HOST = "host"
NONE = "none"
ALL = "all"
_NO_ARGS = (HOST, ALL)


@dataclass(frozen=True)
class NetRequest:
    name: str
    args: str = ""  # CNI_ARGS

    def __str__(self) -> str:
        return f"{self.name}:{self.args}" if self.args else self.name


@dataclass(frozen=True)
class NetList:
    items: tuple[NetRequest, ...] = (NetRequest(DEFAULT),)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.items)

    @property
    def host(self) -> bool:
        """No network namespace: ``host`` listed (or nothing at all)."""
        return HOST in self.names or not self.items

    @property
    def none(self) -> bool:
        """Only ``none``: a namespace of the pod's own with ``lo`` alone, no plugins."""
        return not self.host and self.names == (NONE,)

    @property
    def contained(self) -> bool:
        """CNI networks to set up: neither host nor none."""
        return not self.host and not self.none

    @property
    def all(self) -> bool:
        return ALL in self.names

    def args_of(self, name: str) -> str:
        return next((i.args for i in self.items if i.name == name), "")

    def __str__(self) -> str:
        """The stage1 ``--net=`` value (args kept: ``,`` separates networks, ``;`` args)."""
        return ",".join(str(i) for i in self.items)


def parse(values: Iterable[str]) -> NetList:
    """The ``--net`` values of one command line, merged, with rkt's errors."""
    items: list[NetRequest] = []
    seen: set[str] = set()
    given = False
    for value in values:
        given = True
        for part in value.split(","):
            name, colon, args = part.partition(":")
            if not name:
                raise UsageError("netname must not be empty",
                                 hint="--net=NAME[:ARGS][,NAME...], e.g. --net=default")
            if colon and ":" in args:
                raise UsageError(f'network "{name}" provided with invalid arguments',
                                 hint='arguments are KEY=VALUE pairs separated by ";"')
            if name in seen:
                raise UsageError(f'found duplicate netname "{name}"')
            if args and name in _NO_ARGS:
                raise UsageError(f'arguments are not supported by special netname "{name}"')
            seen.add(name)
            items.append(NetRequest(name, args))
    return NetList(tuple(items)) if given else NetList()
