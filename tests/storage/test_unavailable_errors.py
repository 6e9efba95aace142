"""What counts as "the database cannot serve now" (a 503 and, for cached credentials,
their last known state) rather than a bug (a 500): PostgreSQL shutting down or starting
up reaches SQLAlchemy from asyncpg as a plain ``DBAPIError`` whose connection is not
marked invalidated, told apart only by its SQLSTATE (the fault review: 500s with
tracebacks and reset connections while PostgreSQL stopped, started or restarted)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from authgate.storage.errors import is_unavailable


class DriverError(Exception):
    """As SQLAlchemy's asyncpg adapter presents a server error: its SQLSTATE."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("the database system is shutting down")
        self.sqlstate = self.pgcode = sqlstate


def dbapi_error(sqlstate: str | None) -> exc.DBAPIError:
    return exc.DBAPIError("SELECT 1", None, DriverError(sqlstate))


@pytest.mark.parametrize(
    "sqlstate",
    [
        "57P01",  # admin shutdown (pg_ctl stop -m fast)
        "57P02",  # crash shutdown
        "57P03",  # cannot connect now: starting up, shutting down, in recovery
        "53300",  # too many connections
        "08006",  # connection failure
        "08001",  # unable to connect
        "55000",  # database not accepting connections (ALTER DATABASE ... ALLOW_CONNECTIONS)
        "3D000",  # the database was dropped
        "28P01",  # our password was changed
        "28000",  # our access was taken away (pg_hba)
    ],
)
def test_a_server_that_cannot_serve_now_is_unavailable(sqlstate: str) -> None:
    assert is_unavailable(dbapi_error(sqlstate))


@pytest.mark.parametrize(
    "sqlstate", ["42P01", "23505", "22021", "40001", "08P01", "53200", "53000", None]
)
def test_other_database_errors_are_not(sqlstate: str | None) -> None:
    """A missing table, a broken unique key, a refused value, a serialization failure,
    a protocol violation, "out of shared memory" (one statement may cause it), an
    error without a code: not the database being down (a 500 and its traceback)."""
    assert not is_unavailable(dbapi_error(sqlstate))


def test_an_invalidated_connection_and_the_usual_classes_are_unavailable() -> None:
    invalidated = exc.DBAPIError("SELECT 1", None, DriverError(None), connection_invalidated=True)
    assert is_unavailable(invalidated)
    assert is_unavailable(exc.OperationalError("SELECT 1", None, DriverError(None)))
    assert is_unavailable(ConnectionRefusedError())
    assert not is_unavailable(ValueError("a bug"))
