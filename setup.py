"""Build hook of the server distribution ``authgate``: it leaves out the modules that
authgate-sdk (clients/python) owns in the two packages they share, ``authgate`` and
``authgate.security``, so that installing both never puts two copies of a module in
one environment. Everything else of the configuration is in pyproject.toml.
"""

import tomllib
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SDK_PYPROJECT = Path(__file__).resolve().parent / "clients" / "python" / "pyproject.toml"
SDK_MODULES: dict[str, list[str]] = tomllib.loads(SDK_PYPROJECT.read_text(encoding="utf-8"))[
    "tool"
]["authgate"]["shared-modules"]


class BuildPyWithoutSdkModules(build_py):
    """Leaves out authgate-sdk's modules of the shared packages."""

    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        owned = SDK_MODULES.get(package, [])
        return [module for module in modules if module[1] not in owned]


setup(cmdclass={"build_py": BuildPyWithoutSdkModules})
