"""Shared fixtures: a fake clock, settings in a temporary data dir, the app on SQLite and
(when ``AUTHGATE_TEST_DATABASE_URL`` is set) on PostgreSQL, and an HTTP client for it."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx2
import hypothesis
import pytest
import redis.asyncio
from fastapi import FastAPI
from sqlalchemy import TextClause, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from authgate.app import create_app
from authgate.container import Services
from authgate.services.user_fields import NewUser
from authgate.settings import Settings
from authgate.storage import migrate
from authgate.storage.db import Database
from authgate.storage.models import Base

# Tests assert no wall-clock threshold, and Hypothesis's per-example deadline is one: on a
# busy 2-core host a property test failed only because an example took over 200 ms.
hypothesis.settings.register_profile("authgate", deadline=None)
hypothesis.settings.load_profile("authgate")

T = TypeVar("T")

POSTGRES_URL = os.environ.get("AUTHGATE_TEST_DATABASE_URL")

# rich reads COLUMNS and LINES when a Console is made, and a size found then stays:
# authgate.cli's module-level consoles would keep the one of the environment pytest
# started in (pytest-xdist workers start with COLUMNS=80) instead of the width tests
# set with monkeypatch.setenv. Removed before any test module imports the CLI.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)


def worker_redis_url(url: str | None, worker: str | None) -> str | None:
    """The Redis database of this pytest-xdist worker: ``url``'s database number plus the
    worker's index (gw0 keeps it, gw1 takes the next), since tests empty theirs with
    FLUSHDB. Outside xdist (``worker`` None), ``url`` itself."""
    if not url or not worker or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0) + int(worker.removeprefix("gw"))
    if number > 15:  # Redis has 16 databases unless configured otherwise
        raise RuntimeError(f"pytest-xdist worker {worker} would need Redis database {number}")
    return urlunsplit(parts._replace(path=f"/{number}"))


REDIS_URL = worker_redis_url(
    os.environ.get("AUTHGATE_TEST_REDIS_URL"), os.environ.get("PYTEST_XDIST_WORKER")
)

ADMIN_PASSWORD = "operator-password-for-tests"
USER_PASSWORD = "user-password-for-tests"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own AUTHGATE_* variables must not leak into tests."""
    for name in list(os.environ):
        if name.startswith("AUTHGATE_") and not name.startswith("AUTHGATE_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def redis_url() -> str:
    """The test Redis, emptied first (skips unless AUTHGATE_TEST_REDIS_URL is set): Redis
    outlives a test run, and counters or blocks of an earlier run would still count.
    Each pytest-xdist worker has a database of its own (``worker_redis_url``)."""
    if not REDIS_URL:
        pytest.skip("AUTHGATE_TEST_REDIS_URL is not set")
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: cheap Argon2, no access log, fast change polling."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "access_log": False,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "change_poll_interval_seconds": 0.05,
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


# -- databases -----------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``AUTHGATE_TEST_DATABASE_URL``, the PostgreSQL variants are deselected
    (reported as such), not collected and skipped one by one."""
    if POSTGRES_URL:
        return
    deselected = [item for item in items if item.get_closest_marker("postgres")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]


# -- pytest-xdist (`make test` runs the suite on two workers) --------------------------------

# Work units that must stay on one worker: each directory's tests share a session
# fixture that is expensive to set up (a server process, a browser).
XDIST_SHARED_DIRECTORIES = ("tests/browser/", "tests/client/")
# The longest work units (measured), handed out first so that neither worker is left
# with a long one at the end while the other is idle. Only the balance depends on it.
XDIST_LONGEST_FIRST = (
    "tests/container/test_image.py",
    "tests/test_cluster.py",
    "tests/browser/",
    "tests/test_workers.py",
    "tests/client/",
    "tests/test_distributions.py",
    "tests/api/test_openapi.py",
)


def xdist_work_unit(nodeid: str) -> str:
    """A test's work unit: its directory for XDIST_SHARED_DIRECTORIES, else its file."""
    for directory in XDIST_SHARED_DIRECTORIES:
        if nodeid.startswith(directory):
            return directory
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` refined: whole files (or shared directories) per worker, so
    module- and session-scoped servers start once; the longest work units first."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no type marker
        def _split_scope(self, nodeid: str) -> str:
            return xdist_work_unit(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            for unit in reversed(XDIST_LONGEST_FIRST):
                if unit in self.workqueue:
                    self.workqueue.move_to_end(unit, last=False)
            super()._assign_work_unit(node)

    return Scheduling(config, log)


def run_in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in another thread, so that
    sync fixtures can do async database work even while a test's loop is running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class BackgroundLoop:
    """An event loop running in a thread of its own for the whole session.

    Like :func:`run_in_own_loop`, it lets sync fixtures do async database work while a
    test's loop is running; unlike it, what is made on it (an engine and its pooled
    connections) outlives one call, since asyncpg connections belong to their loop.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="test-database-loop", daemon=True
        )
        self._thread.start()

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@pytest.fixture(scope="session")
def background_loop() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


class SqliteTemplates:
    """Migrated SQLite databases to copy: migrating a fresh file costs far more than
    copying one. A template is made once per Alembic head, so a test that runs with
    other migrations than the rest gets a database of its own head, never a stale one."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._templates: dict[str, Path] = {}

    def copy_to(self, target: Path) -> None:
        template = self._template(migrate.head_revision())
        shutil.copyfile(template, target)

    def _template(self, head: str) -> Path:
        template = self._templates.get(head)
        if template is None:
            template = self._directory / f"{head}.db"

            async def make() -> None:
                # authgate's own engine, so the schema is made with the app's pragmas
                db = Database(f"sqlite+aiosqlite:///{template}")
                try:
                    await migrate.upgrade(db.engine, head)
                finally:
                    await db.close()

            run_in_own_loop(make)
            # Closing the last connection checkpoints the WAL into the file itself.
            assert not template.with_name(f"{template.name}-wal").exists()
            self._templates[head] = template
        return template


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplates:
    return SqliteTemplates(tmp_path_factory.mktemp("sqlite-templates"))


def _postgres_reachable() -> None:
    async def probe() -> None:
        engine = create_async_engine(POSTGRES_URL or "")
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        run_in_own_loop(probe)
    except Exception as error:  # noqa: BLE001
        pytest.fail(
            f"AUTHGATE_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {error!r}",
            pytrace=False,
        )


def create_postgres_database(base_url: str) -> str | None:
    """A new, migrated database on the server of ``base_url`` (None without the right
    to create one); :func:`drop_postgres_database` removes it."""
    base = make_url(base_url)
    name = f"authgate_test_{os.getpid()}_{secrets.token_hex(3)}"

    async def create() -> str | None:
        engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
        except DBAPIError:
            return None
        finally:
            await engine.dispose()
        url = base.set(database=name).render_as_string(hide_password=False)
        migrated = create_async_engine(url)
        await migrate.upgrade(migrated)
        await migrated.dispose()
        return url

    return run_in_own_loop(create)


def drop_postgres_database(url: str) -> None:
    target = make_url(url)

    async def drop() -> None:
        engine = create_async_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        async with engine.connect() as connection:
            await connection.execute(
                text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
            )
        await engine.dispose()

    run_in_own_loop(drop)


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, migrated once.

    Created next to the configured one (so several test runs on one server do not
    empty each other's tables) and dropped at the end; without the right to create
    databases, the configured database itself is emptied and used.
    """
    if not POSTGRES_URL:
        pytest.skip("AUTHGATE_TEST_DATABASE_URL is not set")
    _postgres_reachable()
    own_url = create_postgres_database(POSTGRES_URL)
    if own_url is None:

        async def reset() -> None:
            engine = create_async_engine(POSTGRES_URL)
            async with engine.begin() as connection:
                await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
            await migrate.upgrade(engine)
            await engine.dispose()

        run_in_own_loop(reset)
        yield POSTGRES_URL
        return
    yield own_url
    drop_postgres_database(own_url)


async def emptying_statement(connection: AsyncConnection) -> TextClause:
    """One statement that empties every table and restarts every sequence (ids start at
    1 again), as ``TRUNCATE ... RESTART IDENTITY`` does but much faster on these nearly
    empty tables (measured 21 ms against 350 ms): TRUNCATE replaces each table's files,
    DELETE only marks a few rows. Children go before their parents, so no foreign key
    objects. The names are our own tables' and the catalog's, never input."""
    result = await connection.execute(
        text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
    )
    tables = reversed(Base.metadata.sorted_tables)
    deletes = [f'DELETE FROM "{table.name}";' for table in tables]  # noqa: S608
    restarts = [f'ALTER SEQUENCE "{name}" RESTART;' for (name,) in result]
    return text(f"DO $$ BEGIN {' '.join(deletes + restarts)} END $$")


EmptyPostgres = Callable[[], str]


@pytest.fixture(scope="session")
def empty_postgres(
    postgres_schema: str, background_loop: BackgroundLoop
) -> Iterator[EmptyPostgres]:
    """Empties the session's PostgreSQL database and returns its URL; one engine (and its
    pooled connection) serves every test, instead of connecting anew each time."""
    engine = create_async_engine(postgres_schema)

    async def prepare() -> TextClause:
        async with engine.connect() as connection:
            return await emptying_statement(connection)

    statement = background_loop.run(prepare)

    async def empty_tables() -> None:
        async with engine.begin() as connection:
            await connection.execute(statement)

    def empty() -> str:
        background_loop.run(empty_tables)
        return postgres_schema

    yield empty
    background_loop.run(engine.dispose)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind (PostgreSQL only when configured), migrated to the
    head and empty."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        sqlite_templates: SqliteTemplates = request.getfixturevalue("sqlite_templates")
        sqlite_templates.copy_to(path)
        return f"sqlite+aiosqlite:///{path}"
    empty_postgres: EmptyPostgres = request.getfixturevalue("empty_postgres")
    return empty_postgres()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return test_settings(tmp_path / "data", database_url=database_url)


# -- the application -----------------------------------------------------------------------


@dataclass
class Harness:
    """The app under test, its services and an HTTP client speaking to it in-process."""

    app: FastAPI
    services: Services
    client: httpx2.AsyncClient
    clock: FakeClock

    async def create_user(
        self, login: str, password: str = USER_PASSWORD, *, admin: bool = False, **fields: Any
    ) -> int:
        roles = {"ROLE_USER", "ROLE_ADMIN"} if admin else {"ROLE_USER"}
        user = await self.services.users.create_user(
            NewUser(
                login=login,
                email=fields.pop("email", f"{login}@example.com"),
                password=password,
                authorities=frozenset(roles),
                **fields,
            )
        )
        return user.id

    async def login(self, username: str, password: str, **extra: Any) -> str:
        response = await self.client.post(
            "/api/authenticate", json={"username": username, "password": password, **extra}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["id_token"]
        return token

    async def create_key(
        self, token: str, name: str = "ci-deploy", *, days: float = 30, **fields: Any
    ) -> dict[str, Any]:
        """A key of the token's user through the API (the created DTO, with ``key``),
        usable from loopback and expiring in ``days``; ``fields`` are more JSON fields."""
        expires_at = format_instant(self.clock() + timedelta(days=days))
        body = {"name": name, "allowedIp": ["127.0.0.1", "::1"], "expiresAt": expires_at}
        response = await self.client.post(
            "/api/api-keys", json={**body, **fields}, headers=bearer(token)
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    @asynccontextmanager
    async def client_from(self, address: str) -> AsyncIterator[httpx2.AsyncClient]:
        """An HTTP client whose requests arrive from ``address`` (the socket peer)."""
        transport = httpx2.ASGITransport(
            app=self.app, client=(address, 50000), raise_app_exceptions=False
        )
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def format_instant(instant: datetime) -> str:
    """An instant as the API writes and reads it: ISO 8601 in UTC with a ``Z``."""
    return instant.isoformat().replace("+00:00", "Z")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def harness(settings: Settings, clock: FakeClock) -> AsyncIterator[Harness]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app=app, services=services, client=client, clock=clock)


@pytest.fixture
async def admin_token(harness: Harness) -> str:
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    return await harness.login("admin", ADMIN_PASSWORD)


@pytest.fixture
async def user_token(harness: Harness) -> str:
    await harness.create_user("alice", USER_PASSWORD)
    return await harness.login("alice", USER_PASSWORD)
