"""The audit log service: hash chain and tamper evidence, one chain across app instances,
batched writes, nothing lost at shutdown, bounded buffer, retention."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, text

from authgate.app import create_app
from authgate.container import Services, build_services
from authgate.reasons import Reason
from authgate.runtime import BackgroundWork, ensure_schema
from authgate.security.audit_chain import GENESIS_HASH, AuditKey
from authgate.services.api_key_views import KeySpec
from authgate.services.audit.chain import chain_hash
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.usage import UsageEvent
from authgate.settings import Settings
from authgate.storage.audit_repository import (
    AuditFilter,
    AuditRepository,
    AuditRow,
    SignedLink,
)
from authgate.storage.db import Database
from authgate.storage.models import AuditEvent
from authgate.storage.paging import PageRequest, SortOrder
from tests.conftest import FakeClock, Harness, test_settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Audit records are written only when a test flushes (no background flush races)."""
    return test_settings(
        tmp_path / "data", database_url=database_url, audit_flush_interval_seconds=60
    )


@pytest.fixture
async def services(settings: Settings, clock: FakeClock) -> AsyncIterator[Services]:
    """The services without background tasks: no housekeeping, alerts or timed flushes
    run behind a test's back (retention and tampering tests need a still trail)."""
    async with node(settings, clock) as built:
        yield built


# -- helpers ------------------------------------------------------------------------------


def record_logins(audit: AuditLog, prefix: str, count: int) -> None:
    for number in range(count):
        audit.record(EventType.AUTH_SUCCESS, "success", actor=Actor(login=f"{prefix}{number}"))


async def stored_ids(services: Services) -> list[int]:
    async with services.db.session() as session:
        result = await session.execute(text("SELECT id FROM audit_events ORDER BY id"))
        return [row[0] for row in result.all()]


async def execute(services: Services, statement: str, **parameters: Any) -> None:
    async with services.db.transaction() as session:
        await session.execute(text(statement), parameters)


async def count_rows(services: Services, event_type: str) -> int:
    async with services.db.session() as session:
        result = await session.execute(
            text("SELECT COUNT(*) FROM audit_events WHERE event_type = :type"),
            {"type": event_type},
        )
        return int(result.scalar_one())


async def chained(services: Services, count: int = 6) -> list[int]:
    """``count`` login records (after whatever start-up recorded), flushed; all ids."""
    record_logins(services.audit, "user", count)
    await services.audit.flush()
    ids = await stored_ids(services)
    assert len(ids) >= count
    return ids


@asynccontextmanager
async def node(settings: Settings, clock: FakeClock) -> AsyncIterator[Services]:
    """One more set of services on the same database (another node), without background
    tasks."""
    built = build_services(settings, clock=clock)
    await ensure_schema(built)
    work = BackgroundWork(built)
    await work.start(background=False)
    try:
        yield built
    finally:
        await work.close()


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[Services]:
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        yield services


def without_timed_audit_flushes(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """``app`` whose audit trail is written only by the test's flushes and the one at
    shutdown: the background writer's timer (60 s here) is wall-clock time, which a busy
    host can let pass while a test sends its requests."""

    async def until_stopped(stop: asyncio.Event) -> None:
        await stop.wait()

    monkeypatch.setattr(app.state.services.audit, "run", until_stopped)
    return app


async def new_key(services: Services, clock: FakeClock) -> str:
    """A key of a new admin, usable from any address; its plaintext."""
    await services.users.ensure_initial_admin("audit-operator-password")
    admin = await services.users.get_user("admin")
    created = await services.api_keys.create(
        admin.id, KeySpec(name="load", allowed_networks=[], expires_at=clock() + timedelta(days=1))
    )
    return created.plaintext


# -- the hash --------------------------------------------------------------------------------


def test_chain_hash_covers_every_field_and_the_previous_hash() -> None:
    """Changing any content field, or the previous hash, changes the record's hash."""
    row = AuditRow(
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        event_type="AUTH_SUCCESS",
        outcome="success",
        actor_login="alice",
        actor_user_id=1,
        api_key_id=2,
        api_key_name="k",
        client_ip="127.0.0.1",
        user_agent="ua",
        request_path="/api/authenticate",
        reason=None,
        correlation_id="c",
        details='{"a": 1}',
    )
    original = chain_hash(GENESIS_HASH, row)
    assert len(original) == 64
    assert chain_hash(GENESIS_HASH, row) == original
    assert chain_hash("1" * 64, row) != original
    changes: dict[str, Any] = {
        "occurred_at": datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        "event_type": "AUTH_FAILURE",
        "outcome": "failure",
        "actor_login": "mallory",
        "actor_user_id": 3,
        "api_key_id": 4,
        "api_key_name": "j",
        "client_ip": "10.0.0.1",
        "user_agent": "other",
        "request_path": "/api/other",
        "reason": "edited",
        "correlation_id": "d",
        "details": '{"a": 2}',
    }
    assert set(changes) == {field.name for field in dataclasses.fields(AuditRow)}
    for name, value in changes.items():
        assert chain_hash(GENESIS_HASH, dataclasses.replace(row, **{name: value})) != original, name


# -- tamper evidence ---------------------------------------------------------------------------


async def test_empty_trail_is_intact(services: Services) -> None:
    """Before anything is written, verify reports an intact chain of 0 records."""
    verification = await services.audit.verify()
    assert (verification.intact, verification.checked) == (True, 0)


async def test_flushed_records_form_an_intact_chain(services: Services) -> None:
    """After flushes, every record links to the one before it and verify checks them all;
    the first record is anchored at the genesis hash."""
    await chained(services, 3)
    ids = await chained(services, 4)
    verification = await services.audit.verify()
    assert verification.intact
    assert verification.checked == len(ids)
    assert verification.first_broken_id is None
    async with services.db.session() as session:
        rows = (
            await session.execute(text("SELECT prev_hash, hash FROM audit_events ORDER BY id"))
        ).all()
    assert rows[0][0] == GENESIS_HASH
    assert all(later[0] == earlier[1] for earlier, later in itertools.pairwise(rows))


async def test_verify_in_small_chunks_checks_every_record(services: Services) -> None:
    """Chunked reading (chunk smaller than the trail) still checks every link."""
    ids = await chained(services, 7)
    verification = await services.audit.verify(chunk=2)
    assert (verification.intact, verification.checked) == (True, len(ids))
    await execute(services, "UPDATE audit_events SET outcome = 'failure' WHERE id = :id", id=ids[5])
    broken = await services.audit.verify(chunk=2)
    assert (broken.first_broken_id, broken.checked) == (ids[5], 5)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("reason", "edited"),
        ("actor_login", "mallory"),
        ("event_type", "AUTH_FAILURE"),
        ("client_ip", "10.9.8.7"),
        ("details", "{}"),
        ("hash", "a" * 64),
    ],
)
async def test_an_edited_field_breaks_the_chain_at_that_record(
    services: Services, column: str, value: str
) -> None:
    """A raw UPDATE of one field of one record: verify names that record first."""
    ids = await chained(services)
    victim = ids[len(ids) // 2]
    statement = f"UPDATE audit_events SET {column} = :value WHERE id = :id"  # noqa: S608 - our columns
    await execute(services, statement, value=value, id=victim)
    verification = await services.audit.verify()
    assert not verification.intact
    assert verification.first_broken_id == victim
    assert verification.checked == ids.index(victim)
    assert verification.problem


async def test_an_edited_timestamp_breaks_the_chain(services: Services) -> None:
    """Moving a record's time by a second is detected at that record."""
    ids = await chained(services)
    victim = ids[-2]
    async with services.db.transaction() as session:
        stored = await session.get(AuditEvent, victim)
        assert stored is not None
        stored.occurred_at = stored.occurred_at + timedelta(seconds=1)
    verification = await services.audit.verify()
    assert verification.first_broken_id == victim


async def test_a_deleted_middle_record_is_reported_at_the_next_one(services: Services) -> None:
    """Deleting a record in the middle: verify names the record after the gap."""
    ids = await chained(services)
    middle = len(ids) // 2
    await execute(services, "DELETE FROM audit_events WHERE id = :id", id=ids[middle])
    verification = await services.audit.verify()
    assert not verification.intact
    assert verification.first_broken_id == ids[middle + 1]
    assert verification.checked == middle


@pytest.mark.parametrize("deleted", [1, 3])
async def test_deleted_newest_records_are_reported(services: Services, deleted: int) -> None:
    """Deleting the newest record(s) leaves a chain that ends early: verify names the
    first missing id."""
    ids = await chained(services)
    await execute(services, "DELETE FROM audit_events WHERE id >= :id", id=ids[-deleted])
    verification = await services.audit.verify()
    assert not verification.intact
    assert verification.first_broken_id == ids[-deleted]
    assert verification.checked == len(ids) - deleted


async def test_deleting_every_record_is_reported(services: Services) -> None:
    """An emptied table whose chain head still names a hash is not intact."""
    ids = await chained(services)
    await execute(services, "DELETE FROM audit_events")
    verification = await services.audit.verify()
    assert not verification.intact
    assert verification.first_broken_id == ids[0]


async def test_a_record_replaced_by_a_correctly_hashed_forgery_is_reported(
    services: Services,
) -> None:
    """Replacing a record by a forged one whose (plain SHA-256) hash is recomputed from
    the previous record: the forgery itself is named, its hash is not the audit key's."""
    ids = await chained(services)
    async with services.db.session() as session:
        rows = await AuditRepository(session).after(0, AuditFilter(), limit=1000)
    (before, _), (victim, _) = rows[1], rows[2]
    forged = dataclasses.replace(AuditRow.of_model(victim), actor_login="forged")
    async with services.db.transaction() as session:
        await session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": victim.id})
        connection = await session.connection()
        await connection.execute(
            insert(AuditEvent),
            {
                "id": victim.id,
                **{f.name: getattr(forged, f.name) for f in dataclasses.fields(AuditRow)},
                "prev_hash": before.hash,
                "hash": chain_hash(before.hash, forged),
            },
        )
    verification = await services.audit.verify()
    assert not verification.intact
    assert (verification.first_broken_id, verification.verdict) == (ids[2], "forged")
    assert verification.checked == 2


async def test_a_forged_record_appended_without_moving_the_head_is_reported(
    services: Services,
) -> None:
    """A record appended by hand, correctly chained but past the chain head, is not
    accepted as part of the trail."""
    await chained(services)
    async with services.db.session() as session:
        newest, _ = (await AuditRepository(session).page(AuditFilter(), PageRequest(size=1)))[0]
    forged = dataclasses.replace(AuditRow.of_model(newest), actor_login="forged")
    async with services.db.transaction() as session:
        connection = await session.connection()
        await connection.execute(
            insert(AuditEvent),
            {
                **{f.name: getattr(forged, f.name) for f in dataclasses.fields(AuditRow)},
                "prev_hash": newest.hash,
                "hash": chain_hash(newest.hash, forged),
            },
        )
    assert not (await services.audit.verify()).intact


# -- one chain across instances ----------------------------------------------------------------


async def test_two_app_instances_extend_one_chain(settings: Settings, clock: FakeClock) -> None:
    """Two apps on one database, recording and flushing concurrently, interleave their
    records into one chain that verifies intact, losing none."""
    first, second = create_app(settings, clock=clock), create_app(settings, clock=clock)
    async with running(first) as a, running(second) as b:
        record_logins(a.audit, "a-start-", 1)
        await a.audit.flush()  # the chain head exists (see the next test for a fresh one)
        for round_number in range(15):
            record_logins(a.audit, f"a{round_number}-", 7)
            record_logins(b.audit, f"b{round_number}-", 5)
            flushes = (a.audit.flush(), b.audit.flush())
            await asyncio.gather(*(flushes if round_number % 2 else reversed(flushes)))
        verification = await a.audit.verify()
        assert verification.intact, verification
        assert await count_rows(a, "AUTH_SUCCESS") == 1 + 15 * 7 + 15 * 5
        async with a.db.session() as session:
            actors = [
                row[0]
                for row in (
                    await session.execute(
                        text(
                            "SELECT actor_login FROM audit_events "
                            "WHERE event_type = 'AUTH_SUCCESS' ORDER BY id"
                        )
                    )
                ).all()
            ]
        origins = "".join(actor[0] for actor in actors)
        assert "ab" in origins  # really interleaved
        assert "ba" in origins
        assert (await b.audit.verify()).intact


async def test_two_app_instances_start_a_new_chain_concurrently(
    settings: Settings, clock: FakeClock
) -> None:
    """The very first flushes of two apps on an empty trail, at the same time, both
    succeed and form one chain (no duplicate chain head, no second genesis)."""
    first, second = create_app(settings, clock=clock), create_app(settings, clock=clock)
    async with running(first) as a, running(second) as b:
        record_logins(a.audit, "a", 5)
        record_logins(b.audit, "b", 5)
        results = await asyncio.gather(a.audit.flush(), b.audit.flush(), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], [type(f).__name__ + ": " + str(f)[:300] for f in failures]
        assert (a.audit.pending, b.audit.pending) == (0, 0)
        verification = await a.audit.verify()
        assert verification.intact, verification
        assert await count_rows(a, "AUTH_SUCCESS") == 10
        async with a.db.session() as session:
            genesis = await session.scalar(
                text("SELECT COUNT(*) FROM audit_events WHERE prev_hash = :genesis"),
                {"genesis": GENESIS_HASH},
            )
        assert genesis == 1


async def test_verify_is_not_fooled_by_a_concurrent_append(
    services: Services, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verifying a live trail while another node appends (the append commits after verify
    read the records, before it read the chain head) must not report tampering."""
    await chained(services)
    other_node = AuditLog(
        db=services.db,
        key=services.audit.key,
        clock=clock,
        flush_interval=60,
        retention=timedelta(days=365),
    )
    original_head = AuditRepository.chain_head
    appended: list[int] = []

    async def head_after_another_append(repository: AuditRepository) -> SignedLink | None:
        if not appended:
            appended.append(1)
            record_logins(other_node, "other-node-", 3)
            appended.append(await other_node.flush())
        return await original_head(repository)

    monkeypatch.setattr(AuditRepository, "chain_head", head_after_another_append)
    verification = await services.audit.verify()
    monkeypatch.undo()
    assert appended == [1, 3]  # the concurrent append did happen
    assert (await services.audit.verify()).intact  # and the trail is sound
    assert verification.intact, verification


# -- batching and shutdown -------------------------------------------------------------------


async def test_key_requests_are_buffered_until_a_flush_writes_them_all(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every accepted key request audited (AUTHGATE_AUDIT_API_KEY_SUCCESSES), 200
    requests write no audit row; one flush then writes all 200."""
    app = create_app(
        settings.model_copy(
            update={"audit": settings.audit.model_copy(update={"api_key_successes": True})}
        ),
        clock=clock,
    )
    without_timed_audit_flushes(app, monkeypatch)
    async with running(app) as services:
        key = await new_key(services, clock)
        await services.audit.flush()
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(200):
                response = await client.get("/api/account", headers={"Utm-Api-Key": key})
                assert response.status_code == 200
        assert await count_rows(services, "API_KEY_ACCESS_SUCCESS") == 0
        # They wait in the usage log's queue (``notable_use``: a key's records keep the
        # order of its requests), which hands them to the audit trail at its flush.
        await services.usage.flush()
        buffered = services.audit.pending
        assert buffered >= 200
        # Everything buffered goes in this one flush. (``pending`` need not be 0 after it:
        # the alert engine may record a fired alert, here "Administrative actions" for
        # the admin's creation, while the flush writes.)
        assert await services.audit.flush() == buffered
        assert await count_rows(services, "API_KEY_ACCESS_SUCCESS") == 200
        assert (await services.audit.verify()).intact


async def test_by_default_only_the_security_events_of_accepted_key_requests_are_audited(
    harness: Harness,
) -> None:
    """200 accepted API-key requests from one address: one audit record (the first use)."""
    key = await new_key(harness.services, harness.clock)
    for _ in range(200):
        response = await harness.client.get("/api/account", headers={"Utm-Api-Key": key})
        assert response.status_code == 200
    await harness.services.usage.flush()  # it confirms the first use (``notable_use``)
    await harness.services.audit.flush()
    assert await count_rows(harness.services, "API_KEY_ACCESS_SUCCESS") == 1


async def test_buffered_records_are_written_at_shutdown(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records still buffered when the app's lifespan ends are in the database afterwards."""
    every_success = settings.model_copy(
        update={"audit": settings.audit.model_copy(update={"api_key_successes": True})}
    )
    app = without_timed_audit_flushes(create_app(every_success, clock=clock), monkeypatch)
    async with running(app) as services:
        key = await new_key(services, clock)
        await services.audit.flush()
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(25):
                response = await client.get("/api/account", headers={"Utm-Api-Key": key})
                assert response.status_code == 200
        # None written yet: they wait in the usage log's queue (``notable_use``), which
        # hands them to the audit trail at the flushes of the shutdown.
        assert await count_rows(services, "API_KEY_ACCESS_SUCCESS") == 0

    again = create_app(every_success, clock=clock)
    async with running(again) as services:
        assert await count_rows(services, "API_KEY_ACCESS_SUCCESS") == 25
        assert (await services.audit.verify()).intact


async def test_a_failed_flush_keeps_the_records(tmp_path: Path, clock: FakeClock) -> None:
    """When the database refuses the batch, flush raises and every record stays buffered,
    in order."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'no-schema.db'}")
    audit = AuditLog(
        db=db,
        key=AuditKey(os.urandom(32)),
        clock=clock,
        flush_interval=60,
        retention=timedelta(days=1),
    )
    try:
        record_logins(audit, "kept", 4)
        with pytest.raises(Exception):  # noqa: B017, PT011 - any database error
            await audit.flush()
        assert audit.pending == 4
        assert audit.dropped == 0
    finally:
        await db.close()


def test_the_buffer_is_bounded_and_counts_what_it_drops(clock: FakeClock) -> None:
    """Past ``max_buffered`` the oldest records are dropped and counted."""
    audit = AuditLog(
        db=None,  # type: ignore[arg-type]  # never written in this test
        key=AuditKey(os.urandom(32)),
        clock=clock,
        flush_interval=60,
        retention=timedelta(days=1),
        max_buffered=3,
    )
    record_logins(audit, "u", 5)
    assert (audit.pending, audit.dropped) == (3, 2)


async def test_a_nul_character_in_a_path_does_not_block_the_trail(harness: Harness) -> None:
    """An anonymous request whose path holds %00 is audited (TOKEN_REJECTED), and it
    does not stop the records after it from being written: one odd request must not
    silence the audit trail."""
    response = await harness.client.get(
        "/api/users/a%00b", headers={"Authorization": "Bearer eyJ-not-a-token"}
    )
    assert response.status_code == 401
    errors = []
    for attempt in range(2):
        record_logins(harness.services.audit, f"after-{attempt}-", 2)
        try:
            await harness.services.audit.flush()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"{type(error).__name__}: {str(error)[:160]}")
    assert await count_rows(harness.services, "AUTH_SUCCESS") == 4, errors
    assert await count_rows(harness.services, "TOKEN_REJECTED") == 1, errors
    assert harness.services.audit.pending == 0


async def test_a_nul_character_in_a_path_does_not_block_the_usage_log(
    harness: Harness,
) -> None:
    """A refused key request to a path holding %00 is logged, and the usage records after
    it are still written."""
    await harness.services.users.ensure_initial_admin("audit-operator-password")
    admin = await harness.services.users.get_user("admin")
    created = await harness.services.api_keys.create(
        admin.id,
        KeySpec(
            name="narrow",
            allowed_networks=["192.0.2.1"],
            expires_at=harness.clock() + timedelta(days=1),
        ),
    )
    header = {"Utm-Api-Key": created.plaintext}
    assert (await harness.client.get("/api/users/a%00b", headers=header)).status_code == 403
    errors = []
    for _ in range(2):
        assert (await harness.client.get("/api/account", headers=header)).status_code == 403
        try:
            await harness.services.usage.flush()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"{type(error).__name__}: {str(error)[:160]}")
    async with harness.services.db.session() as session:
        paths = [
            row[0]
            for row in (
                await session.execute(text("SELECT path FROM api_key_usage ORDER BY id"))
            ).all()
        ]
    assert paths[1:] == ["/api/account", "/api/account"], errors
    assert len(paths) == 3, errors


# -- retention -------------------------------------------------------------------------------


async def test_retention_deletes_old_records_and_the_rest_stays_verifiable(
    services: Services, clock: FakeClock
) -> None:
    """Past the retention period old records are deleted; the chain, anchored at the first
    remaining record, still verifies."""
    old_ids = await chained(services, 5)
    clock.advance(days=services.settings.audit.retention_days, seconds=1)
    record_logins(services.audit, "recent-", 4)
    await services.audit.flush()
    all_ids = await stored_ids(services)
    cutoff = clock() - timedelta(days=services.settings.audit.retention_days)
    async with services.db.session() as session:
        expired = await AuditRepository(session).after(0, AuditFilter(until=cutoff), limit=1000)
    expired_ids = [row.id for row, _ in expired]
    assert expired_ids[: len(old_ids)] == old_ids

    assert await services.audit.delete_expired() == len(expired_ids)
    remaining = await stored_ids(services)
    assert remaining == [i for i in all_ids if i not in expired_ids]
    assert len(remaining) >= 4
    verification = await services.audit.verify()
    assert (verification.intact, verification.checked) == (True, len(remaining))
    async with services.db.session() as session:
        anchor = await session.scalar(
            text("SELECT prev_hash FROM audit_events WHERE id = :id"), {"id": remaining[0]}
        )
    assert anchor != GENESIS_HASH
    assert await services.audit.delete_expired() == 0

    record_logins(services.audit, "later-", 2)
    await services.audit.flush()
    assert (await services.audit.verify()).intact


async def test_records_within_retention_are_kept(services: Services, clock: FakeClock) -> None:
    """A day before the retention period ends, nothing is deleted."""
    ids = await chained(services)
    clock.advance(days=services.settings.audit.retention_days - 1)
    assert await services.audit.delete_expired() == 0
    assert await stored_ids(services) == ids


async def test_retention_of_every_record_leaves_an_intact_trail(
    services: Services, clock: FakeClock
) -> None:
    """When every record has expired (a quiet period longer than the retention), the
    emptied trail is reported intact: retention is not tampering."""
    ids = await chained(services)
    clock.advance(days=services.settings.audit.retention_days + 1)
    assert await services.audit.delete_expired() == len(ids)
    verification = await services.audit.verify()
    assert verification.intact, verification


async def test_retention_across_interleaved_nodes_keeps_the_chain_verifiable(
    settings: Settings, clock: FakeClock
) -> None:
    """Two nodes flush at different times, so chain order is not time order: node B's
    record from t0 follows node A's from t0+10 s. Retention with a cutoff between them
    must not cut a hole into the chain."""
    async with node(settings, clock) as a, node(settings, clock) as b:
        record_logins(b.audit, "b-at-t0-", 2)  # buffered on node B
        clock.advance(seconds=10)
        record_logins(a.audit, "a-at-t10-", 2)
        await a.audit.flush()
        await b.audit.flush()  # B's older records land after A's newer ones
        clock.advance(seconds=10)
        record_logins(a.audit, "a-at-t20-", 2)
        await a.audit.flush()
        assert (await a.audit.verify()).intact

        clock.advance(days=settings.audit.retention_days, seconds=-15)  # cutoff: t0 + 5 s
        await a.audit.delete_expired()
        page = await a.audit.search(
            AuditFilter(event_types=("AUTH_SUCCESS",)),
            PageRequest(size=100, sort=(SortOrder("id"),)),
        )
        assert "a-at-t20-1" in [entry.actor_login for entry in page.items]
        verification = await a.audit.verify()
        assert verification.intact, verification


async def test_a_trail_emptied_by_retention_verifies_what_is_appended_after(
    services: Services, clock: FakeClock
) -> None:
    """After retention removed every record, new records link to the last deleted one
    and verify; retention then has nothing to delete."""
    await chained(services, 3)
    clock.advance(days=services.settings.audit.retention_days + 1)
    assert await services.audit.delete_expired() > 0
    assert await stored_ids(services) == []
    record_logins(services.audit, "new-", 2)
    await services.audit.flush()
    verification = await services.audit.verify()
    assert (verification.intact, verification.checked) == (True, 2), verification
    assert await services.audit.delete_expired() == 0


async def test_the_oldest_records_deleted_by_hand_are_reported(services: Services) -> None:
    """Deleting a prefix of the chain by hand (not by retention) is tampering: the first
    remaining record no longer links to the genesis hash."""
    ids = await chained(services, 6)
    await execute(services, "DELETE FROM audit_events WHERE id <= :id", id=ids[1])
    verification = await services.audit.verify()
    assert verification.first_broken_id == ids[2], verification


async def test_a_record_deleted_by_hand_after_retention_is_reported(
    services: Services, clock: FakeClock
) -> None:
    """Retention remembers the last record it deleted, so deleting the oldest remaining
    record afterwards is still reported."""
    await chained(services, 3)
    clock.advance(days=services.settings.audit.retention_days + 1)
    record_logins(services.audit, "new-", 4)
    await services.audit.flush()
    assert await services.audit.delete_expired() > 0
    assert (await services.audit.verify()).intact
    remaining = await stored_ids(services)
    await execute(services, "DELETE FROM audit_events WHERE id = :id", id=remaining[0])
    verification = await services.audit.verify()
    assert verification.first_broken_id == remaining[1], verification


@pytest.mark.parametrize("new_records", [0, 6])
async def test_retention_running_while_verify_walks_is_not_tampering(
    services: Services, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, new_records: int
) -> None:
    """Another node's retention deletes records between two chunks of ``verify``
    (some of the trail, or all of it): the walk reports the trail intact."""
    record_logins(services.audit, "old-", 6)
    await services.audit.flush()
    clock.advance(days=services.settings.audit.retention_days + 1)
    record_logins(services.audit, "new-", new_records)
    await services.audit.flush()
    original = AuditRepository.chain
    chunks: list[int] = []
    deleted: list[int] = []

    async def chain_with_retention_between_chunks(
        self: AuditRepository, after_id: int, up_to_id: int, *, limit: int
    ) -> list[AuditEvent]:
        chunks.append(after_id)
        if len(chunks) == 2:
            deleted.append(await services.audit.delete_expired())
        return await original(self, after_id, up_to_id, limit=limit)

    monkeypatch.setattr(AuditRepository, "chain", chain_with_retention_between_chunks)
    verification = await services.audit.verify(chunk=2)
    assert deleted == [6]  # retention really ran mid-walk
    assert verification.intact, verification
    monkeypatch.undo()
    assert (await services.audit.verify()).intact


# -- values the database refuses ----------------------------------------------------------


async def test_control_characters_are_stored_replaced(services: Services) -> None:
    """A NUL typed into a login (PostgreSQL refuses NUL in text) is stored as U+FFFD,
    and the records around it are written."""
    services.audit.record(EventType.AUTH_FAILURE, "failure", actor=Actor(login="a\x00b\x1bc"))
    record_logins(services.audit, "after-", 1)
    assert await services.audit.flush() == 2
    async with services.db.session() as session:
        logins = list(await session.scalars(text("SELECT actor_login FROM audit_events")))
    assert "a\ufffdb\ufffdc" in logins
    assert "after-0" in logins


async def test_a_record_the_database_refuses_is_dropped_and_the_rest_are_written(
    services: Services,
) -> None:
    """On PostgreSQL a reason longer than its column is refused: that one record is
    dropped and counted, the others are written and the chain stays intact (SQLite
    does not enforce lengths and stores all three)."""
    record_logins(services.audit, "before-", 1)
    # Deliberately no Reason: a value longer than the column, as an old row could be.
    services.audit.record(EventType.AUTH_FAILURE, "failure", reason=cast(Reason, "r" * 100))
    record_logins(services.audit, "after-", 1)
    refused = 0 if services.db.is_sqlite else 1
    assert await services.audit.flush() == 3 - refused
    assert (services.audit.pending, services.audit.dropped) == (0, refused)
    assert (await services.audit.verify()).intact
    record_logins(services.audit, "later-", 1)
    assert await services.audit.flush() == 1
    assert (await services.audit.verify()).intact


async def test_a_usage_record_the_database_refuses_is_dropped_and_the_rest_are_written(
    harness: Harness,
) -> None:
    """The usage log falls back to row-by-row writes the same way; control characters
    in paths and user agents are stored replaced."""
    usage = harness.services.usage
    await harness.services.users.ensure_initial_admin("audit-operator-password")
    admin = await harness.services.users.get_user("admin")
    created = await harness.services.api_keys.create(
        admin.id,
        KeySpec(name="k", allowed_networks=[], expires_at=harness.clock() + timedelta(days=1)),
    )
    await usage.flush()

    def event(reason: Reason | None, path: str) -> UsageEvent:
        return UsageEvent(
            api_key_id=created.view.key_pk,
            api_key_name="k",
            user_id=admin.id,
            occurred_at=harness.clock(),
            method="GET",
            path=path,
            status=403,
            client_ip=None,
            user_agent="agent\x01",
            latency_ms=1.0,
            failure_reason=reason,
        )

    usage.record(event(Reason.IP_NOT_ALLOWED, "/one"))
    usage.record(event(cast(Reason, "x" * 200), "/refused-on-postgresql"))
    usage.record(event(Reason.IP_NOT_ALLOWED, "/two\x00"))
    refused = 0 if harness.services.db.is_sqlite else 1
    assert await usage.flush() == 3 - refused
    async with harness.services.db.session() as session:
        rows = (
            await session.execute(text("SELECT path, user_agent FROM api_key_usage ORDER BY id"))
        ).all()
    paths = [row.path for row in rows if row.path != "/refused-on-postgresql"]
    assert paths == ["/one", "/two\ufffd"]
    assert len(rows) == 3 - refused
    assert rows[0].user_agent == "agent\ufffd"
