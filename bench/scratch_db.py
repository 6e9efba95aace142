"""A PostgreSQL database of a benchmark's own: created and migrated on entry, dropped on
exit (also after an error, Ctrl-C or SIGTERM), so benchmarks never touch shared data.

The server is ``AUTHGATE_BENCH_DATABASE_URL`` (default: PostgreSQL on loopback, user
postgres); its database part is ignored, a new ``authgate_bench_<name>_...`` is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from authgate.storage import migrate

DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def server_url() -> URL:
    return make_url(os.environ.get("AUTHGATE_BENCH_DATABASE_URL", DEFAULT_SERVER))


@contextlib.contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """The SQLAlchemy URL of a new, migrated database, dropped when the block ends."""
    server = server_url()
    database = f"authgate_bench_{name}_{os.getpid()}_{secrets.token_hex(3)}"
    url = server.set(database=database).render_as_string(hide_password=False)
    try:
        asyncio.run(_create(server, database, url))
        yield url
    finally:
        asyncio.run(_drop(server, database))


def asyncpg_dsn(url: str) -> str:
    """The same database as a plain ``postgresql://`` DSN for asyncpg itself."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _create(server: URL, database: str, url: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        await engine.dispose()
    migrated = create_async_engine(url)
    try:
        await migrate.upgrade(migrated)
    finally:
        await migrated.dispose()


async def _drop(server: URL, database: str) -> None:
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        await engine.dispose()
