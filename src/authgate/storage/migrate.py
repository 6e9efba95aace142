"""Applying Alembic migrations from inside authgate (server start-up, ``authgate migrate``).

A serving process only needs to know which revision its schema must be at and which it
is at; it reads both without importing Alembic (which, with its templates and their
syntax highlighter, costs ~11 MB of memory in every worker and ~60 ms at start). Alembic
is imported when a migration is applied.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

_SCRIPT_LOCATION = Path(__file__).with_name("migrations")
# Alembic's default, which env.py keeps.
VERSION_TABLE = "alembic_version"
# Nodes starting together must not migrate twice: PostgreSQL migrations run under this
# session-level advisory lock (an arbitrary constant shared by all authgate nodes).
_MIGRATION_LOCK_ID = 0x61757468676174  # "authgat"

Action = Callable[["Config"], None]
_READ_VERSION = text("SELECT version_num FROM alembic_version")


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    return config


@functools.cache  # the scripts ship with this version: read once
def shipped_revisions() -> tuple[str, ...]:
    """Every revision this version ships, oldest first.

    Read from the migration files' own ``revision`` and ``down_revision`` constants
    (parsed, not imported: a migration imports Alembic). authgate's migrations are one
    line, no branches and no merges; anything else is refused here, and
    ``tests/storage/test_migrations.py`` checks this reading against Alembic's."""
    parents: dict[str, str | None] = {}
    for path in sorted((_SCRIPT_LOCATION / "versions").glob("*.py")):
        if path.name != "__init__.py":
            revision, parent = _revision_of(path)
            parents[revision] = parent
    children: dict[str | None, str] = {}
    for revision, parent in parents.items():
        if parent in children:
            raise RuntimeError(f"migrations branch after {parent}: {children[parent]}, {revision}")
        children[parent] = revision
    line: list[str] = []
    revision_or_none = children.get(None)
    while revision_or_none is not None:
        line.append(revision_or_none)
        revision_or_none = children.get(revision_or_none)
    if not line or len(line) != len(parents):
        raise RuntimeError("the migrations do not form one line from the first")
    return tuple(line)


def _revision_of(path: Path) -> tuple[str, str | None]:
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target: ast.expr
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
            values[target.id] = ast.literal_eval(value)
    revision, parent = values.get("revision"), values.get("down_revision")
    if not isinstance(revision, str) or not (parent is None or isinstance(parent, str)):
        raise RuntimeError(f"{path.name}: no single revision and down_revision")
    return revision, parent


def head_revision() -> str:
    return shipped_revisions()[-1]


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this version of authgate ships."""
    return frozenset(shipped_revisions())


def schema_is_current(revision: str | None) -> bool:
    """Whether this version can serve on a schema at ``revision``: the head, or a newer
    one (a rolling upgrade where a newer node migrated first; migrations only add)."""
    return revision == head_revision() or schema_is_newer(revision)


def schema_is_newer(revision: str | None) -> bool:
    """Whether ``revision`` is one a newer version of authgate made (none of ours)."""
    return revision is not None and revision not in known_revisions()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database's schema is at (None: never migrated)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_stored_revision)


def _stored_revision(connection: Connection) -> str | None:
    """What Alembic's version table holds, read as Alembic's ``MigrationContext`` reads
    it (no table or no row: None; several rows, a branched schema: refused)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    revisions = list(connection.execute(_READ_VERSION).scalars())
    if len(revisions) > 1:
        raise RuntimeError(f"{VERSION_TABLE} holds several revisions: {sorted(revisions)}")
    return str(revisions[0]) if revisions else None


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    from alembic import command

    await _run(engine, lambda config: command.upgrade(config, revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    from alembic import command

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
