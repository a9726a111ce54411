"""rkt's --volume / --mount syntax and pod manifest mounts (pure)."""

import pytest

from rktd_less.cli.volume_args import parse_mount, parse_volume
from rktd_less.errors import UsageError
from rktd_less.pod.prepare import AppRequest, PodPlan, ResolvedApp, pod_manifest


def test_volume_forms() -> None:
    assert parse_volume("data,kind=host,source=/srv,readOnly=true") == {
        "name": "data", "kind": "host", "source": "/srv", "readOnly": True, "recursive": True}
    assert parse_volume("tmp,kind=empty,mode=0700,uid=5,gid=6") == {
        "name": "tmp", "kind": "empty", "mode": "0700", "readOnly": False, "uid": 5, "gid": 6}


@pytest.mark.parametrize("bad", ["", "kind=host", "v,kind=host,source=rel", "v,kind=x",
                                 "v,kind=empty,mode=999", "v,kind=empty,uid=-1",
                                 "v,kind=host,source=/a,bogus=1",
                                 "v,kind=host,source=/a,readOnly=yes"])
def test_volume_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_volume(bad)


def test_mount() -> None:
    assert parse_mount("volume=v,target=/x") == {"volume": "v", "path": "/x"}
    for bad in ("volume=v", "target=/x", "volume=v,target=rel", "volume=v,target=/x,extra=1"):
        with pytest.raises(UsageError):
            parse_mount(bad)


def _ra(mounts: tuple[dict[str, str], ...] = ()) -> ResolvedApp:
    return ResolvedApp(request=AppRequest(image="x", mounts=mounts), key="sha512-" + "0" * 64,
                       manifest={"name": "example.com/a",
                                 "app": {"exec": ["/x"], "user": "0", "group": "0",
                                         "mountPoints": [{"name": "data", "path": "/data"}]}})


def test_per_app_mount_wins_and_named_volume_serves_mount_point() -> None:
    plan = PodPlan(apps=(_ra(({"volume": "b", "path": "/m"},)),),
                   volumes=({"name": "a", "kind": "empty"}, {"name": "b", "kind": "empty"},
                            {"name": "data", "kind": "host", "source": "/srv"}),
                   mounts=({"volume": "a", "path": "/m"},))
    m = pod_manifest(plan)
    assert m["apps"][0]["mounts"] == [{"volume": "b", "path": "/m"},
                                      {"volume": "data", "path": "/data"}]
    assert [v["name"] for v in m["volumes"]] == ["a", "b", "data"]  # no implicit one


def test_unknown_volume_in_mount() -> None:
    with pytest.raises(UsageError, match='unknown volume "zz"'):
        pod_manifest(PodPlan(apps=(_ra(({"volume": "zz", "path": "/m"},)),)))
