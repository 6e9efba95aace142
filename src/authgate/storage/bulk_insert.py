"""Fast multi-row INSERTs for append-only tables (usage log, audit trail).

The ORM inserts row by row to learn each new id (measured 214 us a row on SQLite).
Core's executemany skips that; on SQLite the tuples go to the driver directly, skipping
also Core's per-value type processing (22 -> 12 us a row). Datetimes are written as
SQLAlchemy's SQLite dialect stores ``UTCDateTime``: naive UTC text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.models import Base


async def insert_rows(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """INSERT ``rows`` (tuples in ``columns`` order) into ``table`` in one executemany."""
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name != "sqlite":
        values = [dict(zip(columns, row, strict=True)) for row in rows]
        await connection.execute(insert(Base.metadata.tables[table]), values)
        return
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - names from our models
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    await connection.exec_driver_sql(
        statement,
        [tuple(_sqlite(value) for value in row) for row in rows],
    )


def _sqlite(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
