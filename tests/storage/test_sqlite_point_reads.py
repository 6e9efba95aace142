"""A login's point reads (``Database.point_rows``): on a SQLite file without SQLAlchemy's
execution layer (``storage/sqlite_reads``), with the same rows, values and types as
SQLAlchemy gives, the same errors, and never a snapshot held; elsewhere through
SQLAlchemy as before."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, exc, update
from sqlalchemy.engine import make_url

from authgate.storage import sqlite_reads
from authgate.storage.db import Database
from authgate.storage.errors import is_unavailable
from authgate.storage.models import User
from authgate.storage.repositories import LOGIN_ROWS
from authgate.storage.sqlite_reads import SqlitePointReads
from authgate.storage.throttle_store import (
    DatabaseThrottleStore,
    _reading_for_login,
    _subject_parameters,
)
from tests.conftest import USER_PASSWORD, Harness

SUBJECTS = ("ip:198.51.100.7", "pair:alice|198.51.100.7", "known:x", "attack:alice", "turn:x")


async def through_sqlalchemy(db: Database, statement: Any, parameters: dict[str, Any]) -> Any:
    def rows(connection: Connection) -> Any:
        return connection.execute(statement, parameters).all()

    return await db.read(rows)


async def user_row(db: Database, identifier: str) -> Any:
    row = await db.login_row(identifier)
    assert row is not None
    return row


def typed(rows: Any) -> list[list[tuple[str, Any, type]]]:
    return [
        [(name, value, type(value)) for name, value in zip(row._fields, row, strict=True)]
        for row in rows
    ]


async def test_a_users_row_is_what_sqlalchemy_reads(harness: Harness) -> None:
    """Every column a login reads, with values of every kind set (dates, booleans, a
    second factor, a public id): the same names, values and Python types as a
    SQLAlchemy read of the same statement, on either database."""
    await harness.create_user("alice", USER_PASSWORD)
    db = harness.services.db
    async with db.begin() as connection:
        await connection.execute(
            update(User)
            .where(User.login == "alice")
            .values(
                first_name="Alice",
                image_url="https://example.com/a.png",
                password_changed_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
                tokens_valid_after=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
                second_factor="TOTP",
                activated=False,
            )
        )
    parameters = {"identifier": "alice"}
    light = await db.point_rows(LOGIN_ROWS, parameters)
    assert typed(light) == typed(await through_sqlalchemy(db, LOGIN_ROWS, parameters))
    assert light[0].second_factor == "TOTP"
    assert light[0].activated is False
    assert light[0].tokens_valid_after == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert (await user_row(db, "alice")).login == "alice"
    assert await db.login_row("nobody") is None
    assert await db.login_row("nul\x00byte") is None  # no user can have it: not read


async def test_the_throttle_reading_is_what_sqlalchemy_reads(harness: Harness) -> None:
    """A login's throttle read (blocks with their dates, counter windows) alike."""
    db = harness.services.db
    store = DatabaseThrottleStore(db)
    now = harness.clock().timestamp()
    await store.block(SUBJECTS[0], until=now + 60, strikes=2, now=now)
    await store.add_failure(SUBJECTS[1], window=300, now=now)
    statement = _reading_for_login(len(SUBJECTS))
    parameters = {**_subject_parameters(SUBJECTS), "counted": SUBJECTS[1], "tallied": "x"}
    light = await db.point_rows(statement, parameters)
    direct = await through_sqlalchemy(db, statement, parameters)
    assert sorted(typed(light)) == sorted(typed(direct))
    assert len(light) == 2


async def test_a_read_sees_each_commit_and_holds_no_snapshot(harness: Harness) -> None:
    """Each read runs in autocommit: a change committed after one read is seen by the
    next, as the second read of a login after its hash must see a reset."""
    await harness.create_user("alice", USER_PASSWORD)
    db = harness.services.db
    for login_name in ("Alice", "Alicia"):
        async with db.begin() as connection:
            await connection.execute(
                update(User).where(User.login == "alice").values(first_name=login_name)
            )
        assert (await user_row(db, "alice")).first_name == login_name


@pytest.fixture
async def sqlite_db(harness: Harness) -> Database:
    db = harness.services.db
    if not db.is_sqlite:
        pytest.skip("SQLite's point reads")
    await harness.create_user("alice", USER_PASSWORD)
    return db


async def test_a_failed_read_is_sqlalchemys_error_and_the_next_reads_anew(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A locked or unreadable file: SQLAlchemy's OperationalError (503, as any read the
    database cannot serve), no parameter in its text; the next read opens a new
    connection and answers."""
    reads = sqlite_db._point_reads
    assert reads is not None
    await sqlite_db.login_row("alice")
    first = reads._connection

    def locked(*_: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(sqlite_reads, "_fetch", locked)
    with pytest.raises(exc.OperationalError) as failure:
        await sqlite_db.login_row("alice")
    assert is_unavailable(failure.value)
    assert "alice" not in str(failure.value)
    monkeypatch.undo()
    assert (await user_row(sqlite_db, "alice")).login == "alice"
    assert reads._connection is not first


async def test_the_connection_is_read_only_and_closed_with_the_database(
    sqlite_db: Database,
) -> None:
    """``query_only``: the dedicated connection cannot write; ``Database.close`` closes
    it (its thread ends)."""
    reads = sqlite_db._point_reads
    assert reads is not None
    await sqlite_db.login_row("alice")
    connection = reads._connection
    assert connection is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await connection.execute("DELETE FROM users")
    thread: threading.Thread = connection._thread
    await reads.close()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert reads._connection is None


def test_only_a_database_file_is_read_directly() -> None:
    """An in-memory database (each connection its own) and URI filenames use the engine."""
    dialect = Database("sqlite+aiosqlite:///:memory:").engine.sync_engine.dialect
    for url in ("sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"):
        assert SqlitePointReads.for_url(make_url(url), dialect) is None
    uri = "sqlite+aiosqlite:///file:data.db?mode=ro&uri=true"
    assert SqlitePointReads.for_url(make_url(uri), dialect) is None
    assert SqlitePointReads.for_url(make_url("sqlite+aiosqlite:////tmp/a.db"), dialect)


async def test_a_statement_sqlalchemy_renders_at_each_execution_is_read_there(
    sqlite_db: Database,
) -> None:
    """An empty IN (no subject to look up) is rendered by SQLAlchemy at execution: such
    a statement is read through SQLAlchemy, with the same answer."""
    reads = sqlite_db._point_reads
    assert reads is not None
    statement = _reading_for_login(0)
    parameters = {"counted": "pair:x", "tallied": "x"}
    assert await reads.rows(statement, parameters) is None
    assert list(await sqlite_db.point_rows(statement, parameters)) == []


async def test_a_closed_connection_is_unavailable_then_opened_again(sqlite_db: Database) -> None:
    """Closed under a read (the database closing at shutdown, its thread gone): the read
    is SQLAlchemy's OperationalError (503), not aiosqlite's ValueError (500); the next
    read opens a new connection."""
    reads = sqlite_db._point_reads
    assert reads is not None
    await sqlite_db.login_row("alice")
    connection = reads._connection
    assert connection is not None
    await connection.close()
    with pytest.raises(exc.OperationalError):
        await sqlite_db.login_row("alice")
    assert (await user_row(sqlite_db, "alice")).login == "alice"


async def test_a_missing_file_is_never_created(tmp_path: Path) -> None:
    """The dedicated connection opens an existing file only: a read before the database
    exists is an error, and leaves no empty database (with the umask's mode) behind."""
    path = tmp_path / "not there.db"
    reads = SqlitePointReads.for_url(
        make_url(f"sqlite+aiosqlite:///{path}"),
        Database("sqlite+aiosqlite:///:memory:").engine.sync_engine.dialect,
    )
    assert reads is not None
    with pytest.raises(exc.OperationalError):
        await reads.rows(LOGIN_ROWS, {"identifier": "alice"})
    assert not path.exists()
    await reads.close()
