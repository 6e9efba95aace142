"""What storage raises for the services to catch, so that no service needs to know the
database library's exceptions."""

from __future__ import annotations

from sqlalchemy import exc
from sqlalchemy.orm import exc as orm_exc


class Conflict(Exception):
    """A write broke a unique key (or another integrity constraint): a concurrent request
    stored the same name, login, token first. Raised when the write is flushed or
    committed; the transaction is rolled back."""


def conflict(error: exc.IntegrityError) -> Conflict:
    """The :class:`Conflict` for a broken constraint: the driver's error class and the
    constraint's name, never the driver's message. Raised ``from None`` by the callers:
    PostgreSQL's message carries the row's values (``DETAIL: Key (jti)=(...) already
    exists``), which ``hide_parameters`` does not hide, and a chained cause would print
    them with the traceback of any Conflict that reaches the log (an unexpected error's
    500 is logged with its traceback)."""
    driver_error = error.orig
    name = getattr(driver_error, "constraint_name", None) or getattr(
        getattr(driver_error, "__cause__", None), "constraint_name", None
    )
    kind = type(driver_error).__name__
    return Conflict(f"{kind} ({name})" if isinstance(name, str) else kind)


# SQLSTATEs of a server that cannot serve now: shutting down (fast or crashed), starting
# up or in recovery ("cannot connect now"), out of connection slots; and the connection
# exceptions (class 08) but a protocol violation (a driver's or a statement's bug). Not
# class 53's others: "out of shared memory" (53200) can be one statement's doing.
# Also what a new connection meets when an operator closed the database for maintenance
# or a restore (55000, "database is not currently accepting connections": ALTER
# DATABASE ... ALLOW_CONNECTIONS false; a 500 with a traceback per request, the log
# review), dropped it (3D000) or changed our password or access (28P01, 28000):
# authgate's statements raise none of these.
_UNAVAILABLE_SQLSTATES = frozenset(
    {"57P01", "57P02", "57P03", "53300", "55000", "3D000", "28P01", "28000"}
)


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot serve right now (down, unreachable,
    shutting down or starting up, out of connections, busy past SQLite's busy timeout,
    pool exhausted) rather than a bug."""
    if isinstance(error, exc.TimeoutError | exc.OperationalError | exc.InterfaceError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        # asyncpg's errors reach SQLAlchemy as plain DBAPIError (PostgreSQL shutting
        # down, "the database system is starting up": 57P01-57P03): the code tells.
        code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        if not isinstance(code, str):
            return False
        return code in _UNAVAILABLE_SQLSTATES or (code.startswith("08") and code != "08P01")
    return isinstance(error, ConnectionError | TimeoutError)


def refused_value(error: BaseException) -> bool:
    """Whether the database refused a value of the statement (SQLSTATE class 22, "data
    exception": a NUL in text, a string too long), as opposed to being unavailable."""
    if isinstance(error, exc.DataError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    # asyncpg's errors reach SQLAlchemy as plain DBAPIError; the code tells them apart.
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return isinstance(code, str) and code.startswith("22")


# What a concurrent request can make a write raise where no service expected it: a
# unique or foreign key broken by a row another request wrote or deleted meanwhile, or
# an UPDATE or DELETE of a row another request deleted (the ORM's StaleDataError).
# A retry sees the new state; none of these is a bug of the request (answered 409).
CONCURRENT_CHANGE_ERRORS: tuple[type[Exception], ...] = (
    exc.IntegrityError,
    orm_exc.StaleDataError,
    Conflict,
)


# SQLSTATE of a unique and of a foreign key violation (PostgreSQL); SQLite's messages.
_CONCURRENT_SQLSTATES = frozenset({"23505", "23503"})
_CONCURRENT_SQLITE = ("UNIQUE constraint failed", "FOREIGN KEY constraint failed")


def is_concurrent_change(error: BaseException) -> bool:
    """Whether ``error`` (one of ``CONCURRENT_CHANGE_ERRORS``) is what another request's
    write causes: a unique or foreign key broken, a row gone. A NOT NULL or CHECK
    violation is a bug of the statement, not a race: it stays a 500 with its traceback."""
    if not isinstance(error, exc.IntegrityError):
        return True
    driver_error = error.orig
    code = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if isinstance(code, str):
        return code in _CONCURRENT_SQLSTATES
    return str(driver_error).startswith(_CONCURRENT_SQLITE)


def describe_concurrent_change(error: BaseException) -> str:
    """For the log: the kind of conflict and the constraint or table, never the
    driver's message (PostgreSQL's names the row's values)."""
    if isinstance(error, exc.IntegrityError):
        return str(conflict(error))
    if isinstance(error, orm_exc.StaleDataError):
        # SQLAlchemy's own text: the statement kind, the table and the row counts.
        return f"StaleDataError ({str(error)[:200]})"
    return f"{type(error).__name__} ({error})"
