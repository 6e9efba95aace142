"""Database URLs as people type them, and connection failures as people can act on them.

authgate drives PostgreSQL through asyncpg and SQLite through aiosqlite. A URL that
names no driver (``postgresql://``, the form most tools print) means those drivers,
and libpq's ``sslmode`` becomes asyncpg's ``ssl`` (same values); asyncpg would refuse
the keyword. A failure to connect becomes one sentence with what to check, never a
traceback (``authgate`` exits with 2 on it).
"""

from __future__ import annotations

import errno
import socket

from sqlalchemy import exc
from sqlalchemy.engine import URL, make_url

POSTGRES_EXTRA_HINT = "pip install 'authgate[postgres]'"

_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",  # Heroku's and some PaaS' spelling
    "sqlite": "sqlite+aiosqlite",
}
# PostgreSQL error codes worth a sentence of their own.
_MISSING_DATABASE = "3D000"
_LOGIN_REFUSED = ("28000", "28P01")
# Connection exceptions, too many connections, starting up or shutting down.
_CONNECTION_CLASSES = ("08", "53300", "57P01", "57P02", "57P03")
_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})


def normalise_database_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` as ``postgresql+asyncpg://``, ``sqlite://``
    as ``sqlite+aiosqlite://``, ``sslmode=`` as ``ssl=``; other URLs unchanged (and
    unparsable ones too: the database layer names the problem)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        return url
    driver = _DEFAULT_DRIVERS.get(parsed.drivername, parsed.drivername)
    changed = parsed.set(drivername=driver)
    if changed.get_backend_name() == "postgresql" and "sslmode" in changed.query:
        query = dict(changed.query)
        query["ssl"] = query.pop("sslmode")
        changed = changed.set(query=query)
    if changed == parsed:
        return url
    return changed.render_as_string(hide_password=False)


def describe_connection_failure(
    error: BaseException, url: str, *, setting: str = "AUTHGATE_DATABASE_URL"
) -> str | None:
    """What to tell the operator about ``error`` met while connecting to ``url`` (given
    as ``setting``), or ``None`` if it is not a connection problem (the password is
    never shown)."""
    parsed = make_url(url)
    where = _where(parsed)
    if isinstance(error, socket.gaierror):
        return (
            f"cannot resolve the database host {parsed.host!r} ({error.strerror}): "
            f"check the host name in {setting}"
        )
    if isinstance(error, ConnectionRefusedError):
        return (
            f"cannot connect to the database at {where}: connection refused. Is "
            f"PostgreSQL running and listening there? ({setting})"
        )
    if isinstance(error, TimeoutError):
        return (
            f"cannot connect to the database at {where}: no answer in time. Check the "
            f"address in {setting} and any firewall between"
        )
    if isinstance(error, ConnectionError) or (
        isinstance(error, OSError) and error.errno in _UNREACHABLE
    ):
        reason = error.strerror or type(error).__name__
        return f"cannot connect to the database at {where}: {reason} ({setting})"
    if isinstance(error, exc.DBAPIError):
        return _describe_database_answer(error, parsed, where, setting)
    return None


def _describe_database_answer(
    error: exc.DBAPIError, parsed: URL, where: str, setting: str
) -> str | None:
    """Only refusals to connect: any other error is a bug to be reported as one."""
    refused_parameter = getattr(error.orig, "__cause__", None)
    if isinstance(refused_parameter, ValueError):
        # asyncpg's ClientConfigurationError (a ValueError): a parameter of the URL it
        # refuses before connecting, such as `sslmode=bogus`; its message names it.
        reason = str(refused_parameter).splitlines()[0] if str(refused_parameter) else ""
        if parsed.password:
            reason = reason.replace(parsed.password, "***")
        return f"invalid {setting}: {reason or type(refused_parameter).__name__}"
    code = getattr(error.orig, "sqlstate", None)
    if not isinstance(code, str):
        return None
    if code == _MISSING_DATABASE:
        return (
            f"the database server at {where} has no database {parsed.database!r}: create it "
            f"(createdb {parsed.database}) or fix the name in {setting}"
        )
    if code in _LOGIN_REFUSED:
        return (
            f"the database server at {where} refused user {parsed.username!r}: check the "
            f"user name and password in {setting}"
            + (" (or AUTHGATE_DATABASE_URL_FILE)" if setting == "AUTHGATE_DATABASE_URL" else "")
        )
    if code.startswith(_CONNECTION_CLASSES):
        first_line = (str(error.orig) or type(error.orig).__name__).splitlines()[0]
        return f"the database at {where} refused the connection: {first_line}"
    return None


def _where(parsed: URL) -> str:
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "(memory)"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
