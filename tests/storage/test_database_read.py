"""``Database.read``: a hot path's reads in one greenlet on one pooled connection (the
login's user, blocks and second factor), on each database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, exc, text

from authgate.storage.db import Database


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.close()


def _checked_out(db: Database) -> int:
    return int(db.engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]


async def test_a_read_answers_and_gives_its_connection_back(db: Database) -> None:
    def reading(connection: Connection, number: int) -> tuple[int, int]:
        value = connection.execute(text("SELECT :n + 1"), {"n": number}).scalar_one()
        return value, _checked_out(db)

    assert await db.read(reading, 41) == (42, 1)
    assert _checked_out(db) == 0


async def test_a_failed_read_raises_and_gives_its_connection_back(db: Database) -> None:
    def broken(connection: Connection) -> None:
        connection.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(exc.DBAPIError):
        await db.read(broken)
    assert _checked_out(db) == 0
    assert await db.read(lambda connection: connection.execute(text("SELECT 1")).scalar()) == 1


async def test_a_read_sees_what_was_committed_just_before(db: Database) -> None:
    """A read is never in a transaction of its own (autocommit on PostgreSQL): it sees
    the latest committed rows, and leaves no transaction open on the pooled connection."""
    async with db.begin() as connection:
        await connection.execute(text("CREATE TABLE items (id INTEGER PRIMARY KEY)"))

    def count(connection: Connection) -> int:
        return int(connection.execute(text("SELECT count(*) FROM items")).scalar_one())

    try:
        for expected in (0, 1, 2):
            assert await db.read(count) == expected
            async with db.begin() as connection:
                await connection.execute(
                    text("INSERT INTO items (id) VALUES (:id)"), {"id": expected}
                )
    finally:  # the PostgreSQL database is shared with the tests that follow
        async with db.begin() as connection:
            await connection.execute(text("DROP TABLE items"))

    def in_transaction(connection: Connection) -> bool:
        connection.execute(text("SELECT 1"))
        raw: Any = connection.connection.dbapi_connection
        if db.is_sqlite:
            return bool(raw.driver_connection.in_transaction)
        return bool(raw.driver_connection.is_in_transaction())

    assert await db.read(in_transaction) is False


async def test_a_read_on_sqlite_is_one_trip(tmp_path: Path, trips: list[str]) -> None:
    """On SQLite a one-statement read is one call into aiosqlite's thread: no ROLLBACK
    or other call when the connection goes back to the pool."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    try:
        await db.read(lambda connection: connection.execute(text("SELECT 1")).all())
        trips.clear()  # the connection is made: only the read's own calls count
        await db.read(lambda connection: connection.execute(text("SELECT 1")).all())
        assert trips == ["_run"]
    finally:
        await db.close()
