"""Queries on alert rules, fired alerts, and the audit events alerts are computed from."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.storage.audit_repository import AGGREGATE_DETAILS_PREFIX, aggregated_count
from authgate.storage.models import AlertRule, ApiKey, AuditEvent, FiredAlert
from authgate.storage.page_queries import NEWEST_FIRST, paged
from authgate.storage.paging import PageRequest
from authgate.storage.text import storable_text


class AlertRepository:
    # The fields fired alerts may be sorted by (``GET /api/alerts?sort=``).
    SORT_COLUMNS: ClassVar[Mapping[str, Any]] = {
        "id": FiredAlert.id,
        "firedAt": FiredAlert.fired_at,
        "rule": FiredAlert.rule_name,
        "kind": FiredAlert.kind,
        "subject": FiredAlert.subject,
        "count": FiredAlert.count,
    }

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def rules(self) -> list[AlertRule]:
        return list(await self._session.scalars(select(AlertRule).order_by(AlertRule.id)))

    async def rule(self, rule_id: int) -> AlertRule | None:
        return await self._session.get(AlertRule, rule_id)

    async def rule_named(self, name: str) -> AlertRule | None:
        if not storable_text(name):
            return None
        return await self._session.scalar(select(AlertRule).where(AlertRule.name == name))

    def add_rule(self, rule: AlertRule) -> None:
        self._session.add(rule)

    async def delete_rule(self, rule: AlertRule) -> None:
        await self._session.delete(rule)

    async def flush(self) -> None:
        await self._session.flush()

    async def record_fired(self, alert: FiredAlert) -> bool:
        """Store a fired alert; False if this (rule, subject, window) fired already."""
        try:
            async with self._session.begin_nested():
                self._session.add(alert)
        except IntegrityError:
            return False
        return True

    async def fired(self, request: PageRequest) -> Sequence[FiredAlert]:
        """A page of fired alerts, newest first unless ``request`` sorts otherwise."""
        query = paged(
            select(FiredAlert), request, self.SORT_COLUMNS, FiredAlert.id, default=NEWEST_FIRST
        )
        return list(await self._session.scalars(query))

    async def count_fired(self) -> int:
        return await self._session.scalar(select(func.count()).select_from(FiredAlert)) or 0

    # -- the audit events alerts are computed from ---------------------------------------

    async def events_after(self, after_id: int, *, limit: int) -> list[AuditEvent]:
        query = select(AuditEvent).where(AuditEvent.id > after_id).order_by(AuditEvent.id)
        return list(await self._session.scalars(query.limit(limit)))

    async def last_event_id(self) -> int:
        return await self._session.scalar(select(func.max(AuditEvent.id))) or 0

    async def count_events(
        self,
        event_types: Sequence[str],
        *,
        since: datetime,
        until: datetime,
        actor_login: str | None = None,
        client_ip: str | None = None,
        api_key_id: int | None = None,
        excluded_reasons: Collection[str] = (),
    ) -> int:
        """The events of ``event_types`` in (``since``, ``until``] (of the subject given);
        a summary of repeated refusals counts as the events it stands for."""
        query = (
            select(func.count())
            .select_from(AuditEvent)
            .where(*_in_window(event_types, since, until, excluded_reasons))
        )
        if actor_login is not None:
            query = query.where(AuditEvent.actor_login == actor_login)
        if client_ip is not None:
            query = query.where(AuditEvent.client_ip == client_ip)
        if api_key_id is not None:
            query = query.where(AuditEvent.api_key_id == api_key_id)
        count = await self._session.scalar(query) or 0
        # A summary of repeated refusals stands for its count of events, not for one.
        summaries = query.with_only_columns(AuditEvent.details).where(
            AuditEvent.details.like(AGGREGATE_DETAILS_PREFIX + "%")
        )
        return count + sum(aggregated_count(d) - 1 for d in await self._session.scalars(summaries))

    async def count_events_per_address(
        self,
        event_types: Sequence[str],
        *,
        since: datetime,
        until: datetime,
        address_prefix: str,
        excluded_reasons: Collection[str] = (),
    ) -> dict[str, int]:
        """Per IPv6 client address written starting with ``address_prefix``: its events
        (a summary of repeated refusals counts as the events it stands for, as in
        :meth:`count_events`)."""
        conditions = (
            *_in_window(event_types, since, until, excluded_reasons),
            AuditEvent.client_ip.like(_ipv6_like(address_prefix)),
        )
        query = (
            select(AuditEvent.client_ip, func.count())
            .where(*conditions)
            .group_by(AuditEvent.client_ip)
        )
        counts = {
            address: count
            for address, count in await self._session.execute(query)
            if address is not None
        }
        summaries = select(AuditEvent.client_ip, AuditEvent.details).where(
            *conditions, AuditEvent.details.like(AGGREGATE_DETAILS_PREFIX + "%")
        )
        for address, details in await self._session.execute(summaries):
            if address is not None:
                counts[address] = counts.get(address, 0) + aggregated_count(details) - 1
        return counts

    async def previous_key_success(
        self, api_key_id: int, *, before_id: int, client_ip: str | None = None
    ) -> AuditEvent | None:
        """The latest accepted use of the key before event ``before_id`` (from ``client_ip``)."""
        query = select(AuditEvent).where(
            AuditEvent.api_key_id == api_key_id,
            AuditEvent.event_type == "API_KEY_ACCESS_SUCCESS",
            AuditEvent.id < before_id,
        )
        if client_ip is not None:
            query = query.where(AuditEvent.client_ip == client_ip)
        return await self._session.scalar(query.order_by(AuditEvent.id.desc()).limit(1))

    async def key_success_addresses(
        self, api_key_id: int, *, before_id: int, address_prefix: str
    ) -> set[str]:
        """The IPv6 addresses written starting with ``address_prefix`` that the key was
        accepted from before event ``before_id``."""
        query = (
            select(AuditEvent.client_ip)
            .where(
                AuditEvent.api_key_id == api_key_id,
                AuditEvent.event_type == "API_KEY_ACCESS_SUCCESS",
                AuditEvent.id < before_id,
                AuditEvent.client_ip.like(_ipv6_like(address_prefix)),
            )
            .distinct()
        )
        return {address for address in await self._session.scalars(query) if address}

    async def fired_subjects(self, rule_key: str, window_start: int) -> set[str]:
        """The subjects ``rule_key`` fired for in the window starting at ``window_start``."""
        query = select(FiredAlert.subject).where(
            FiredAlert.rule_key == rule_key, FiredAlert.window_start == window_start
        )
        return set(await self._session.scalars(query))

    async def key_public_ids(self, key_pks: Collection[int]) -> dict[int, str]:
        """The public UUIDs of these keys (by bigint id), for naming them in alerts."""
        if not key_pks:
            return {}
        query = select(ApiKey.id, ApiKey.public_id).where(ApiKey.id.in_(sorted(key_pks)))
        return {row.id: row.public_id for row in await self._session.execute(query)}

    async def keys_expiring_between(self, start: datetime, end: datetime) -> list[ApiKey]:
        query = select(ApiKey).where(
            ApiKey.revoked_at.is_(None),
            ApiKey.expires_at.is_not(None),
            ApiKey.expires_at > start,
            ApiKey.expires_at <= end,
        )
        return list(await self._session.scalars(query))


def _in_window(
    event_types: Sequence[str], since: datetime, until: datetime, excluded_reasons: Collection[str]
) -> list[ColumnElement[bool]]:
    conditions = [
        AuditEvent.event_type.in_(event_types),
        AuditEvent.occurred_at > since,
        AuditEvent.occurred_at <= until,
    ]
    if excluded_reasons:
        # NOT IN is never true for NULL: a record without a reason still counts.
        conditions.append(
            or_(AuditEvent.reason.is_(None), AuditEvent.reason.not_in(sorted(excluded_reasons)))
        )
    return conditions


def _ipv6_like(prefix: str) -> str:
    # The prefix is hex digits and colons (``networks.network_text_prefix``): nothing
    # to escape. Every IPv6 address has a colon, no IPv4 address has one.
    return f"{prefix}%:%" if not prefix else f"{prefix}%"
