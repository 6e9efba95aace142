"""Migrations: apply, roll back and re-apply on every backend; models match the schema."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from authgate.container import build_services
from authgate.exceptions import ConfigurationError
from authgate.runtime import ensure_schema
from authgate.storage import migrate
from authgate.storage.db import Database
from authgate.storage.models import (
    ApiKey,
    Base,
    OneTimeCode,
    RefreshToken,
    SecondFactor,
    Session,
    User,
)
from tests.conftest import SqliteTemplates, test_settings


async def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    """head → base → head works and leaves every table in place."""
    engine = create_async_engine(database_url)
    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        await migrate.downgrade(engine, "base")
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert tables <= {"alembic_version"}
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert set(Base.metadata.tables) <= tables
    finally:
        await engine.dispose()


async def test_models_match_the_migrated_schema(database_url: str) -> None:
    """Autogenerate finds nothing to do: no model change lacks a migration."""
    engine = create_async_engine(database_url)
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
        assert differences == []
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent(database_url: str) -> None:
    """Running the migrations twice changes nothing (authgate migrate is safe to repeat)."""
    engine = create_async_engine(database_url)
    try:
        await migrate.upgrade(engine)
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


async def test_v12_migration_gives_existing_users_distinct_public_ids(database_url: str) -> None:
    """0011_v12_sessions backfills a UUID public id for every user made before it."""
    engine = create_async_engine(database_url)
    try:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "0009_usage_rollups")
        async with engine.begin() as connection:
            for login in ("alice", "bob"):
                await connection.execute(
                    text(
                        "INSERT INTO users (login, email, lang_key, activated, authorities,"
                        " password_hash, created_at, updated_at)"
                        " VALUES (:login, :email, 'en', true, 'ROLE_USER', 'x', :now, :now)"
                    ),
                    {"login": login, "email": f"{login}@example.com", "now": datetime.now(UTC)},
                )
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            ids = (await connection.execute(text("SELECT public_id FROM users"))).scalars().all()
        assert len(ids) == 2
        assert len(set(ids)) == 2
        assert all(str(uuid.UUID(value)) == value for value in ids)
    finally:
        await engine.dispose()


async def test_key_ids_migration_backfills_uuids_keeping_utmstack_ones(database_url: str) -> None:
    """0014_key_public_ids gives every key made before it a UUID public id; a key
    imported from UTMStack gets UTMStack's own UUID (``legacy_id``), so the id a
    UTMStack client stored keeps naming it."""
    engine = create_async_engine(database_url)
    utmstack_id = "0b9c4c39-5f1e-4d6a-8f57-2b1f6a7c9d10"
    try:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "0011_v12_sessions")
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (login, email, lang_key, activated, authorities,"
                    " password_hash, created_at, updated_at, public_id)"
                    " VALUES ('alice', 'alice@example.com', 'en', true, 'ROLE_USER', 'x',"
                    " :now, :now, :public_id)"
                ),
                {"now": now, "public_id": str(uuid.uuid4())},
            )
            owner = (await connection.execute(text("SELECT id FROM users"))).scalar_one()
            for name, legacy_id in (("own", None), ("imported", utmstack_id), ("own-2", None)):
                await connection.execute(
                    text(
                        "INSERT INTO api_keys (user_id, name, key_id, key_tail, secret_hash,"
                        " allowed_networks, scopes, created_at, generated_at, updated_at,"
                        " legacy_id) VALUES (:owner, :name, :name, 'abcd', 'x', '', 'read',"
                        " :now, :now, :now, :legacy_id)"
                    ),
                    {"owner": owner, "name": name, "now": now, "legacy_id": legacy_id},
                )
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT name, public_id FROM api_keys"))).all()
        ids: dict[str, str] = dict(rows)
        assert ids["imported"] == utmstack_id
        assert len(set(ids.values())) == 3
        assert all(str(uuid.UUID(value)) == value for value in ids.values())
    finally:
        await engine.dispose()


async def test_legacy_imports_migration_remembers_what_earlier_imports_left(
    database_url: str,
) -> None:
    """0015_legacy_imports records the UTMStack ids of the users and keys already
    imported, so deleting one of them from then on is not undone by the next import."""
    engine = create_async_engine(database_url)
    utmstack_id = "0b9c4c39-5f1e-4d6a-8f57-2b1f6a7c9d10"
    try:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "0014_key_public_ids")
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            for login, legacy_id in (("alice", "2"), ("own", None)):
                await connection.execute(
                    text(
                        "INSERT INTO users (login, email, lang_key, activated, authorities,"
                        " password_hash, created_at, updated_at, public_id, legacy_id)"
                        " VALUES (:login, :email, 'en', true, 'ROLE_USER', 'x', :now, :now,"
                        " :public_id, :legacy_id)"
                    ),
                    {
                        "login": login,
                        "email": f"{login}@example.com",
                        "now": now,
                        "public_id": str(uuid.uuid4()),
                        "legacy_id": legacy_id,
                    },
                )
            owner = (
                await connection.execute(text("SELECT id FROM users WHERE login = 'alice'"))
            ).scalar_one()
            await connection.execute(
                text(
                    "INSERT INTO api_keys (user_id, name, key_id, key_tail, secret_hash,"
                    " allowed_networks, scopes, created_at, generated_at, updated_at,"
                    " legacy_id, public_id) VALUES (:owner, 'k', 'k', 'abcd', 'x', '', 'read',"
                    " :now, :now, :now, :legacy_id, :legacy_id)"
                ),
                {"owner": owner, "now": now, "legacy_id": utmstack_id},
            )
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text("SELECT kind, legacy_id, imported FROM legacy_imports")
                )
            ).all()
        assert sorted(tuple(row) for row in rows) == [
            ("key", utmstack_id, None),
            ("user", "2", None),
        ]
    finally:
        await engine.dispose()


async def test_adopted_secrets_migration_up_and_down(database_url: str) -> None:
    """0018_adopted_service_secrets adds the lookup hashes (unique for the current
    secret); going down revokes the live adopted credentials, which the older version
    could not find, and leaves generated ones alone."""
    engine = create_async_engine(database_url)
    insert = text(
        "INSERT INTO service_credentials (name, credential_id, secret_hash, endpoints,"
        " created_at, secret_lookup) VALUES (:name, :id, :hash, 'api-keys.authenticate',"
        " :now, :lookup)"
    )
    try:
        await migrate.upgrade(engine)
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            for name, lookup in (("adopted", "a" * 64), ("generated", None)):
                await connection.execute(
                    insert,
                    {"name": name, "id": name[:12], "hash": "a" * 64, "now": now, "lookup": lookup},
                )
        with pytest.raises(IntegrityError):  # one adopted secret, one credential
            async with engine.begin() as connection:
                await connection.execute(
                    insert,
                    {
                        "name": "twin",
                        "id": "twin",
                        "hash": "a" * 64,
                        "now": now,
                        "lookup": "a" * 64,
                    },
                )
        await migrate.downgrade(engine, "0017_cluster_tfa_key")
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("service_credentials")}
            )
            rows = (
                await connection.execute(
                    text("SELECT name, revoked_at IS NOT NULL FROM service_credentials")
                )
            ).all()
        assert "secret_lookup" not in columns
        assert "previous_secret_lookup" not in columns
        assert sorted((name, bool(revoked)) for name, revoked in rows) == [
            ("adopted", True),
            ("generated", False),
        ]
        if database_url.startswith("sqlite"):
            # The table SQLite recreated keeps AUTOINCREMENT (diff review: it was lost).
            async with engine.connect() as connection:
                created = await connection.scalar(
                    text("SELECT sql FROM sqlite_master WHERE name = 'service_credentials'")
                )
            assert "AUTOINCREMENT" in created
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
    finally:
        await engine.dispose()


def test_the_shipped_revisions_are_alembics() -> None:
    """The revisions a serving process reads from the migration files without Alembic are
    Alembic's own, in Alembic's order, with the same head."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    alembic_line = [script.revision for script in scripts.walk_revisions()][::-1]
    assert list(migrate.shipped_revisions()) == alembic_line
    assert migrate.head_revision() == scripts.get_current_head()


async def test_the_current_revision_is_read_as_alembic_reads_it(database_url: str) -> None:
    """At the head, at an earlier revision and on an empty schema."""
    engine = create_async_engine(database_url)

    async def alembics() -> str | None:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == await alembics() == migrate.head_revision()
        await migrate.downgrade(engine, "0009_usage_rollups")
        assert await migrate.current_revision(engine) == await alembics() == "0009_usage_rollups"
        await migrate.downgrade(engine, "base")
        assert await migrate.current_revision(engine) is None
        assert await alembics() is None
    finally:
        await migrate.upgrade(engine)
        await engine.dispose()


def test_a_start_on_a_current_schema_does_not_import_alembic(
    tmp_path: Path, sqlite_templates: SqliteTemplates
) -> None:
    """Alembic (and the templates and highlighter it brings) is loaded only to migrate:
    every worker of a server on a migrated database is ~11 MB smaller without it."""
    sqlite_templates.copy_to(tmp_path / "authgate.db")
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from authgate.app import create_app\n"
        "from authgate.settings import Settings\n"
        "async def main():\n"
        "    app = create_app(Settings(data_dir=Path(sys.argv[1])))\n"
        "    async with app.router.lifespan_context(app):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'alembic'))\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


async def _child_rows(db: Database, tables: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with db.engine.connect() as connection:
        for table in tables:
            query = f"SELECT count(*) FROM {table}"  # noqa: S608 - the test's own names
            counts[table] = (await connection.exec_driver_sql(query)).scalar_one()
    return counts


async def test_migrations_through_the_servers_engine_keep_the_users_child_rows(
    database_url: str,
) -> None:
    """The upgrade review: on SQLite, authgate's own connections enforce foreign keys,
    and a migration that rebuilds ``users`` (batch mode: copy, DROP, rename; 0010 and
    0011 up, 0016 down) deleted through ON DELETE CASCADE every API key, second factor,
    recovery code and v12 session. ``authgate serve`` and ``authgate migrate`` migrate
    on that engine (``Database``), so this test does too; the other tests' plain engines
    have foreign keys off and never saw it."""
    db = Database(database_url)
    now = datetime.now(UTC)
    try:
        await migrate.upgrade(db.engine)
        async with db.transaction() as session:
            user = User(
                login="alice", email="alice@example.com", authorities="ROLE_USER",
                password_hash="x", created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(user)
            await session.flush()
            session.add_all(
                [
                    ApiKey(
                        user_id=user.id, name="deploy", key_id="k" * 12, key_tail="abcd",
                        secret_hash="0" * 64, scopes="read", created_at=now,
                        generated_at=now, updated_at=now,
                    ),
                    SecondFactor(user_id=user.id, totp_secret="sealed", updated_at=now),
                    OneTimeCode(
                        user_id=user.id, purpose="recovery", code_hash="1" * 64, created_at=now
                    ),
                    Session(
                        id=str(uuid.uuid4()), user_id=user.id, created_at=now,
                        last_used_at=now, expires_at=now,
                    ),
                ]
            )  # fmt: skip
            await session.flush()
            family = (await session.execute(text("SELECT id FROM sessions"))).scalar_one()
            session.add(RefreshToken(token_hash="2" * 64, session_id=family, created_at=now))
        everything = ("api_keys", "second_factors", "one_time_codes", "sessions", "refresh_tokens")
        kept = dict.fromkeys(everything, 1)
        assert await _child_rows(db, everything) == kept
        # 0016's downgrade rebuilds users; then up again.
        await migrate.downgrade(db.engine, "0015_legacy_imports")
        assert await _child_rows(db, everything) == kept
        await migrate.upgrade(db.engine)
        assert await _child_rows(db, everything) == kept
        # Down below 0010 (sessions go with 0011, as they should) and up through 0010
        # and 0011, which rebuild users: an installation from before them upgrading.
        await migrate.downgrade(db.engine, "0009_usage_rollups")
        older = ("api_keys", "second_factors", "one_time_codes")
        assert await _child_rows(db, older) == dict.fromkeys(older, 1)
        await migrate.upgrade(db.engine)
        assert await _child_rows(db, older) == dict.fromkeys(older, 1)
        if db.is_sqlite:  # and the server's connections enforce foreign keys again
            async with db.engine.connect() as connection:
                assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await db.engine.dispose()


def test_a_migration_that_leaves_rows_pointing_nowhere_is_refused(tmp_path: Path) -> None:
    """With SQLite's foreign keys off during a migration, what they would have refused is
    checked after it: a row the migration left pointing at a missing row stops it; one
    that pointed nowhere before it did not come from it, and does not."""
    engine = create_engine(f"sqlite:///{tmp_path / 'references.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id))"
        )
        connection.exec_driver_sql("INSERT INTO child VALUES (1, 7)")  # there before
        before = migrate._broken_references(connection)
        assert len(before) == 1
        migrate._refuse_new_broken_references(connection, before)
        connection.exec_driver_sql("INSERT INTO child VALUES (2, 8)")  # "the migration's"
        with pytest.raises(RuntimeError, match="1 rows pointing at missing rows in child"):
            migrate._refuse_new_broken_references(connection, before)
    engine.dispose()


async def _stamp(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
        )


async def test_a_schema_stamped_with_a_renamed_revision_is_migrated(database_url: str) -> None:
    """The upgrade review: 5926e0e shipped 0014_key_public_ids as "0012_key_public_ids"
    for two minutes. A schema stamped so was taken for a newer version's ("nothing to
    do"), and the server then failed at start-up on a missing column. It is restamped
    with the current id and migrated to the head."""
    db = Database(database_url)
    try:
        await migrate.upgrade(db.engine)
        await migrate.downgrade(db.engine, "0014_key_public_ids")
        await _stamp(db.engine, "0012_key_public_ids")
        assert not migrate.schema_is_newer("0012_key_public_ids")
        assert not migrate.unknown_revision("0012_key_public_ids")
        await migrate.upgrade(db.engine)
        assert await migrate.current_revision(db.engine) == migrate.head_revision()
    finally:
        await db.engine.dispose()


async def test_an_unknown_revision_not_after_the_head_is_refused_with_a_reason(
    database_url: str, tmp_path: Path
) -> None:
    """Only a revision numbered after this version's head is a newer version's schema
    (served on: migrations only add). Another unknown one - a development build's,
    another application's - is refused, at start-up and by ``authgate migrate``, with
    what it is, instead of "nothing to do" and a crash on a missing column."""
    head_number = int(migrate.head_revision().partition("_")[0])
    assert migrate.schema_is_newer(f"{head_number + 1:04d}_from_a_newer_version")
    assert not migrate.unknown_revision(f"{head_number + 1:04d}_from_a_newer_version")
    for foreign in ("0013_something_else", "ae1027a6acf"):
        assert not migrate.schema_is_newer(foreign)
        assert migrate.unknown_revision(foreign)
    db = Database(database_url)
    settings = test_settings(tmp_path / "data", database_url=database_url)
    services = build_services(settings)
    try:
        await migrate.upgrade(db.engine)
        await _stamp(db.engine, "0013_something_else")
        with pytest.raises(migrate.UnknownRevision, match="does not know"):
            await migrate.upgrade(db.engine)
        assert await migrate.current_revision(db.engine) == "0013_something_else"
        with pytest.raises(ConfigurationError, match="0013_something_else, which this version"):
            await ensure_schema(services)
    finally:
        # The PostgreSQL database serves the next tests: stamped as it really is.
        await _stamp(db.engine, migrate.head_revision())
        await services.db.close()
        await db.engine.dispose()
