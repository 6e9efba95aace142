"""Packaging: two distributions from one tree, ranges outside, exact pins in the lock.

``authgate-sdk`` (clients/python) owns the SDK, ``authgate-client`` and the guard, plus
the few shared modules they need; ``authgate`` (the server) owns every other module and
depends on it. These checks read the sources and the project files; building and
installing the wheels is tests/test_distributions.py.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.test_layers import MODULES, Module, _module_from_source, imported_names

ROOT = Path(__file__).resolve().parents[1]
SERVER = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SDK = tomllib.loads((ROOT / "clients" / "python" / "pyproject.toml").read_text(encoding="utf-8"))
SDK_PACKAGES = ("authgate.client", "authgate.guard")
SHARED_MODULES: dict[str, list[str]] = SDK["tool"]["authgate"]["shared-modules"]
OUR_DISTRIBUTIONS = {"authgate", "authgate-sdk"}

# Server dependencies that no module imports by name, and why they are needed.
USED_WITHOUT_IMPORT = {
    "aiosqlite": "SQLAlchemy's sqlite+aiosqlite driver (the default database)",
    "asyncpg": "SQLAlchemy's postgresql+asyncpg driver",
    "jinja2": "Starlette's templates (Settings UI)",
    "python-multipart": "FastAPI's form parsing (Settings UI forms)",
}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def sdk_owns(module_name: str) -> bool:
    """True for the modules the authgate-sdk wheel carries."""
    if any(_within(module_name, package) for package in SDK_PACKAGES):
        return True
    package, _, leaf = module_name.rpartition(".")
    if module_name in SHARED_MODULES:  # a shared package's __init__
        return "__init__" in SHARED_MODULES[module_name]
    return leaf in SHARED_MODULES.get(package, [])


MODULE_NAMES = {module.name for module in MODULES}
SDK_MODULES = [module for module in MODULES if sdk_owns(module.name)]


def resolve(name: str) -> str | None:
    """The authgate module an imported name lives in (``a.b.C`` -> ``a.b``)."""
    while name:
        if name in MODULE_NAMES:
            return name
        name = name.rpartition(".")[0]
    return None


def foreign_imports(module: Module) -> list[str]:
    """authgate modules that ``module`` imports but the SDK wheel does not carry."""
    problems = []
    for line, name in imported_names(module):
        if not _within(name, "authgate"):
            continue
        target = resolve(name)
        if target is None or not sdk_owns(target):
            problems.append(f"{module.name}:{line} imports {name} (not in authgate-sdk)")
    return sorted(set(problems))


def third_party_imports(modules: list[Module]) -> set[str]:
    names: set[str] = set()
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "authgate"}


def distributions(import_names: set[str]) -> dict[str, str]:
    """import name -> distribution name (canonical), for installed distributions."""
    installed = packages_distributions()
    return {name: canonicalize_name(installed[name][0]) for name in import_names}


def requirements(
    project: dict[str, object], *extras: str, every_extra: bool = False
) -> list[Requirement]:
    """The dependencies, with those of ``extras`` (or of every extra)."""
    table = project["project"]
    assert isinstance(table, dict)
    found = [Requirement(line) for line in table["dependencies"]]
    optional = table.get("optional-dependencies", {})
    for extra in tuple(optional) if every_extra else extras:
        found.extend(Requirement(line) for line in optional[extra])
    return found


def constraint_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_sdk_carries_client_guard_and_what_they_import() -> None:
    """The SDK's modules import no authgate module outside the SDK wheel."""
    names = {module.name for module in SDK_MODULES}
    assert {"authgate", "authgate.client", "authgate.guard", "authgate.security.keys"} <= names
    assert "authgate.settings" not in names
    assert "authgate.security.passwords" not in names
    problems = [problem for module in SDK_MODULES for problem in foreign_imports(module)]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("authgate.guard._x", "from authgate.settings import Settings"),
        ("authgate.client._x", "from authgate.security import passwords"),
        ("authgate.security.keys", "from authgate.security.networks import AllowList"),
        ("authgate.exceptions", "from .storage import db"),
    ],
)
def test_sdk_import_check_detects_server_imports(name: str, source: str) -> None:
    """A server module imported by an SDK module is reported."""
    assert foreign_imports(_module_from_source(name, source)) != []


def test_sdk_declares_what_its_modules_import() -> None:
    """Each third-party import of the SDK is a dependency: the client's in the base set
    (or the keyring extra), the guard's in the base set or the guard extra."""
    declared = {
        group: {canonicalize_name(r.name) for r in requirements(SDK, *extras)}
        for group, extras in {"client": ("keyring",), "guard": ("guard",)}.items()
    }
    for group, prefix in (("client", "authgate.client"), ("guard", "authgate.guard")):
        modules = [module for module in SDK_MODULES if _within(module.name, prefix)]
        needed = distributions(third_party_imports(modules))
        missing = {name: dist for name, dist in needed.items() if dist not in declared[group]}
        assert missing == {}, f"{prefix} imports undeclared packages: {missing}"
    shared = [m for m in SDK_MODULES if not any(_within(m.name, p) for p in SDK_PACKAGES)]
    assert third_party_imports(shared) == set()


def test_sdk_base_install_has_no_server_framework() -> None:
    """authgate-sdk's own dependencies (any extra) name none of the server's."""
    names = {canonicalize_name(r.name) for r in requirements(SDK, every_extra=True)}
    assert names.isdisjoint({"fastapi", "sqlalchemy", "uvicorn", "argon2-cffi", "alembic"})


def test_server_dependencies_are_all_used() -> None:
    """Every dependency of the server is imported by a module (or listed, with the
    reason, in USED_WITHOUT_IMPORT): no leftover like cachetools."""
    imported = set(distributions(third_party_imports(list(MODULES))).values())
    unused = [
        r.name
        for r in requirements(SERVER, "postgres", "redis")
        if canonicalize_name(r.name) not in imported | OUR_DISTRIBUTIONS
        and r.name not in USED_WITHOUT_IMPORT
    ]
    assert unused == []


@pytest.mark.parametrize("project", [SERVER, SDK], ids=["authgate", "authgate-sdk"])
def test_published_requirements_are_ranges_pinned_in_the_lock(project: dict[str, object]) -> None:
    """Published dependencies are ranges (no ==, except authgate-sdk, released with
    the server); constraints.txt pins each inside its range."""
    pins = constraint_pins()
    for requirement in requirements(project, every_extra=True):
        name = canonicalize_name(requirement.name)
        if name in OUR_DISTRIBUTIONS:
            continue
        operators = {specifier.operator for specifier in requirement.specifier}
        assert operators, f"no version range: {requirement}"
        assert operators <= {">=", "<", "!="}, f"not a range: {requirement}"
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} not in {requirement}"
        )


def test_the_two_distributions_share_one_version() -> None:
    """The server requires exactly the authgate-sdk built from the same tree."""
    version = SERVER["project"]["version"]
    assert SDK["project"]["version"] == version
    (sdk,) = [r for r in requirements(SERVER) if canonicalize_name(r.name) == "authgate-sdk"]
    assert str(sdk.specifier) == f"=={version}"


def test_licence_is_apache_2_declared_as_spdx() -> None:
    """LICENSE holds the Apache License 2.0; both projects declare it as SPDX."""
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert (ROOT / "clients" / "python" / "LICENSE").read_text(encoding="utf-8") == text
    for project in (SERVER, SDK):
        assert project["project"]["license"] == "Apache-2.0"
        assert project["project"]["license-files"] == ["LICENSE"]
        classifiers = project["project"]["classifiers"]
        assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639
