"""A new SQLite database, and the ``-wal`` and ``-shm`` files SQLite gives the same mode,
are readable by their owner only, whatever the umask (attack review: 0644 left the
password hashes and the audit trail to the data directory's mode alone)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from authgate.storage.db import Database


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def names_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


@pytest.mark.usefixtures("open_umask")
async def test_a_new_database_and_its_wal_are_private(tmp_path: Path) -> None:
    path = tmp_path / "authgate.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with database.begin() as connection:
            await connection.execute(text("CREATE TABLE items (name TEXT)"))
            await connection.execute(text("INSERT INTO items VALUES ('x')"))
        created = names_in(tmp_path)
        assert created == ["authgate.db", "authgate.db-shm", "authgate.db-wal"]
        assert {name: mode(tmp_path / name) for name in created} == dict.fromkeys(created, 0o600)
    finally:
        await database.close()


@pytest.mark.usefixtures("open_umask")
async def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    """The operator's choice (or an older file) is not changed behind their back."""
    path = tmp_path / "authgate.db"
    path.touch(mode=0o640)
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with database.begin() as connection:
            await connection.execute(text("CREATE TABLE items (name TEXT)"))
    finally:
        await database.close()
    assert mode(path) == 0o640


async def test_an_in_memory_database_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = Database("sqlite+aiosqlite:///:memory:")
    try:
        async with database.begin() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await database.close()
    assert names_in(tmp_path) == []
