"""The public surface of ``authgate.guard``, and that it brings no server module along."""

from __future__ import annotations

import inspect
import subprocess
import sys

import authgate.guard

CHECK_IMPORTS = """
import sys, authgate.guard
server_only = ("sqlalchemy", "alembic", "argon2", "uvicorn", "fastapi")
server_packages = ("authgate.api", "authgate.app", "authgate.cli", "authgate.container",
                   "authgate.http_config", "authgate.runtime", "authgate.services",
                   "authgate.settings", "authgate.storage", "authgate.web", "authgate.wiring")
bad = [m for m in sys.modules
       if m.split('.')[0] in server_only
       or any(m == p or m.startswith(p + '.') for p in server_packages)]
print(bad)
sys.exit(1 if bad else 0)
"""


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and names every public attribute of the package, no more."""
    exported = authgate.guard.__all__
    assert exported == sorted(exported)
    public = {name for name in vars(authgate.guard) if not name.startswith("_")}
    assert public == set(exported)


def test_exported_members_come_from_private_modules() -> None:
    checked = 0
    for name in authgate.guard.__all__:
        member = getattr(authgate.guard, name)
        if isinstance(member, type) or inspect.isfunction(member):
            assert member.__module__.startswith("authgate.guard._"), (name, member.__module__)
            checked += 1
    assert checked >= 12


def test_import_pulls_in_no_server_module() -> None:
    """Importing the guard loads Starlette, not FastAPI, SQLAlchemy or authgate's server."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


def test_exception_tree_matches_the_documented_shape() -> None:
    g = authgate.guard
    for leaf, status in (
        (g.NotAuthenticated, 401),
        (g.AccessDenied, 403),
        (g.Throttled, 429),
        (g.InvalidRequest, 400),
        (g.AuthgateUnavailable, 503),
    ):
        assert issubclass(leaf, g.GuardError)
        assert leaf().status == status
    assert not issubclass(g.GuardConfigError, g.GuardError)
    assert issubclass(g.GuardConfigError, ValueError)
