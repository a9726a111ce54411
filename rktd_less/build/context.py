"""The build context of acbuild: ``<work-path>/.acbuild/`` (reference acbuild.md §1).

    .acbuild/                       mode 0700: the image's files are the caller's alone
    .acbuild/lock                   flock'd by every command (another acbuild here: refused)
    .acbuild/currentaci/manifest    the image manifest being built
    .acbuild/currentaci/rootfs/     the image's own files (its dependencies stay apart)
    .acbuild/rootless               made by a begin without root: every file of the image is
                                    root's once written (the caller stands in for root)

``begin`` makes the context in a temporary directory next to it and renames it into place
complete; every other command edits it under the lock, the manifest by an atomic rename, so
a failed command leaves the build as it was. ``end`` removes it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..appc.manifest import ImageManifest, dumps
from ..errors import ManifestError, RktError
from ..fsio import replace_file

DIRNAME = ".acbuild"


class BuildError(RktError):
    """Whatever acbuild refuses (exit status 1)."""


@dataclass(frozen=True)
class Context:
    work: Path  # --work-path

    @property
    def dir(self) -> Path:
        return self.work / DIRNAME

    @property
    def current(self) -> Path:
        return self.dir / "currentaci"

    @property
    def manifest_path(self) -> Path:
        return self.current / "manifest"

    @property
    def rootfs(self) -> Path:
        return self.current / "rootfs"

    @property
    def rootless(self) -> bool:
        return (self.dir / "rootless").exists()

    def exists(self) -> bool:
        return self.dir.is_dir()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The build, held against every other acbuild in it, for one command."""
        if not self.exists():
            raise BuildError("no build in progress in this working dir - try \"acbuild begin\"")
        lock = self.dir / "lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BuildError("lock already held - is another acbuild running in this "
                                 "working dir?") from None
            yield
        finally:
            os.close(fd)

    def load(self) -> ImageManifest:
        try:
            text = self.manifest_path.read_bytes()
        except OSError as e:
            raise BuildError(f"cannot read the build's manifest: {e}") from None
        return check_manifest_text(text)

    def save(self, m: ImageManifest) -> None:
        replace_file(self.manifest_path, dumps(m) + "\n", durable=True)


def begin(ctx: Context, fill: Callable[[Path], ImageManifest]) -> None:
    """A new build: ``fill(rootfs)`` puts the image's files in ``rootfs`` and returns its
    manifest; made beside ``.acbuild`` and renamed into place whole."""
    if os.path.lexists(ctx.dir):
        raise BuildError("build already in progress in this working dir",
                         hint='"acbuild end" ends it')
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{DIRNAME}.begin-", dir=ctx.work))
    except FileNotFoundError:
        raise BuildError(f'work path "{ctx.work}" does not exist') from None
    except OSError as e:
        raise BuildError(f'cannot create the build in "{ctx.work}": {e.strerror}') from None
    try:
        # the caller's only: the image's files (setuid, capabilities, device nodes a step
        # made) must not be reachable by other users of the machine through the build
        os.chmod(tmp, 0o700)
        current = tmp / "currentaci"  # the context's layout, under a temporary name
        rootfs = current / "rootfs"
        rootfs.mkdir(parents=True, mode=0o755)
        os.chmod(rootfs, 0o755)
        m = fill(rootfs)
        replace_file(current / "manifest", dumps(m) + "\n", durable=True)
        if os.geteuid() != 0:
            (tmp / "rootless").write_text("")
        try:
            os.rename(tmp, ctx.dir)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise BuildError("build already in progress in this working dir") from None
            raise
    except BaseException:
        remove_tree(tmp)
        raise


def end(ctx: Context) -> None:
    if not os.path.lexists(ctx.dir):
        raise BuildError("no build in progress in this working dir - try \"acbuild begin\"")
    with ctx.locked():
        # moved aside first: a half-removed build is never mistaken for one in progress
        gone = Path(tempfile.mkdtemp(prefix=f"{DIRNAME}.end-", dir=ctx.work))
        os.rename(ctx.dir, gone / DIRNAME)
    remove_tree(gone)


def remove_tree(path: Path) -> None:
    from ..store.tree import rmtree

    with contextlib.suppress(FileNotFoundError):
        rmtree(path)


def check_manifest_text(text: bytes) -> ImageManifest:
    """``replace-manifest``: the whole manifest, checked as appc requires."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ManifestError(f"the manifest is not JSON: {e}") from None
    return ImageManifest.from_dict(raw)
