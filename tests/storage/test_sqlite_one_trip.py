"""SQLite under aiosqlite: each statement is one call into aiosqlite's thread
(``authgate.storage.sqlite_hops``), with the same results, row counts, errors and
transactions as SQLAlchemy's own cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from authgate.storage import sqlite_hops
from authgate.storage.db import Database
from authgate.storage.errors import Conflict


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    async with database.begin() as connection:
        await connection.execute(
            text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)")
        )
    yield database
    await database.close()


async def test_the_connections_have_one_trip_cursors(db: Database) -> None:
    async with db.connection() as connection:
        raw = await connection.get_raw_connection()
        assert isinstance(raw.dbapi_connection, sqlite_hops.OneTripConnection)


async def test_a_select_is_one_trip(db: Database, trips: list[str]) -> None:
    async with db.begin() as connection:
        await connection.execute(text("INSERT INTO items (name) VALUES ('a'), ('b')"))
    trips.clear()
    async with db.connection() as connection:
        result = await connection.execute(text("SELECT id, name FROM items ORDER BY id"))
        assert list(result.keys()) == ["id", "name"]
        assert [tuple(row) for row in result] == [(1, "a"), (2, "b")]
        empty = await connection.execute(text("SELECT name FROM items WHERE id = 99"))
        assert list(empty.keys()) == ["name"]
        assert empty.first() is None
    assert trips == ["_run", "_run"]


async def test_a_write_is_one_trip_and_its_commit_another(db: Database, trips: list[str]) -> None:
    async with db.begin() as connection:
        inserted = await connection.execute(text("INSERT INTO items (name) VALUES ('a')"))
        assert inserted.lastrowid == 1
        updated = await connection.execute(text("UPDATE items SET name = name || 'x'"))
        assert updated.rowcount == 1
    assert trips == ["_run", "_run", "commit"]


async def test_executemany_counts_its_rows(db: Database, trips: list[str]) -> None:
    async with db.begin() as connection:
        result = await connection.execute(
            text("INSERT INTO items (name) VALUES (:name)"), [{"name": "a"}, {"name": "b"}]
        )
        assert result.rowcount == 2
    assert trips == ["_run_many", "commit"]


async def insert_b_then_a(db: Database) -> None:
    async with db.begin() as connection:
        await connection.execute(text("INSERT INTO items (name) VALUES ('b')"))
        await connection.execute(text("INSERT INTO items (name) VALUES ('a')"))


async def test_a_broken_constraint_is_raised_and_rolled_back(db: Database) -> None:
    async with db.begin() as connection:
        await connection.execute(text("INSERT INTO items (name) VALUES ('a')"))
    with pytest.raises(Conflict):
        await insert_b_then_a(db)
    async with db.connection() as connection:
        names = (await connection.execute(text("SELECT name FROM items"))).scalars().all()
    assert names == ["a"]


async def test_bad_sql_is_sqlalchemys_error(db: Database) -> None:
    async with db.connection() as connection:
        with pytest.raises(exc.OperationalError):
            await connection.execute(text("SELECT nothing FROM nowhere"))


async def test_orm_sessions_and_streams_work(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO items (name) VALUES ('a'), ('b'), ('c')"))
    async with db.session() as session:
        assert await session.scalar(text("SELECT count(*) FROM items")) == 3
    async with db.connection() as connection:
        streamed = await connection.stream(text("SELECT name FROM items ORDER BY id"))
        assert [row[0] async for row in streamed] == ["a", "b", "c"]


def test_an_unknown_adapter_is_left_alone() -> None:
    class Other:
        pass

    other = Other()
    assert sqlite_hops.install(other) is False
    assert type(other) is Other
