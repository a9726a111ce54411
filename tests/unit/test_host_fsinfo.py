"""Which filesystem a path is on, from mountinfo (rkt's PathSupportsOverlay)."""

from __future__ import annotations

from rktd_less.host.fsinfo import fstype_of

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:25 / /var/lib rw shared:2 - zfs tank/lib rw
31 30 0:26 / /var/lib/rkt rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
32 22 0:27 / /mnt/with\\040space rw - aufs none rw
33 22 0:28 / /mnt/with\\040space rw - xfs /dev/vdb rw
"""


def test_the_deepest_mount_and_the_one_on_top_decide() -> None:
    assert fstype_of("/srv/x", MOUNTINFO) == "ext4"
    assert fstype_of("/var/lib/other", MOUNTINFO) == "zfs"
    assert fstype_of("/var/lib/rkt", MOUNTINFO) == "overlay"
    assert fstype_of("/var/lib/rkt/pods/run", MOUNTINFO) == "overlay"
    assert fstype_of("/var/lib/rktx", MOUNTINFO) == "zfs"  # a prefix of a name is no parent
    assert fstype_of("/mnt/with space/d", MOUNTINFO) == "xfs"  # mounted over the aufs one
    assert fstype_of("/x", "garbage\n") is None
