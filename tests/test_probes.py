"""Kubernetes probes: liveness never depends on the database; readiness fails while the
database does not answer or its schema is behind this version."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url

from authgate.storage import migrate
from tests.conftest import EmptyPostgres, Harness
from tests.processes import AuthgateServer
from tests.relay import TcpRelay

LIVENESS = "/management/health/liveness"
READINESS = "/management/health/readiness"


def previous_revision() -> str:
    """A revision this version ships, older than its head."""
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_revision("head")
    assert head is not None
    assert isinstance(head.down_revision, str)
    return head.down_revision


async def stamp(harness: Harness, revision: str) -> None:
    async with harness.services.db.engine.begin() as connection:
        await connection.execute(
            text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision}
        )


async def test_both_probes_are_up_and_public(harness: Harness) -> None:
    """A migrated database: liveness and readiness answer 200 UP without credentials."""
    live = await harness.client.get(LIVENESS)
    assert (live.status_code, live.json()) == (200, {"status": "UP"})
    ready = await harness.client.get(READINESS)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "UP",
        "components": {"db": {"status": "UP"}, "schema": {"status": "UP"}},
    }


async def test_readiness_fails_while_migrations_are_pending(harness: Harness) -> None:
    """A schema behind this version makes readiness 503 OUT_OF_SERVICE (liveness stays
    UP: a restart would not migrate); once migrated, it is ready again."""
    try:
        await stamp(harness, previous_revision())
        ready = await harness.client.get(READINESS)
        assert ready.status_code == 503
        assert ready.json()["status"] == "OUT_OF_SERVICE"
        assert ready.json()["components"]["schema"] == {"status": "DOWN"}
        assert (await harness.client.get(LIVENESS)).status_code == 200
    finally:
        await stamp(harness, migrate.head_revision())  # PostgreSQL's schema is shared
    assert (await harness.client.get(READINESS)).status_code == 200


async def test_readiness_accepts_a_newer_schema(harness: Harness) -> None:
    """A rolling upgrade: a newer node migrated first (its revision is numbered after
    this version's last); migrations only add, so this node stays ready."""
    head_number = int(migrate.head_revision().partition("_")[0])
    try:
        await stamp(harness, f"{head_number + 1:04d}_from_a_newer_version")
        assert (await harness.client.get(READINESS)).status_code == 200
    finally:
        await stamp(harness, migrate.head_revision())


async def test_readiness_fails_when_the_database_fails(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any database error: readiness 503 with the database DOWN, liveness 200."""

    async def unreachable(_engine: object) -> str:
        raise ConnectionRefusedError("database unreachable")

    monkeypatch.setattr(migrate, "current_revision", unreachable)
    ready = await harness.client.get(READINESS)
    assert ready.status_code == 503
    assert ready.json() == {"status": "OUT_OF_SERVICE", "components": {"db": {"status": "DOWN"}}}
    assert (await harness.client.get(LIVENESS)).status_code == 200


# -- a real server whose PostgreSQL becomes unreachable and comes back --------------------


@pytest.fixture
def relay(empty_postgres: EmptyPostgres) -> Iterator[tuple[TcpRelay, str]]:
    """A relay to the test PostgreSQL, and the database URL through it."""
    url = make_url(empty_postgres())  # keyed by this server
    relay = TcpRelay(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield (
            relay,
            url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
        )
    finally:
        relay.close()


def wait_for_status(server: AuthgateServer, path: str, status: int) -> httpx2.Response:
    deadline = time.monotonic() + 30
    while True:
        response = httpx2.get(f"{server.base_url}{path}", timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, f"{response.text}\n{server.diagnostics()}"
            return response
        time.sleep(0.1)


@pytest.mark.postgres
def test_readiness_follows_a_postgresql_outage(tmp_path: Path, relay: tuple[TcpRelay, str]) -> None:
    """`authgate serve` on PostgreSQL: ready; the database unreachable: readiness 503
    while liveness stays 200; the database back: ready again, with no restart."""
    tcp, database_url = relay
    server = AuthgateServer(tmp_path, {"AUTHGATE_DATABASE_URL": database_url})
    try:
        server.wait_until_up()
        wait_for_status(server, READINESS, 200)

        tcp.cut()
        down = wait_for_status(server, READINESS, 503)
        assert down.json()["components"]["db"] == {"status": "DOWN"}
        live = httpx2.get(f"{server.base_url}{LIVENESS}", timeout=5)
        assert (live.status_code, live.json()) == (200, {"status": "UP"})

        tcp.restore()
        wait_for_status(server, READINESS, 200)
        assert server.running
    finally:
        server.stop()
