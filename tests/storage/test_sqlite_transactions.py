"""SQLite under aiosqlite: a COMMIT or ROLLBACK with no transaction open is not sent to
aiosqlite's thread (sqlite3 would do nothing with it), and everything else is: an open
transaction is still rolled back when its connection goes back to the pool, and
committed when asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text

from authgate.storage.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    async with database.begin() as connection:
        await connection.execute(text("CREATE TABLE items (name TEXT)"))
    yield database
    await database.close()


@pytest.fixture
def driver_calls(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The COMMITs and ROLLBACKs that reach aiosqlite."""
    calls: list[str] = []
    for name in ("commit", "rollback"):
        original = getattr(aiosqlite.Connection, name)

        async def counted(self: Any, _original: Any = original, _name: str = name) -> None:
            calls.append(_name)
            await _original(self)

        monkeypatch.setattr(aiosqlite.Connection, name, counted)
    return calls


async def count(db: Database) -> int:
    async with db.connection() as connection:
        return int((await connection.execute(text("SELECT count(*) FROM items"))).scalar_one())


async def test_reads_send_no_rollback(db: Database, driver_calls: list[str]) -> None:
    async with db.session() as session:
        await session.execute(text("SELECT name FROM items"))
    async with db.connection() as connection:
        await connection.execute(text("SELECT name FROM items"))
    assert driver_calls == []


async def test_a_write_is_committed_once(db: Database, driver_calls: list[str]) -> None:
    async with db.begin() as connection:
        await connection.execute(text("INSERT INTO items VALUES ('one')"))
    assert driver_calls == ["commit"]
    assert await count(db) == 1


async def test_an_uncommitted_write_is_rolled_back_when_the_session_closes(
    db: Database, driver_calls: list[str]
) -> None:
    async with db.session() as session:
        await session.execute(text("INSERT INTO items VALUES ('never')"))
    assert driver_calls == ["rollback"]
    assert await count(db) == 0
    # The write lock went with the transaction: another writer gets in at once.
    async with db.begin() as connection:
        await connection.execute(text("INSERT INTO items VALUES ('two')"))
    assert await count(db) == 1


async def insert_then_fail(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO items VALUES ('lost')"))
        raise RuntimeError("fails inside the transaction")


async def test_a_failed_transaction_is_rolled_back(db: Database, driver_calls: list[str]) -> None:
    with pytest.raises(RuntimeError):
        await insert_then_fail(db)
    assert driver_calls == ["rollback"]
    assert await count(db) == 0
