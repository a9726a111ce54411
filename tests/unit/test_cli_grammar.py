"""rkt's run grammar and flag parsing (pure)."""

import pytest

from rktd_less.cli.flags import Flag, Kind, parse
from rktd_less.cli.main import GLOBAL_FLAGS
from rktd_less.cli.run import FLAGS as RUN_FLAGS
from rktd_less.cli.run_args import parse_run
from rktd_less.errors import UsageError

SPEC = {**GLOBAL_FLAGS, **RUN_FLAGS}


def test_single_image_with_exec_and_args() -> None:
    r = parse_run(SPEC, ["./busybox.aci", "--exec", "/bin/echo", "--", "hello", "world"])
    (app,) = r.apps
    assert app.image == "./busybox.aci"
    assert app.exec_ == "/bin/echo"
    assert app.args == ("hello", "world")


def test_two_images_separated_by_triple_dash() -> None:
    r = parse_run(SPEC, ["--net=none", "img1", "--exec=/bin/true", "--", "a", "---",
                         "img2", "--name", "second", "--exec", "/bin/sh", "--", "-c", "exit 3"])
    assert r.pod["net"] == ["none"]
    assert [a.image for a in r.apps] == ["img1", "img2"]
    assert r.apps[0].args == ("a",)
    assert r.apps[1].name == "second"
    assert r.apps[1].args == ("-c", "exit 3")


def test_args_may_contain_flags_and_dashes() -> None:
    r = parse_run(SPEC, ["img", "--", "--exec", "-x", "--"])
    assert r.apps[0].args == ("--exec", "-x", "--")
    assert r.apps[0].exec_ is None


def test_images_without_args_follow_each_other() -> None:
    r = parse_run(SPEC, ["img1", "img2", "--exec", "/x"])
    assert [(a.image, a.exec_) for a in r.apps] == [("img1", None), ("img2", "/x")]


def test_global_flags_before_first_image() -> None:
    r = parse_run(SPEC, ["--insecure-options=image", "--debug", "img"])
    assert r.pod["insecure-options"] == ["image"]
    assert r.pod["debug"] is True


def test_pod_flag_after_image_is_an_error() -> None:
    with pytest.raises(UsageError, match="unknown flag: --net"):
        parse_run(SPEC, ["img", "--net=host"])


def test_no_image() -> None:
    with pytest.raises(UsageError, match="no image"):
        parse_run(SPEC, ["--net=host"])


def test_bad_environment() -> None:
    with pytest.raises(UsageError, match="NAME=VALUE"):
        parse_run(SPEC, ["img", "--environment=novalue"])


def test_flag_parser_forms() -> None:
    spec = {"full": Flag(Kind.BOOL, False), "format": Flag(Kind.STR, ""),
            "wait": Flag(Kind.OPTSTR, "false"), "f": Flag(Kind.LIST, [])}
    v, pos = parse(spec, ["a", "--full", "--format", "json", "--wait", "b", "--f=x,y", "--f", "z"])
    assert v == {"full": True, "format": "json", "wait": "true", "f": ["x", "y", "z"]}
    assert pos == ["a", "b"]
    v, _ = parse(spec, ["--full=false", "--wait=5s"])
    assert v["full"] is False and v["wait"] == "5s"
    with pytest.raises(UsageError, match="unknown flag: --nope"):
        parse(spec, ["--nope"])
    with pytest.raises(UsageError, match="true or false"):
        parse(spec, ["--full=maybe"])
