"""Write locks for transactions that read, check and then write (a rule that must still
hold when the write commits), the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import ColumnElement, select, text
from sqlalchemy.ext.asyncio import AsyncSession

Row = TypeVar("Row")

# Changes nothing, but SQLite takes its write lock for any UPDATE, even of no row.
_SQLITE_WRITE_LOCK = text("UPDATE users SET activated = activated WHERE 0 = 1")


async def take_sqlite_write_lock(session: AsyncSession) -> None:
    """On SQLite, take the database's write lock now, ahead of the reads a
    ``SELECT ... FOR UPDATE`` makes on PostgreSQL (where this does nothing).

    SQLite has no row locks and its driver begins a transaction only at the first
    write: without this, another process (a worker) could commit between the reads a
    transaction checks and its own write. With it, writers queue (``busy_timeout``) and
    each one's reads see every commit before it."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(_SQLITE_WRITE_LOCK)


async def lock_row(
    session: AsyncSession, model: type[Row], condition: ColumnElement[bool]
) -> Row | None:
    """The row of ``model`` matching ``condition`` read anew (not the copy the session
    may hold), locked until the transaction ends (None if there is none): a concurrent
    transaction that locks it too, or writes it, waits for this one, then sees what it
    committed."""
    await take_sqlite_write_lock(session)
    query = (
        select(model).where(condition).with_for_update().execution_options(populate_existing=True)
    )
    return await session.scalar(query)
