"""rkt's ``--private-users``: the pod's root is an unprivileged range of the machine's IDs.

As rkt: a random range of 65536 IDs starting at a multiple of 65536 below 2^31 (devpts reads
its uid= option as a signed int), recorded as ``SHIFT:COUNT`` in the pod's
``private-users-prepared`` file and handed to stage1 as ``--private-users=SHIFT:COUNT``. rkt
chowned the pod's files into the range; here nspawn maps them with an idmapped mount
(``--private-users-ownership=map``), so the image trees keep their owners on disk.
"""

from __future__ import annotations

import random

from ..common.uidrange import UidRange


def random_range(rng: random.Random | None = None) -> UidRange:
    n = (rng or random.SystemRandom()).randint(1, 0x7FFF)
    return UidRange(n << 16)
