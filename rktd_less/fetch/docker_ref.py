"""Docker image references: ``docker://[REGISTRY[:PORT]/]NAME[:TAG|@DIGEST]`` (reference §5).

docker2aci's rules (``reference.ParseNormalizedNamed`` + ``SplitReposName``): ``docker://`` or
``docker:`` prefix; the first path component is a registry iff it contains ``.`` or ``:`` or is
``localhost``; Docker Hub (``docker.io``, ``index.docker.io``) is ``registry-1.docker.io`` and
its one-component names get ``library/``; the tag defaults to ``latest``; digests are sha256.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

DEFAULT_REGISTRY = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", DEFAULT_REGISTRY})

# distribution/reference grammar
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_ANY_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_INVALID_ACID = re.compile(r"[^a-z0-9\-._~/]")
_ACID_EDGES = re.compile(r"(^[-._~/]+)|([-._~/]+$)")


@dataclass(frozen=True)
class DockerRef:
    registry: str  # host[:port]; registry-1.docker.io for Docker Hub
    repository: str  # library/busybox
    tag: str | None  # "latest" when neither a tag nor a digest was given
    digest: str | None  # sha256:<64 hex>

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What the manifest URL names: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def appc_name(self) -> str:
        """The ACI name docker2aci gives the image: ``<registry>/<repository>`` sanitized to an
        AC Identifier (``127.0.0.1:5000/a/b`` -> ``127.0.0.1_5000/a/b``)."""
        return sanitize_ac_identifier(self.name)

    @property
    def display(self) -> str:
        """``appc_name:tag`` as rkt shows converted images (``@digest`` without a tag)."""
        return f"{self.appc_name}:{self.tag}" if self.tag else f"{self.appc_name}@{self.digest}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")


def sanitize_ac_identifier(text: str) -> str:
    """appc ``SanitizeACIdentifier``: lower-case, invalid characters -> ``_``, trim the edges."""
    out = _ACID_EDGES.sub("", _INVALID_ACID.sub("_", text.lower()))
    if not out:
        raise UsageError(f'cannot make an AC Identifier from "{text}"')
    return out


def parse_docker_ref(text: str) -> DockerRef:
    """``docker://NAME``, ``docker:NAME`` or a bare NAME; a bad one is a UsageError."""
    raw = text
    for prefix in ("docker://", "docker:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break

    def bad(why: str) -> UsageError:
        return UsageError(f'invalid docker image reference "{raw}": {why}',
                          hint="use docker://[REGISTRY[:PORT]/]NAME[:TAG|@sha256:DIGEST]")

    if not text:
        raise bad("empty name")
    name, at, digest = text.partition("@")
    if at:
        if not _ANY_DIGEST_RE.fullmatch(digest):
            raise bad(f'invalid digest "{digest}"')
        if not digest.startswith("sha256:"):
            raise bad(f'unsupported digest algorithm "{digest.partition(":")[0]}"')
        if not DIGEST_RE.fullmatch(digest):
            raise bad("a sha256 digest is 64 lower-case hex digits")
    tag = None
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
        if not _TAG_RE.fullmatch(tag):
            raise bad(f'invalid tag "{tag}"')
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repo = first, rest
        if not _DOMAIN_RE.fullmatch(registry):
            raise bad(f'invalid registry "{registry}"')
    else:
        registry, repo = DEFAULT_REGISTRY, name
    if registry.lower() in _HUB_ALIASES:
        registry = DEFAULT_REGISTRY
    if not repo:
        raise bad("empty repository name")
    if repo != repo.lower():
        raise bad("repository name must be lowercase")
    if not _PATH_RE.fullmatch(repo):
        raise bad(f'invalid repository name "{repo}"')
    if re.fullmatch(r"[a-f0-9]{64}", name):
        raise bad("cannot specify 64-byte hexadecimal strings")
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = "library/" + repo
    if len(registry) + 1 + len(repo) > 255:
        raise bad("name longer than 255 characters")
    return DockerRef(registry, repo, tag if tag or at else "latest", digest or None)
