"""Build hook of authgate-sdk: of the packages it shares with the server (``authgate``,
``authgate.security``) the wheel carries only the modules pyproject.toml lists under
``[tool.authgate.shared-modules]``; everything else of the configuration is in
pyproject.toml.

The sources are the server's (``../../src``), so this project builds wheels and
editable installs from a checkout; it has no sdist of its own.
"""

import tomllib
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

PYPROJECT = Path(__file__).resolve().with_name("pyproject.toml")
SHARED_MODULES: dict[str, list[str]] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"][
    "authgate"
]["shared-modules"]


class BuildPyOwnModules(build_py):
    """Leaves out the server's modules of the shared packages."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        if package not in SHARED_MODULES:
            return modules
        return [module for module in modules if module[1] in SHARED_MODULES[package]]


class NoSdist(sdist):
    """An sdist would miss the sources, which live outside this directory."""

    def run(self) -> None:
        raise SystemExit(
            "authgate-sdk is built from the authgate source tree: build a wheel instead "
            "(pip wheel --no-deps clients/python, or python -m build --wheel clients/python)"
        )


setup(cmdclass={"build_py": BuildPyOwnModules, "sdist": NoSdist})
