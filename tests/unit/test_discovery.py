"""appc discovery parsing (pure): meta tags, prefixes, templates, walk-up candidates."""

from __future__ import annotations

import random

import pytest

from rktd_less.appc.discovery import (
    ACI_DISCOVERY,
    PUBKEYS_DISCOVERY,
    Endpoint,
    MetaTag,
    aci_endpoints,
    candidates,
    missing_vars,
    parse_meta,
    pubkey_urls,
    render,
)

PAGE = """<!DOCTYPE html>
<html><head>
<meta charset="utf-8">
<meta name="ac-discovery" content="example.com https://example.com/{os}/{arch}/{name}-{version}.{ext}">
<META NAME="AC-Discovery" content="  example.com/app   https://alt.example.com/{name}.{ext}  ">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg"/>
<meta name="ac-discovery" content="only-one-field">
<meta name="description" content="example.com https://not-a-tag">
</head>
<body><meta name="ac-discovery" content="example.com https://evil.example/{name}.{ext}"></body>
</html>
"""
LINUX = {"os": "linux", "arch": "amd64"}


def test_parse_meta_reads_head_tags_in_order() -> None:
    assert parse_meta(PAGE) == [
        MetaTag(ACI_DISCOVERY, "example.com",
                "https://example.com/{os}/{arch}/{name}-{version}.{ext}"),
        MetaTag(ACI_DISCOVERY, "example.com/app", "https://alt.example.com/{name}.{ext}"),
        MetaTag(PUBKEYS_DISCOVERY, "example.com", "https://example.com/pubkeys.gpg"),
    ]


def test_parse_meta_accepts_bytes_and_bad_utf8() -> None:
    page = b'<meta name="ac-discovery" content="a.b https://a.b/{name}.{ext}">\xff\xfe'
    assert parse_meta(page) == [MetaTag(ACI_DISCOVERY, "a.b", "https://a.b/{name}.{ext}")]


@pytest.mark.parametrize("page", [
    "", "<", "<<<>>>", "<html><head><meta", '<meta name="ac-discovery" content="a b',
    "<![if !IE]><meta>", "<!DOCTYPE", "<![CDATA[ x", "<!--", "<? pi", "</", "<a b='",
    "<meta name=ac-discovery content=>", "\x00\x01<meta\x00>", "<![ foo bar ]>", "&#xffffffff;",
])
def test_parse_meta_never_crashes_on_malformed_html(page: str) -> None:
    assert isinstance(parse_meta(page), list)


def test_parse_meta_keeps_tags_before_markup_it_cannot_read() -> None:
    page = ('<head><meta name="ac-discovery" content="a.b https://a.b/{name}.{ext}">'
            "<![bogus declaration <meta name=x>")
    assert parse_meta(page) == [MetaTag(ACI_DISCOVERY, "a.b", "https://a.b/{name}.{ext}")]


def test_parse_meta_fuzz() -> None:
    rnd = random.Random(1234)
    alphabet = '<>!/[]-="\' abcmeta-{}&#;?\n\x00'
    for _ in range(2000):
        parse_meta("".join(rnd.choice(alphabet) for _ in range(rnd.randrange(60))))


def test_render_substitutes_once_and_rejects_unknown_vars() -> None:
    assert render("https://h/{name}-{version}.{ext}",
                  {"name": "a/b", "version": "1.0", "ext": "aci"}) == "https://h/a/b-1.0.aci"
    assert render("https://h/{name}-{os}.{ext}", {"name": "a", "ext": "aci"}) is None
    # values are not re-scanned for variables
    assert render("https://h/{name}", {"name": "{ext}", "ext": "x"}) == "https://h/{ext}"
    assert render("https://h/plain", {}) == "https://h/plain"


def test_endpoints_prefix_version_default_and_ext() -> None:
    tags = parse_meta(PAGE)
    assert aci_endpoints(tags, "example.com/app", LINUX) == [
        Endpoint("https://example.com/linux/amd64/example.com/app-latest.aci",
                 "https://example.com/linux/amd64/example.com/app-latest.aci.asc"),
        Endpoint("https://alt.example.com/example.com/app.aci",
                 "https://alt.example.com/example.com/app.aci.asc"),
    ]
    got = aci_endpoints(tags, "example.com/other", {**LINUX, "version": "1.2"})
    assert got == [Endpoint("https://example.com/linux/amd64/example.com/other-1.2.aci",
                            "https://example.com/linux/amd64/example.com/other-1.2.aci.asc")]
    assert aci_endpoints(tags, "example.org/app", LINUX) == []


def test_templates_needing_missing_labels_are_skipped() -> None:
    tags = parse_meta(PAGE)
    # no os/arch: the first template cannot render, the second can
    assert aci_endpoints(tags, "example.com/app", {}) == [
        Endpoint("https://alt.example.com/example.com/app.aci",
                 "https://alt.example.com/example.com/app.aci.asc")]
    assert aci_endpoints(tags, "example.com/x", {}) == []
    assert missing_vars(tags, "example.com/x", {}) == ["os", "arch"]
    assert missing_vars(tags, "example.com/x", LINUX) == []


def test_any_requested_label_is_a_variable_and_name_cannot_be_overridden() -> None:
    tags = [MetaTag(ACI_DISCOVERY, "e.com", "https://e.com/{channel}/{name}.{ext}")]
    got = aci_endpoints(tags, "e.com/a", {"channel": "beta", "name": "evil", "ext": "zip"})
    assert got == [Endpoint("https://e.com/beta/e.com/a.aci", "https://e.com/beta/e.com/a.aci.asc")]


def test_empty_version_label_means_latest() -> None:
    tags = [MetaTag(ACI_DISCOVERY, "e.com", "https://e.com/{name}-{version}.{ext}")]
    assert aci_endpoints(tags, "e.com/a", {"version": ""})[0].aci_url == "https://e.com/e.com/a-latest.aci"


def test_pubkey_urls_by_prefix_without_repeats() -> None:
    tags = [MetaTag(PUBKEYS_DISCOVERY, "e.com", "https://e.com/k1"),
            MetaTag(PUBKEYS_DISCOVERY, "e.com/app", "https://e.com/k2"),
            MetaTag(PUBKEYS_DISCOVERY, "e.com", "https://e.com/k1"),
            MetaTag(PUBKEYS_DISCOVERY, "other.com", "https://other.com/k"),
            MetaTag(ACI_DISCOVERY, "e.com", "https://e.com/{name}.{ext}")]
    assert pubkey_urls(tags, "e.com/app/x") == ["https://e.com/k1", "https://e.com/k2"]
    assert pubkey_urls(tags, "e.com/lib") == ["https://e.com/k1"]
    assert pubkey_urls(tags, "x.org") == []


@pytest.mark.parametrize(("name", "want"), [
    ("a/b/c", ["a/b/c", "a/b", "a"]),
    ("example.com", ["example.com"]),
    ("example.com/app/", ["example.com/app", "example.com"]),
    ("localhost:8443/x", ["localhost:8443/x", "localhost:8443"]),
    ("", []),
])
def test_candidates_walk_up(name: str, want: list[str]) -> None:
    assert candidates(name) == want
