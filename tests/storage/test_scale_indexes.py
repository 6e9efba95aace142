"""The reads that a large installation repeats most are served by an index (migration
0019_scale_indexes): the trim of a key's sampled requests that every usage flush runs,
a user's own usage, and the audit trail's actor, address and type. Checked with each
database's own plan of the statements authgate sends (on PostgreSQL with sequential
scans discouraged, so that a usable index is chosen whatever the tables' size); a
statement whose predicate an index cannot serve plans a scan, and the test fails."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.api_key_repository import (
    _KEEP_RECENT,
    UsageFilter,
    _of_owner_key_and_period,
)
from authgate.storage.audit_repository import AuditFilter, AuditRepository
from authgate.storage.models import ApiKeyUsage, AuditEvent
from tests.conftest import Harness


async def plan(session: AsyncSession, statement: Any, parameters: dict[str, Any]) -> str:
    """The database's plan of ``statement`` as one text."""
    connection = await session.connection()
    compiled = statement.compile(dialect=connection.dialect)
    values = compiled.construct_params(parameters)
    positional = tuple(values[name] for name in compiled.positiontup or ())
    if connection.dialect.name == "sqlite":
        rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", positional)
        return "\n".join(str(row[-1]) for row in rows)
    await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    rows = await connection.exec_driver_sql(f"EXPLAIN {compiled}", positional)
    return "\n".join(str(row[0]) for row in rows)


async def test_each_usage_flushs_trim_reads_only_accepted_requests_through_an_index(
    harness: Harness,
) -> None:
    async with harness.services.db.transaction() as session:
        explained = await plan(session, _KEEP_RECENT, {"key_pk": 7, "keep": 50})
    assert "ix_api_key_usage_key_successes" in explained


async def test_a_users_own_usage_is_read_through_an_index(harness: Harness) -> None:
    query = _of_owner_key_and_period(
        select(ApiKeyUsage.id), UsageFilter(owner_id=3), ApiKeyUsage, ApiKeyUsage.occurred_at
    ).order_by(ApiKeyUsage.occurred_at.desc())
    async with harness.services.db.transaction() as session:
        explained = await plan(session, query, {})
    assert "ix_api_key_usage_user_time" in explained


async def test_the_audit_trails_actor_address_and_type_are_read_through_indexes(
    harness: Harness,
) -> None:
    async with harness.services.db.transaction() as session:
        repository = AuditRepository(session)
        by_actor = repository._filtered(select(AuditEvent.id), AuditFilter(actor="alice"))
        by_address = repository._filtered(
            select(AuditEvent.id), AuditFilter(client_ip="203.0.113.7")
        ).order_by(AuditEvent.id.desc())
        by_type = select(AuditEvent.id).order_by(AuditEvent.event_type, AuditEvent.id.desc())
        actor_plan = await plan(session, by_actor, {})
        address_plan = await plan(session, by_address, {})
        type_plan = await plan(session, by_type.limit(20), {})
    assert "ix_audit_events_actor_login" in actor_plan
    assert "ix_audit_events_api_key_name" in actor_plan
    assert "ix_audit_events_client_ip" in address_plan
    assert "ix_audit_events_type_id" in type_plan
