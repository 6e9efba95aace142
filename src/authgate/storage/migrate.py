"""Applying Alembic migrations from inside authgate (server start-up, ``authgate migrate``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

_SCRIPT_LOCATION = Path(__file__).with_name("migrations")
# Nodes starting together must not migrate twice: PostgreSQL migrations run under this
# session-level advisory lock (an arbitrary constant shared by all authgate nodes).
_MIGRATION_LOCK_ID = 0x61757468676174  # "authgat"

Action = Callable[[Config], None]


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    return config


@functools.cache  # the scripts ship with this version: read once
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this version of authgate ships."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions())


def schema_is_current(revision: str | None) -> bool:
    """Whether this version can serve on a schema at ``revision``: the head, or a newer
    one (a rolling upgrade where a newer node migrated first; migrations only add)."""
    return revision == head_revision() or (
        revision is not None and revision not in known_revisions()
    )


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, lambda config: command.downgrade(config, revision))


async def _run(engine: AsyncEngine, action: Action) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)

    async with engine.connect() as connection:
        locking = connection.dialect.name == "postgresql"
        if locking:
            await connection.execute(
                text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
            await connection.commit()
        try:
            await connection.run_sync(run)
            await connection.commit()
        finally:
            if locking:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
                await connection.commit()
