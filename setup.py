"""Package build hook: the stage1 images are built from stage1-*/ into the package
(rktd_less/stage1-images/stage1-<flavour>.aci) when a wheel is built. Everything else is in
pyproject.toml. An editable install builds them with scripts/install.sh instead."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithStage1(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        sys.path.insert(0, str(HERE))
        from rktd_less.stage1.image import build_all

        for path in build_all(HERE, Path(self.build_lib) / "rktd_less" / "stage1-images"):
            print(f"built stage1 image {path}")


setup(cmdclass={"build_py": BuildPyWithStage1})
