"""One trip to aiosqlite's thread per SQLite statement, instead of three or four.

aiosqlite runs every call on its connection in a thread of its own: each call is a
queue put, a thread wake-up, a self-pipe write and an event-loop wake-up (~20-40 µs of
CPU on the two sides, measured with a call that does nothing). SQLAlchemy's adapter
makes four such calls for a SELECT (create a cursor, execute, fetch every row, close
the cursor) and three for any other statement, though it fetches every row at once
anyway. The cursor here does the same four steps in one call in that thread and keeps
what they return (the description, the rows, the row count, the last row id), which
is all SQLAlchemy reads from it afterwards.

It is installed per connection, when the connection is made (``install``), and only
on the adapter classes it was written against: an adapter it does not know is left as
it is (still correct, only slower). Server-side cursors (``stream()``) keep
SQLAlchemy's own class.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)
from sqlalchemy.util import EMPTY_DICT

Outcome = tuple[Any, list[Any] | None, int, int | None]


def _run(connection: sqlite3.Connection, operation: str, parameters: Any) -> Outcome:
    """In aiosqlite's thread: a statement from cursor to close (as SQLAlchemy's adapter
    does it in four calls)."""
    cursor = connection.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _run_many(connection: sqlite3.Connection, operation: str, parameters: Any) -> Outcome:
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, parameters)
        return None, None, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor with each statement one call into aiosqlite's
    thread. The sqlite3 cursor lives only within that call; what SQLAlchemy reads after
    ``execute`` (description, rows, rowcount, lastrowid) is kept here."""

    __slots__ = ("_arraysize", "_kept_description", "_kept_lastrowid", "_kept_rowcount")

    def __init__(self, adapt_connection: Any) -> None:  # no call: no cursor made yet
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._arraysize = 1
        self._kept_description: Any = None
        self._kept_rowcount = -1
        self._kept_lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._kept_description

    @property
    def rowcount(self) -> int:
        return self._kept_rowcount

    @property
    def lastrowid(self) -> int:
        return self._kept_lastrowid  # type: ignore[return-value]  # as sqlite3's: may be None

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        """Nothing to close: the sqlite3 cursor was closed in its call."""

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            return self._keep(
                await self._connection._execute(_run, self._raw(), operation, parameters)
            )

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            outcome = await self._connection._execute(
                _run_many, self._raw(), operation, seq_of_parameters
            )
            return self._keep(outcome)

    def _raw(self) -> sqlite3.Connection:
        raw: sqlite3.Connection = self._connection._conn
        return raw

    def _keep(self, outcome: Outcome) -> None:
        description, rows, self._kept_rowcount, self._kept_lastrowid = outcome
        self._kept_description = description
        self._rows = collections.deque(rows) if rows is not None else collections.deque()

    def nextset(self) -> None:
        self._rows.clear()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """The adapter's connection, its cursors :class:`OneTripCursor`."""

    __slots__ = ()

    _cursor_cls = OneTripCursor


def install(dbapi_connection: Any) -> bool:
    """Give a new SQLAlchemy aiosqlite connection one-call cursors; False (and nothing
    changed) when it is not the adapter class this module knows."""
    if type(dbapi_connection) is not AsyncAdapt_aiosqlite_connection:
        return type(dbapi_connection) is OneTripConnection
    driver = getattr(dbapi_connection, "_connection", None)
    if not callable(getattr(driver, "_execute", None)) or not isinstance(
        getattr(driver, "_connection", None), sqlite3.Connection
    ):
        return False
    dbapi_connection.__class__ = OneTripConnection
    return True
