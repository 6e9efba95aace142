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
# Revisions a development build shipped under another id: a schema stamped with the
# old id is restamped with the new one before migrating (5926e0e named 0014 "0012",
# chained after 0013, for two minutes).
RENAMED_REVISIONS = {"0012_key_public_ids": "0014_key_public_ids"}


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
    """Whether ``revision`` is one a newer version of authgate made: none of ours (nor
    one of ours under an earlier name), numbered after our head. An unknown revision
    numbered at or before it is no newer schema: :func:`unknown_revision` says so."""
    if revision is None or revision in known_revisions() or revision in RENAMED_REVISIONS:
        return False
    number, head = _number_of(revision), _number_of(head_revision())
    return number is not None and head is not None and number > head


def unknown_revision(revision: str | None) -> bool:
    """Whether the schema is at a revision this version neither ships, nor knows under an
    earlier name, nor can take for a newer version's: a development build's, or another
    application's. Nothing can be migrated from it (refused with this explanation)."""
    return (
        revision is not None
        and revision not in known_revisions()
        and revision not in RENAMED_REVISIONS
        and not schema_is_newer(revision)
    )


def unknown_revision_message(revision: str) -> str:
    return (
        f"the database schema is at revision {revision}, which this version of authgate "
        f"does not know and which is not newer than its own ({head_revision()}): a "
        "development build's or another application's schema; restore the database "
        "from a backup made by a released version"
    )


def _number_of(revision: str) -> int | None:
    """The ``NNNN`` of an ``NNNN_name`` revision (authgate numbers its migrations)."""
    number, _, _ = revision.partition("_")
    return int(number) if number.isdigit() else None


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
    broken_before: set[tuple[object, ...]] = set()

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)
        if sqlite:
            _refuse_new_broken_references(connection, broken_before)

    async with engine.connect() as connection:
        locking = connection.dialect.name == "postgresql"
        sqlite = connection.dialect.name == "sqlite"
        if locking:
            await connection.execute(
                text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
            await connection.commit()
        try:
            if sqlite:
                # SQLite alters a table by copying it and dropping the old one (Alembic's
                # batch mode). With foreign keys enforced, as authgate's connections have
                # them (storage/db.py), that DROP first deletes every row, and ON DELETE
                # CASCADE took every API key, second factor, recovery code and v12
                # session with the users table (the upgrade review: 0010 and 0011
                # rebuild it, and 0016's downgrade). Off for the migration (set outside
                # any transaction, the only place the pragma works), on again after
                # (``finally``: the pooled connection goes back with them on, whatever
                # happened); what the migration leaves is checked instead.
                await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await connection.commit()
                broken_before.update(await connection.run_sync(_broken_references))
                await connection.commit()
            await connection.run_sync(_restamp_renamed)
            await connection.commit()
            await connection.run_sync(run)
            await connection.commit()
        finally:
            if sqlite:
                await connection.rollback()  # (nothing left after a commit)
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()
            if locking:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
                await connection.commit()


def _restamp_renamed(connection: Connection) -> None:
    """Give a schema stamped with a revision's earlier id (``RENAMED_REVISIONS``) its
    current one, so Alembic finds it; refuse a revision nobody can migrate from."""
    revision = _stored_revision(connection)
    if revision in RENAMED_REVISIONS:
        connection.execute(
            text("UPDATE alembic_version SET version_num = :new WHERE version_num = :old"),
            {"new": RENAMED_REVISIONS[revision], "old": revision},
        )
    elif unknown_revision(revision):
        raise UnknownRevision(unknown_revision_message(str(revision)))


class UnknownRevision(RuntimeError):
    """The schema is at a revision this version cannot migrate from."""


def _broken_references(connection: Connection) -> set[tuple[object, ...]]:
    """SQLite's ``foreign_key_check``: (table, rowid, parent table, constraint) of each
    row that points at a row that is not there."""
    return {tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check")}


def _refuse_new_broken_references(connection: Connection, before: set[tuple[object, ...]]) -> None:
    """Raise if the migration left a row pointing at a missing row, one that SQLite's
    foreign keys would have refused had they been on (rows that pointed nowhere before
    it are not its doing, and do not stop it)."""
    broken = _broken_references(connection) - before
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise RuntimeError(
            f"the migration left {len(broken)} rows pointing at missing rows in "
            f"{', '.join(tables)}; restore the database from its backup and report this"
        )
