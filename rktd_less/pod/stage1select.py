"""Which stage1 image a pod gets: the --stage1-* flags, else the configured default (rkt's
rkt/stage1hash.go, reference §1.4, §1.5).

A stage1 is an ordinary ACI in the store; what makes it one is its manifest's entrypoint
annotations. Images in the stage1 images directory (``paths.d`` ``stage1-images``, else the one
this package was installed with) are trusted as shipped: no signature is asked for them, as
rkt trusted its own images directory. Any other path or URL is verified like any image.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..common.contract import stage1_file_name, stage1_image_name
from ..common.manifests import read_image_manifest
from ..common.platform import host_arch
from ..config import Insecure, Stage1Config
from ..errors import NotFound, RktError, Stage1Error, UsageError
from .prepare import stage1_entrypoint

if TYPE_CHECKING:
    from ..fetch.images import FetchSettings
    from ..store import Store

# rkt's flags, each naming the stage1 one way; at most one of them per command
FLAG_HELP = {
    "stage1-url": "URL to an image to use as stage1",
    "stage1-path": "absolute or relative path to an image to use as stage1",
    "stage1-name": "name of an image to use as stage1",
    "stage1-hash": "hash of an image to use as stage1",
    "stage1-from-dir": "filename of an image in stage1 images directory to use as stage1",
}
DEFAULT_FLAVOUR = "nspawn"
# The images this package was built with (setup.py writes them there; the .deb makes this a
# link to /usr/lib/rkt/stage1-images).
PACKAGE_IMAGES_DIR = Path(__file__).resolve().parents[1] / "stage1-images"


@dataclass(frozen=True)
class Choice:
    flag: str  # one of FLAG_HELP, or "" for the configured default
    location: str = ""


def from_flags(values: dict[str, Any], args: Sequence[str]) -> Choice:
    """The one --stage1-* flag given (``values`` holds each as a list), with rkt's errors for a
    flag given twice or two of them."""
    given = [f for f in FLAG_HELP if values.get(f)]
    for f in given:
        if len(values[f]) > 1:
            raise UsageError(f"--{f} already used")
    if len(given) > 1:
        def first_use(flag: str) -> int:
            return next((i for i, a in enumerate(args)
                         if a == f"--{flag}" or a.startswith(f"--{flag}=")), len(args))
        current, wanted = sorted(given, key=first_use)[:2]
        raise UsageError(f"flags --{wanted} and --{current} are mutually exclusive")
    if not given:
        return Choice("")
    location = str(values[given[0]][0])
    if not location:
        raise UsageError(f"--{given[0]} needs a non-empty value")
    return Choice(given[0], location)


def images_dir(configured: str) -> Path:
    return Path(configured) if configured else PACKAGE_IMAGES_DIR


def _is_url(location: str) -> bool:
    return "://" in location or location.startswith("docker:")


def _trusted(location: str, images: Path) -> bool:
    """rkt's isTrustedLocation: a file in the stage1 images directory."""
    if _is_url(location):
        return False
    loc = os.path.abspath(location)
    return loc.startswith(os.path.join(os.path.abspath(images), ""))


def _build_default(images: Path) -> Stage1Config:
    return Stage1Config(name=stage1_image_name(DEFAULT_FLAVOUR), version=__version__,
                        location=str(images / stage1_file_name(DEFAULT_FLAVOUR)))


class Selector:
    """Finds (fetching where needed) the stage1 image's store key."""

    def __init__(self, store: Store, settings: FetchSettings, config: Stage1Config,
                 images_dir: Path) -> None:
        self.store = store
        self.settings = settings
        self.config = config
        self.images = images_dir

    def _settings(self, trusted: bool) -> FetchSettings:
        s = dataclasses.replace(self.settings, pull_policy="new")
        if trusted:
            s = dataclasses.replace(s, insecure=Insecure(s.insecure.options | {"image"}))
        return s

    def _fetch(self, location: str, *, trusted: bool, file: bool = False) -> str:
        from ..fetch.images import Fetcher
        from ..fetch.resolve import resolve_image

        settings = self._settings(trusted)
        if file:  # a path, even one that would read as a name (no "./", no "/")
            return Fetcher(self.store, settings).from_file(Path(location), None)
        return resolve_image(self.store, location, settings)

    def from_choice(self, choice: Choice) -> str:
        what = f"--{choice.flag}={choice.location}"
        try:
            if choice.flag == "stage1-hash":
                key = self.store.resolve_id(choice.location)
            elif choice.flag == "stage1-from-dir":
                key = self._fetch(str(self.images / choice.location), trusted=True, file=True)
            elif choice.flag == "stage1-path":
                key = self._fetch(choice.location, file=True,
                                  trusted=_trusted(choice.location, self.images))
            elif choice.flag == "stage1-url":
                if not _is_url(choice.location):
                    raise UsageError(f'"{choice.location}" is not a URL',
                                     hint="use --stage1-path for a file")
                key = self._fetch(choice.location, trusted=False)
            else:  # stage1-name: discovery, signature verified
                key = self._fetch(choice.location, trusted=False)
        except RktError as e:
            raise Stage1Error(f"failed to fetch stage1 image ({what}): {e.message}",
                              hint=e.hint) from None
        return self._checked(key, what)

    def default(self) -> str:
        """The configured default stage1 (stage1.d), else the one this package ships."""
        built = _build_default(self.images)
        name, version = ((self.config.name, self.config.version) if self.config.name
                         else (built.name, built.version))
        location = self.config.location or built.location
        what = f"{name}:{version}"
        trusted = _trusted(location, self.images)
        if not (trusted and os.path.isfile(location)):
            # rkt looks in the store first. A trusted file is imported instead every time:
            # ours are tens of kB, and a rebuilt image of the same version must not be
            # shadowed by the stored one (rkt needed "-dirty" versions for that).
            key = self.store.find_by_name(name, {"version": version, "os": "linux",
                                                 "arch": host_arch()})
            if key is not None:
                return self._checked(key, what)
        errors = []
        for loc, trust in ((location, trusted), (self._beside_rkt(location), True)):
            if not loc:
                continue
            try:
                key = self._fetch(loc, trusted=trust, file=loc.startswith("/"))
            except RktError as e:
                errors.append(e.message)
                continue
            return self._checked(key, what)
        raise Stage1Error(f"failed to fetch stage1 image {what}: {'; '.join(errors)}",
                          hint="install the stage1 images (reinstall rktd-less) or name one "
                               "with --stage1-{path,url,name,hash,from-dir}")

    @staticmethod
    def _beside_rkt(location: str) -> str:
        """rkt's fallback: the image's file name in the directory of the rkt command."""
        if not location.startswith("/"):
            return ""
        return str(Path(sys.argv[0]).resolve().parent / os.path.basename(location))

    def _checked(self, key: str, what: str) -> str:
        manifest = read_image_manifest(self.store.manifest_bytes(key))
        if stage1_entrypoint(manifest, "run") is None:
            raise Stage1Error(f'"{what}" is not a stage1 image: its manifest has no '
                              f'"coreos.com/rkt/stage1/run" entrypoint annotation')
        return key


def select(store: Store, settings: FetchSettings, choice: Choice, config: Stage1Config,
           images_dir: Path) -> str:
    sel = Selector(store, settings, config, images_dir)
    try:
        return sel.from_choice(choice) if choice.flag else sel.default()
    except NotFound as e:
        raise Stage1Error(e.message, hint=e.hint) from None
