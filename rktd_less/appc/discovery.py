"""appc meta discovery, the pure part (reference §4.5, appc ``discovery/discovery.go``).

A discovery page is HTML with ``<meta name="ac-discovery" content="PREFIX TEMPLATE">`` and
``<meta name="ac-discovery-pubkeys" content="PREFIX URL">`` tags. A tag applies to an image when
the image name starts with PREFIX. Templates are rendered with ``{name}``, ``{ext}`` and one
``{label}`` per requested label (``{version}`` defaults to ``latest``); a template left with an
unknown ``{...}`` is skipped. Fetching the pages lives in ``fetch/discovery.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser

DEFAULT_VERSION = "latest"
ACI_DISCOVERY = "ac-discovery"
PUBKEYS_DISCOVERY = "ac-discovery-pubkeys"
_TEMPLATE_VAR = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class MetaTag:
    name: str  # ACI_DISCOVERY or PUBKEYS_DISCOVERY
    prefix: str
    value: str  # URL template (ac-discovery) or key URL (ac-discovery-pubkeys)


@dataclass(frozen=True)
class Endpoint:
    aci_url: str
    sig_url: str


class _MetaParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[MetaTag] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "body":
            # rkt reads the document head only: meta tags in a body may be user content.
            self.done = True
            return
        if tag != "meta":
            return
        values = {k.lower(): (v or "") for k, v in attrs}
        name = values.get("name", "").strip().lower()
        if name not in (ACI_DISCOVERY, PUBKEYS_DISCOVERY):
            return
        parts = values.get("content", "").split()
        if len(parts) != 2:
            return  # malformed content: ignored, as rkt does
        self.tags.append(MetaTag(name, parts[0], parts[1]))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.done = True


def parse_meta(html: str | bytes) -> list[MetaTag]:
    """The discovery meta tags of a page, in document order.

    Never raises: malformed markup yields the tags read before the parser gave up."""
    text = html.decode("utf-8", errors="replace") if isinstance(html, bytes) else html
    parser = _MetaParser()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # html.parser raises AssertionError etc. on odd markup
        pass
    return parser.tags


def candidates(name: str) -> list[str]:
    """Where discovery looks, most specific first: ``a/b/c`` -> ``a/b/c``, ``a/b``, ``a``."""
    parts = [p for p in name.strip("/").split("/") if p]
    return ["/".join(parts[:end]) for end in range(len(parts), 0, -1)]


def render(template: str, variables: Mapping[str, str]) -> str | None:
    """Substitute ``{var}`` (values are not re-scanned); ``None`` if any variable is unknown."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        value = variables.get(m.group(1))
        if value is None:
            missing = True
            return m.group(0)
        return value

    out = _TEMPLATE_VAR.sub(sub, template)
    return None if missing else out


def template_vars(name: str, labels: Mapping[str, str]) -> dict[str, str]:
    # A label called "name" cannot override the image name (rkt: name is substituted first).
    variables = {k: v for k, v in labels.items() if k not in ("name", "ext")}
    variables.setdefault("version", DEFAULT_VERSION)
    if not variables["version"]:
        variables["version"] = DEFAULT_VERSION
    variables["name"] = name
    return variables


def applies(tag: MetaTag, name: str) -> bool:
    return name.startswith(tag.prefix)


def aci_endpoints(tags: Sequence[MetaTag], name: str,
                  labels: Mapping[str, str]) -> list[Endpoint]:
    """Rendered ACI and signature URLs of every applicable ``ac-discovery`` tag, in order."""
    variables = template_vars(name, labels)
    out: list[Endpoint] = []
    for tag in tags:
        if tag.name != ACI_DISCOVERY or not applies(tag, name):
            continue
        aci = render(tag.value, {**variables, "ext": "aci"})
        sig = render(tag.value, {**variables, "ext": "aci.asc"})
        if aci is not None and sig is not None:
            out.append(Endpoint(aci, sig))
    return out


def missing_vars(tags: Sequence[MetaTag], name: str, labels: Mapping[str, str]) -> list[str]:
    """Variables that kept applicable templates from rendering (for error messages)."""
    known = {**template_vars(name, labels), "ext": ""}
    out: list[str] = []
    for t in tags:
        if t.name == ACI_DISCOVERY and applies(t, name):
            for var in _TEMPLATE_VAR.findall(t.value):
                if var not in known and var not in out:
                    out.append(var)
    return out


def pubkey_urls(tags: Sequence[MetaTag], name: str) -> list[str]:
    """Key URLs of every applicable ``ac-discovery-pubkeys`` tag, in order, without repeats."""
    out: list[str] = []
    for tag in tags:
        if tag.name == PUBKEYS_DISCOVERY and applies(tag, name) and tag.value not in out:
            out.append(tag.value)
    return out
