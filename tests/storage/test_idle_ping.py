"""PostgreSQL connections are pinged before use only after being idle: a busy pool pays
no extra round trip per checkout, and a connection that died while idle (a database
restart) is replaced before a request sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from authgate.storage import db as db_module
from authgate.storage.db import Database
from tests.conftest import EmptyPostgres

# PostgreSQL only: SQLite's connections are files, never pinged.
pytestmark = pytest.mark.postgres


@pytest.fixture
async def postgres(empty_postgres: EmptyPostgres) -> AsyncIterator[Database]:
    database = Database(empty_postgres(), connections=1)
    yield database
    await database.close()


def count_pings(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    dialect: Any = database.engine.sync_engine.dialect
    real = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(real(dbapi_connection))

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


async def backend_pid(database: Database) -> int:
    async with database.connection() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_used_moments_ago_is_not_pinged(
    postgres: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 3600.0)
    pings = count_pings(postgres, monkeypatch)
    first = await backend_pid(postgres)
    for _ in range(5):
        assert await backend_pid(postgres) == first
    assert pings == []


async def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(
    postgres: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's one connection is killed by the server while idle (as a restart
    would); the next checkout pings it, finds it dead and opens a new one: the read
    succeeds, on another backend."""
    pings = count_pings(postgres, monkeypatch)
    dead = await backend_pid(postgres)
    other = Database(postgres.engine.url.render_as_string(hide_password=False))
    try:
        async with other.begin() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
    finally:
        await other.close()
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # every connection is idle

    replaced = await backend_pid(postgres)

    assert pings, "the idle connection was not pinged"
    assert replaced != dead
