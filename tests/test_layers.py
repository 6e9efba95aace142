"""The layering rules of docs/architecture.md, checked by reading every module's imports
with ``ast``: which layer may import which, and who may touch the environment."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import authgate

PACKAGE_DIR = Path(authgate.__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent

WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn")
SERVER_PACKAGES = (
    "authgate.api",
    "authgate.app",
    "authgate.cli",
    "authgate.container",
    "authgate.http_config",
    "authgate.runtime",
    "authgate.services",
    "authgate.settings",
    "authgate.storage",
    "authgate.web",
    "authgate.wiring",
)

# layer -> packages it must not import (framework-free layers come first)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "authgate.security": (
        *WEB_FRAMEWORKS,
        "authgate.storage",
        "authgate.services",
        "authgate.api",
    ),
    "authgate.storage": (*WEB_FRAMEWORKS, "authgate.services", "authgate.api"),
    # A service's settings are its own model, which settings.py nests (no cycle).
    "authgate.services": (*WEB_FRAMEWORKS, "authgate.api", "authgate.settings"),
    # The registry is built without knowing what runs on it (runtime.py).
    "authgate.container": ("authgate.runtime",),
    "authgate.wiring": ("authgate.runtime",),
    # Programs that run elsewhere (an integrator's script, another team's service):
    # nothing of the server comes with them.
    "authgate.client": (*WEB_FRAMEWORKS, "sqlalchemy", *SERVER_PACKAGES),
    "authgate.guard": ("sqlalchemy", *SERVER_PACKAGES),
}

ENVIRONMENT_NAMES = frozenset({"environ", "environb", "getenv", "getenvb"})
# The server's settings, and the separate client program's equivalent of them.
MAY_READ_ENVIRONMENT = frozenset({"authgate.settings", "authgate.client._config"})
MAY_SET_ENVIRONMENT = "authgate.cli.console"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SOURCE_ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _parse(path: Path) -> Module:
    name, is_package = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return Module(name=name, path=path, is_package=is_package, tree=tree)


def all_modules() -> list[Module]:
    return [_parse(path) for path in sorted(PACKAGE_DIR.rglob("*.py"))]


def imported_names(module: Module) -> list[tuple[int, str]]:
    """Every module an import statement names, absolute, with its line number.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule).
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".")
    if not module.is_package:
        package.pop()
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer_violations(module: Module) -> list[str]:
    """``module: line N imports X`` for each import its layer forbids."""
    problems: list[str] = []
    for layer, forbidden in FORBIDDEN.items():
        if not _within(module.name, layer):
            continue
        for line, name in imported_names(module):
            for banned in forbidden:
                if _within(name, banned):
                    problems.append(
                        f"{module.name} ({module.path.name}:{line}) imports {name}"
                        f" ({layer} must not depend on {banned})"
                    )
    return sorted(set(problems))


def environment_access(module: Module) -> list[str]:
    """``module: line N uses os.X`` for each environment access the module may not make.

    Only ``authgate.settings`` (and the separate client program's ``authgate.client._config``)
    reads the environment; ``authgate.cli.console`` may assign or delete ``os.environ[...]``
    items (to hand settings to worker processes), nothing else.
    """
    if module.name in MAY_READ_ENVIRONMENT:
        return []
    allowed: set[int] = set()
    if module.name == MAY_SET_ENVIRONMENT:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
                allowed.add(id(node.value))
    problems: list[str] = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES:
            if id(node) not in allowed:
                problems.append(f"{module.name}:{node.lineno} uses {ast.unparse(node)}")
        elif isinstance(node, ast.Name) and node.id in ENVIRONMENT_NAMES:
            problems.append(f"{module.name}:{node.lineno} uses {node.id}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            problems.extend(
                f"{module.name}:{node.lineno} imports os.{alias.name}"
                for alias in node.names
                if alias.name in ENVIRONMENT_NAMES
            )
    return problems


def _module_from_source(name: str, source: str) -> Module:
    return Module(
        name=name,
        path=Path(name.replace(".", "/") + ".py"),
        is_package=False,
        tree=ast.parse(source),
    )


MODULES = all_modules()


def test_scanner_sees_every_layer() -> None:
    """The scan covers the package, including modules of each checked layer."""
    names = {module.name for module in MODULES}
    for expected in (
        "authgate.settings",
        "authgate.cli.console",
        "authgate.security.tokens",
        "authgate.storage.repositories",
        "authgate.services.users",
        "authgate.api.auth",
    ):
        assert expected in names, f"{expected} not found under {PACKAGE_DIR}"


@pytest.mark.parametrize(
    ("name", "source", "culprit"),
    [
        ("authgate.services.x", "from fastapi import Request", "fastapi"),
        ("authgate.services.x", "import starlette.requests", "starlette.requests"),
        ("authgate.storage.x", "from authgate.services import users", "authgate.services"),
        ("authgate.security.x", "from ..storage import db", "authgate.storage"),
        ("authgate.security.x", "from authgate import api", "authgate.api"),
        ("authgate.services.x", "from .. import api", "authgate.api"),
    ],
)
def test_layer_check_detects_violations(name: str, source: str, culprit: str) -> None:
    """The layer check reports forbidden imports, absolute and relative."""
    problems = layer_violations(_module_from_source(name, source))
    assert any(f"imports {culprit}" in problem for problem in problems), problems


def test_layer_check_accepts_downward_imports() -> None:
    """Imports that point down the layers are not reported."""
    source = "from authgate.storage import db\nfrom authgate.security import tokens\n"
    assert layer_violations(_module_from_source("authgate.services.x", source)) == []


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("authgate.container", "import os\nx = os.environ.get('A')"),
        ("authgate.container", "import os\nx = os.getenv('A')"),
        ("authgate.container", "from os import environ"),
        ("authgate.cli.console", "import os\nx = os.environ['A']"),
        ("authgate.cli.console", "import os\nx = os.environ.get('A')"),
    ],
)
def test_environment_check_detects_reads(name: str, source: str) -> None:
    """The environment check reports reads outside settings.py, also in cli/console.py."""
    assert environment_access(_module_from_source(name, source)) != []


def test_environment_check_allows_cli_to_set_variables() -> None:
    """cli/console.py may assign os.environ items."""
    source = "import os\nos.environ['AUTHGATE_CONFIG_FILE'] = 'x'\n"
    assert environment_access(_module_from_source("authgate.cli.console", source)) == []


def test_layers_import_only_downwards() -> None:
    """security, storage and services never import web frameworks or the layers above them."""
    problems = [problem for module in MODULES for problem in layer_violations(module)]
    assert problems == [], "layer violations:\n" + "\n".join(problems)


def test_only_settings_reads_the_environment() -> None:
    """No module but settings.py (and the client's _config.py) reads os.environ/os.getenv;
    cli/console.py may only set variables."""
    problems = [problem for module in MODULES for problem in environment_access(module)]
    assert problems == [], "environment access outside settings.py:\n" + "\n".join(problems)
