"""The public surface of ``authgate.client``, and that it needs no server dependency."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import authgate.client

SERVER_ONLY = ("fastapi", "starlette", "sqlalchemy", "uvicorn", "argon2", "alembic")

CHECK_IMPORTS = """
import sys, {module}
server_only = {server_only!r}
bad = [m for m in sys.modules
       if m.split('.')[0] in server_only
       or (m.startswith('authgate.') and not m.startswith('authgate.client'))]
print(bad)
sys.exit(1 if bad else 0)
"""


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, and names every public attribute of the package and no more."""
    exported = authgate.client.__all__
    assert exported == sorted(exported)
    public = {name for name in vars(authgate.client) if not name.startswith("_")}
    assert public == set(exported)


def test_exported_members_come_from_private_modules() -> None:
    """Every exported class or function is defined in a private module of the package."""
    checked = 0
    for name in authgate.client.__all__:
        member = getattr(authgate.client, name)
        if isinstance(member, type) or inspect.isfunction(member):  # not type aliases
            assert member.__module__.startswith("authgate.client._"), (name, member.__module__)
            checked += 1
    assert checked >= 30


@pytest.mark.parametrize("module", ["authgate.client", "authgate.client._cli"])
def test_import_pulls_in_no_server_module(module: str) -> None:
    """Importing the SDK (or its CLI) loads no server framework and no server module."""
    code = CHECK_IMPORTS.format(module=module, server_only=SERVER_ONLY)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"


def test_exception_tree_matches_the_documented_shape() -> None:
    """Each exception sits where the module docstring draws it."""
    c = authgate.client
    assert issubclass(c.TransportError, c.AuthgateClientError)
    assert issubclass(c.SecondFactorRequired, c.AuthgateClientError)
    assert issubclass(c.UnexpectedResponseError, c.AuthgateClientError)
    for leaf in (
        c.AuthenticationError,
        c.PermissionDeniedError,
        c.NotFoundError,
        c.ConflictError,
        c.ValidationError,
        c.LockedError,
        c.RateLimitedError,
        c.ServerError,
    ):
        assert issubclass(leaf, c.APIError)
    assert issubclass(c.SecondFactorRejected, c.AuthenticationError)
    assert issubclass(c.APIError, c.AuthgateClientError)
