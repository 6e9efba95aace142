"""Shared fixtures: a fake clock, settings in a temporary data dir, the app on SQLite and
(when ``AUTHGATE_TEST_DATABASE_URL`` is set) on PostgreSQL, and an HTTP client for it."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from authgate.app import create_app
from authgate.container import Services
from authgate.services.users import NewUser
from authgate.settings import Settings
from authgate.storage import migrate
from authgate.storage.models import Base

T = TypeVar("T")

POSTGRES_URL = os.environ.get("AUTHGATE_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("AUTHGATE_TEST_REDIS_URL")

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


def run_in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in another thread, so that
    sync fixtures can do async database work even while a test's loop is running."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


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


async def truncate_postgres(url: str) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind (PostgreSQL only when configured)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("postgres_schema")
    run_in_own_loop(lambda: truncate_postgres(url))
    return url


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
