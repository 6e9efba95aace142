"""A login's point reads on SQLite, without SQLAlchemy's execution layer.

A login reads three rows before and after its password hash: the user (twice) and the
throttle state. Through SQLAlchemy each read is a greenlet, a pool checkout and return,
an execution context and a result object around one trip to aiosqlite's thread:
measured in-process on the login path, the three reads were ~70 % of the CPU the login
spends outside its hash (~0.8 of 1.1 ms under load; the hash's own thread aside), and
under a login flood that CPU is taken from the hash (issue 12's P5).

Here SQLAlchemy still builds and compiles each statement (once: the SQL text and the
order of its parameters) and still turns each column's stored value into its Python
value (the same result processors its own results use); only the execution is direct:
one call into a dedicated aiosqlite connection's thread, which runs the statement and
fetches its rows. That connection is read-only (``query_only``) and in autocommit, so
each statement reads the last committed state and holds no snapshot afterwards (WAL
checkpoints are never held back by it).

A failure is raised as SQLAlchemy's ``DBAPIError`` of the right kind (an
``OperationalError`` for a locked or unreadable file: 503 as for any other read), and
the connection is opened afresh for the next read. Only a file database is read this
way; an in-memory one (each connection its own database) or a URI filename uses the
engine as before, and PostgreSQL reads through SQLAlchemy and asyncpg.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import exc
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.sql import Select

__all__ = ["AnySelect", "SqlitePointReads"]

AnySelect = Select[*tuple[Any, ...]]

BUSY_TIMEOUT_MS = 5000  # as the engine's connections (db.py: _configure_sqlite)
# Statements kept compiled: a login uses three; more means statements built per call,
# which are then compiled anew rather than kept without bound.
MAX_COMPILED = 64


class _Compiled:
    """A statement compiled once: its SQL, its parameters in order (with the values of
    those bound in the statement itself, such as a LIMIT), its columns' names, and the
    result processors of those that have one."""

    __slots__ = ("conversions", "defaults", "direct", "names", "row", "sql")

    def __init__(self, statement: AnySelect, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        # Parameters SQLAlchemy renders into the SQL at each execution (an expanding IN,
        # an empty IN): such a statement is left to SQLAlchemy (``direct`` false).
        self.direct = not (compiled.post_compile_params or compiled.literal_execute_params)
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.defaults: dict[str, Any] = dict(compiled.params)
        columns = compiled._result_columns  # SQLAlchemy's own map of the columns
        self.row: Any = namedtuple(  # type: ignore[misc]  # names known at run time
            "Row", [column[0] for column in columns], rename=True
        )
        processors = [column[3]._cached_result_processor(dialect, None) for column in columns]
        # Only the columns whose stored value is not already the Python value (dates,
        # booleans...): strings and integers pass through untouched.
        self.conversions: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )

    def parameters(self, given: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(given[name] if name in given else self.defaults[name] for name in self.names)

    def rows(self, raw: list[tuple[Any, ...]]) -> list[Any]:
        make = self.row._make
        conversions = self.conversions
        if not conversions:
            return [make(values) for values in raw]
        rows = []
        for stored in raw:
            values = list(stored)
            for index, process in conversions:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            rows.append(make(values))
        return rows


def _fetch(
    connection: sqlite3.Connection, sql: str, parameters: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """In the connection's thread: the statement's rows, its cursor closed."""
    cursor = connection.execute(sql, parameters)
    try:
        return cursor.fetchall()
    finally:
        cursor.close()


class SqlitePointReads:
    """Reads of a few statements by one dedicated connection (see the module)."""

    def __init__(self, path: str, dialect: Dialect) -> None:
        # mode=rw: an existing file only, never a new empty database (SQLite would
        # create one under the umask, where db.py makes the file private).
        self._uri = f"{Path(path).absolute().as_uri()}?mode=rw"
        self._dialect = dialect
        self._compiled: dict[int, tuple[AnySelect, _Compiled]] = {}
        self._connection: aiosqlite.Connection | None = None
        self._opening = asyncio.Lock()

    @staticmethod
    def for_url(url: URL, dialect: Dialect) -> SqlitePointReads | None:
        """Reads for a file database; None for an in-memory one or a URI filename."""
        path = url.database
        if not path or path == ":memory:" or path.startswith("file:") or url.query:
            return None
        return SqlitePointReads(path, dialect)

    async def rows(self, statement: AnySelect, parameters: Mapping[str, Any]) -> list[Any] | None:
        """The rows of ``statement`` (a module-level or cached statement: it is compiled
        once and kept) with ``parameters``, as named tuples of Python values; None when
        the statement has parameters only SQLAlchemy can render (read it there).

        Raises:
            sqlalchemy.exc.DBAPIError: the read failed (an ``OperationalError`` when the
                file is locked past the busy timeout or cannot be read).
        """
        known = self._compiled.get(id(statement))
        if known is None or known[0] is not statement:
            if len(self._compiled) >= MAX_COMPILED:
                self._compiled.clear()
            known = (statement, _Compiled(statement, self._dialect))
            self._compiled[id(statement)] = known
        compiled = known[1]
        if not compiled.direct:
            return None
        connection = self._connection or await self._open()
        try:
            # One call into the connection's thread, as sqlite_hops does.
            raw = await connection._execute(  # type: ignore[no-untyped-call]
                _fetch,
                connection._conn,
                compiled.sql,
                compiled.parameters(parameters),
            )
        except (sqlite3.Error, ValueError) as error:
            # ValueError: aiosqlite's "Connection closed" (closed meanwhile, or its
            # thread gone): unavailable as a locked file is, and opened anew next time.
            await self._discard(connection)
            raise _unavailable(compiled.sql, error) from None
        return compiled.rows(raw)

    async def _open(self) -> aiosqlite.Connection:
        async with self._opening:
            if self._connection is not None:
                return self._connection
            pending = aiosqlite.connect(self._uri, uri=True, isolation_level=None)
            # Its thread must not keep a process alive that forgot to close it.
            thread = getattr(pending, "_thread", None)
            if thread is not None:
                thread.daemon = True
            try:
                connection = await pending
            except sqlite3.Error as error:
                # aiosqlite stops its thread without waiting: wait here, so that it
                # never calls back into a loop that has gone (a test's, at its end).
                await _ended(thread)
                raise _unavailable("connect", error) from None
            try:
                await connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                await connection.execute("PRAGMA query_only=ON")
            except sqlite3.Error as error:
                await self._discard(connection)
                raise _unavailable("connect", error) from None
            self._connection = connection
            return connection

    async def _discard(self, connection: aiosqlite.Connection) -> None:
        if self._connection is connection:
            self._connection = None
        with suppress(sqlite3.Error, ValueError):  # unusable: it is dropped either way
            await connection.close()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


def _unavailable(statement: str, error: sqlite3.Error | ValueError) -> exc.StatementError:
    """``error`` as SQLAlchemy raises it (``OperationalError`` for a locked or unreadable
    file); aiosqlite's ``ValueError`` for a closed connection as an ``OperationalError``."""
    if not isinstance(error, sqlite3.Error):
        error = sqlite3.OperationalError(str(error))
    return exc.DBAPIError.instance(statement, None, error, sqlite3.Error, hide_parameters=True)


async def _ended(thread: threading.Thread | None) -> None:
    """Wait (off the loop, 1 s at most) until ``thread`` has ended."""
    if thread is not None and thread.is_alive():
        await asyncio.to_thread(thread.join, 1.0)
