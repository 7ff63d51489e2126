"""Build step that puts the programme protocol and the report templates into the wheel.

Their canonical copies stay where the repository keeps them (``data/protocols/*.yaml``,
``notebooks/templates/*.py``, see DESIGN.md). Package data cannot reach outside the package
folder, so this build sub-command copies them into the build tree as
``backcare_analytics/_bundled/{protocols,templates}/`` (never into the checkout), where
:func:`backcare_analytics.config.shipped_dir` finds them through :mod:`importlib.resources`
when the package is installed. ``get_source_files`` puts the originals into the sdist, so a
wheel built from the sdist carries them too. Editable installs skip the copy: the package then
reads the checkout's files. Everything else about the build is in ``pyproject.toml``.
"""

from __future__ import annotations

import os
from glob import glob

from setuptools import Command, setup
from setuptools.command.build import build
from setuptools.errors import FileError

#: Inside the package -> the canonical files (globs relative to the project root).
BUNDLED = {
    "protocols": "data/protocols/*.yaml",
    "templates": "notebooks/templates/*.py",
}


class build_bundled(Command):
    """Copy the protocol and the report templates into ``backcare_analytics/_bundled/``.

    Implements setuptools' ``SubCommand`` protocol (``setuptools/command/build.py``).
    """

    description = "copy the protocol files and report templates into the package"
    user_options: list = []

    def initialize_options(self) -> None:
        self.build_lib: str | None = None
        self.editable_mode = False

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def get_source_files(self) -> list[str]:
        return sorted(f for pattern in BUNDLED.values() for f in glob(pattern))

    def get_output_mapping(self) -> dict[str, str]:
        base = os.path.join(self.build_lib, "backcare_analytics", "_bundled")
        return {
            os.path.join(base, kind, os.path.basename(src)): src
            for kind, pattern in BUNDLED.items()
            for src in sorted(glob(pattern))
        }

    def get_outputs(self) -> list[str]:
        return list(self.get_output_mapping())

    def run(self) -> None:
        if self.editable_mode:
            return  # an editable install reads data/protocols/ and notebooks/templates/ directly
        for kind, pattern in BUNDLED.items():
            if not glob(pattern):
                raise FileError(
                    f"no {kind} to bundle: {pattern} matches nothing in {os.getcwd()}; "
                    "build from the repository or from its sdist"
                )
        for target, src in self.get_output_mapping().items():
            self.mkpath(os.path.dirname(target))
            self.copy_file(src, target)


class build_with_bundled(build):
    sub_commands = [*build.sub_commands, ("build_bundled", None)]


setup(cmdclass={"build": build_with_bundled, "build_bundled": build_bundled})
