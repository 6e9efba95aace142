"""The audit trail: append-only, hash-chained security events, written in batches.

Recording an event is an O(1) append to a buffer (no I/O on the request path); a
background task writes the buffer every ``flush_interval`` seconds or when
``batch_size`` events wait, and a clean shutdown writes what is left.

Tamper evidence: every record carries ``hash = SHA-256(prev_hash + canonical content)``
where ``prev_hash`` is the previous record's hash (by id). Changing a stored field,
deleting a record or inserting one breaks the chain at that point, which ``verify``
reports. Appends take a row lock on ``audit_chain_head`` (PostgreSQL) or the write lock
(SQLite) first, so several workers and nodes extend one chain, never fork it. Retention
deletes a prefix of the chain (never a hole) and remembers the last record it deleted:
the oldest remaining record links to that anchor (or to the genesis hash), so deleting
the oldest records by hand is reported too, and a trail emptied by retention verifies.

What a record never holds: passwords, tokens, keys, peppers, request bodies or query
strings. Callers pass reason codes and ids, never credentials; ``details`` is a small
JSON object built by authgate's own code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from authgate.clock import Clock
from authgate.exceptions import FieldError, ValidationFailed
from authgate.security.principal import KeyReference, Principal
from authgate.storage.audit_repository import (
    AuditFilter,
    AuditRepository,
    AuditRow,
    ChainLink,
    refused_value,
)
from authgate.storage.db import Database
from authgate.storage.models import AuditEvent
from authgate.storage.paging import Page, PageRequest

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64

Outcome = Literal["success", "failure"]


class EventType(StrEnum):
    """Audit event types; UTMStack's names where it has them."""

    AUTH_SUCCESS = "AUTH_SUCCESS"
    AUTH_FAILURE = "AUTH_FAILURE"
    AUTH_LOCKOUT = "AUTH_LOCKOUT"
    LOGOUT = "LOGOUT"
    LOGOUT_ALL = "LOGOUT_ALL"
    TOKEN_REJECTED = "TOKEN_REJECTED"
    API_KEY_ACCESS_SUCCESS = "API_KEY_ACCESS_SUCCESS"
    API_KEY_ACCESS_FAILURE = "API_KEY_ACCESS_FAILURE"
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_UPDATED = "API_KEY_UPDATED"
    API_KEY_REGENERATED = "API_KEY_REGENERATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    API_KEY_SUSPENDED = "API_KEY_SUSPENDED"
    API_KEY_RESUMED = "API_KEY_RESUMED"
    API_KEY_EXPIRED = "API_KEY_EXPIRED"
    API_KEY_EXPIRING = "API_KEY_EXPIRING"
    RATE_LIMITED = "RATE_LIMITED"
    IP_BLOCKED = "IP_BLOCKED"
    USER_CREATED = "USER_CREATED"
    USER_UPDATED = "USER_UPDATED"
    USER_DEACTIVATED = "USER_DEACTIVATED"
    USER_DELETED = "USER_DELETED"
    PASSWORD_CHANGED = "PASSWORD_CHANGED"
    PASSWORD_RESET = "PASSWORD_RESET"
    ALERT_FIRED = "ALERT_FIRED"
    ALERT_RULE_CHANGED = "ALERT_RULE_CHANGED"


class RequestInfo(Protocol):
    """What the HTTP layer knows about the current request (read lazily)."""

    @property
    def client_ip(self) -> str | None: ...

    @property
    def user_agent(self) -> str | None: ...

    @property
    def path(self) -> str | None: ...

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def principal(self) -> Principal | None:
        """The authenticated caller, once known."""
        ...


# Set by the HTTP layer for the duration of a request; None outside requests (CLI, jobs).
current_request: ContextVar[RequestInfo | None] = ContextVar("authgate_request", default=None)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who an event is about or by: a login, a user id, an API key."""

    login: str | None = None
    user_id: int | None = None
    key: KeyReference | None = None

    @classmethod
    def of(cls, principal: Principal | None, *, key: KeyReference | None = None) -> Actor:
        """The principal (the operator when None), optionally about ``key``."""
        if principal is None:
            return cls(login=OPERATOR.login, key=key)
        return cls(login=principal.login, user_id=principal.user_id, key=key or principal.api_key)


# Changes made from the server's command line.
OPERATOR = Actor(login="operator (CLI)")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A stored audit record, as read back."""

    id: int
    occurred_at: datetime
    event_type: str
    outcome: str
    actor_login: str | None
    actor_user_id: int | None
    api_key_id: int | None
    api_key_name: str | None
    client_ip: str | None
    user_agent: str | None
    request_path: str | None
    reason: str | None
    correlation_id: str | None
    details: dict[str, Any] | None
    hash: str

    def as_record(self) -> dict[str, Any]:
        """The entry under its public (API and export) field names, JSON-ready."""
        return {
            "id": self.id,
            "timestamp": self.occurred_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "type": self.event_type,
            "outcome": self.outcome,
            "actor": self.actor_login,
            "userId": self.actor_user_id,
            "apiKeyId": self.api_key_id,
            "apiKeyName": self.api_key_name,
            "ipAddress": self.client_ip,
            "userAgent": self.user_agent,
            "path": self.request_path,
            "reason": self.reason,
            "correlationId": self.correlation_id,
            "details": self.details,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class ChainVerification:
    checked: int
    first_broken_id: int | None
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.first_broken_id is None


class AuditLog:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        flush_interval: float,
        retention: timedelta,
        batch_size: int = 1000,
        max_buffered: int = 100_000,
    ) -> None:
        self._db = db
        self._clock = clock
        self._flush_interval = flush_interval
        self._retention = retention
        self._batch_size = batch_size
        self._buffer: deque[AuditRow] = deque(maxlen=max_buffered)
        self._dropped = 0
        self._written = 0
        self._lock = asyncio.Lock()
        self._batch_ready: asyncio.Event | None = None
        self._listeners: list[Listener] = []

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def dropped(self) -> int:
        return self._dropped

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every event as it is recorded (metrics, counters)."""
        self._listeners.append(listener)

    def record(
        self,
        event_type: EventType,
        outcome: Outcome,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Queue one event; the current request's address, agent, path and correlation
        id are added. Without ``actor``, the request's caller is the actor (the operator
        outside requests). O(1), no I/O."""
        request = current_request.get()
        if actor is None:
            caller = request.principal if request else None
            actor = Actor.of(caller) if caller is not None or request is None else None
        key = actor.key if actor else None
        row = AuditRow(
            occurred_at=occurred_at or self._clock(),
            event_type=event_type.value,
            outcome=outcome,
            actor_login=printable(actor.login) if actor else None,
            actor_user_id=actor.user_id if actor else None,
            api_key_id=key.key_id if key else None,
            api_key_name=printable(key.name) if key else None,
            client_ip=request.client_ip if request else None,
            user_agent=printable((request.user_agent or "")[:512]) or None if request else None,
            request_path=printable((request.path or "")[:2048]) or None if request else None,
            reason=reason,
            correlation_id=request.correlation_id if request else None,
            details=json.dumps(dict(details), sort_keys=True, default=str) if details else None,
        )
        if len(self._buffer) == self._buffer.maxlen:
            self._dropped += 1
        self._buffer.append(row)
        for listener in self._listeners:
            listener(row)
        if len(self._buffer) >= self._batch_size and self._batch_ready is not None:
            self._batch_ready.set()

    async def flush(self) -> int:
        """Append everything buffered to the chain; returns how many records were written."""
        async with self._lock:
            batch = list(self._buffer)
            if not batch:
                return 0
            self._buffer.clear()
            try:
                try:
                    await self._append(batch)
                    written = len(batch)
                except Exception as error:
                    if not refused_value(error):
                        raise
                    # `record` makes every value storable, but should the database still
                    # refuse one, that record must not block the trail for good (the
                    # batch would be retried forever): write them one by one instead.
                    written = await self._append_each(batch)
            except Exception:
                self._buffer.extendleft(reversed(batch))
                raise
            self._written += written
            return written

    async def _append(self, batch: list[AuditRow]) -> None:
        async with self._db.transaction() as session:
            repository = AuditRepository(session)
            previous = await repository.lock_chain_head(GENESIS_HASH)
            chained = []
            for row in batch:
                own = chain_hash(previous, row)
                chained.append((row, previous, own))
                previous = own
            await repository.append(chained)

    async def _append_each(self, batch: list[AuditRow]) -> int:
        """Append record by record, dropping (and counting) those the database refuses;
        the chain links the records that were written."""
        refused = 0
        async with self._db.transaction() as session:
            repository = AuditRepository(session)
            head = previous = await repository.lock_chain_head(GENESIS_HASH)
            for row in batch:
                own = chain_hash(previous, row)
                try:
                    async with session.begin_nested():
                        await repository.insert([(row, previous, own)])
                except Exception as error:
                    if not refused_value(error):
                        raise
                    refused += 1
                    continue
                previous = own
            if previous != head:
                await repository.move_head(previous)
        if refused:
            # The count only: the refused content may be anything an attacker sent.
            log.error("the database refused %d audit records; they were dropped", refused)
            self._dropped += refused
        return len(batch) - refused

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every interval or when a batch is ready, until ``stop``; then once more."""
        self._batch_ready = asyncio.Event()
        failing = False
        while not stop.is_set():
            waits = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._batch_ready.wait()),
            ]
            await asyncio.wait(waits, timeout=self._flush_interval, return_when="FIRST_COMPLETED")
            for waiting in waits:
                waiting.cancel()
            self._batch_ready.clear()
            try:
                await self.flush()
                failing = False
            except Exception as error:  # noqa: BLE001 - retried at the next tick
                if not failing:
                    log.warning("writing the audit trail failed: %s", type(error).__name__)
                failing = True

    async def search(self, where: AuditFilter, request: PageRequest) -> Page[AuditEntry]:
        if any(order.field not in AuditRepository.SORT_COLUMNS for order in request.sort):
            message = "Unknown sort field; use one of " + ", ".join(AuditRepository.SORT_COLUMNS)
            raise ValidationFailed(message, field_errors=[FieldError("sort", message, "query")])
        async with self._db.session() as session:
            repository = AuditRepository(session)
            total = await repository.count(where)
            rows = await repository.page(where, request)
        return Page(items=[_entry(row) for row in rows], total=total, request=request)

    async def stream(
        self, where: AuditFilter, *, after: int = 0, chunk: int = 1000
    ) -> AsyncIterator[AuditEntry]:
        """Every matching record with an id above ``after``, oldest first, in chunks."""
        while True:
            async with self._db.session() as session:
                rows = await AuditRepository(session).after(after, where, limit=chunk)
            for row in rows:
                yield _entry(row)
            if len(rows) < chunk:
                return
            after = rows[-1].id

    async def verify(self, *, chunk: int = 5000) -> ChainVerification:
        """Walk the chain from the oldest record to the chain head; report the first
        link that does not hold.

        The head is read first and only the records up to it are walked, so records
        other workers or nodes append meanwhile are not taken for tampering. The oldest
        record links to the genesis hash, or to the last record retention deleted.
        """
        async with self._db.session() as session:
            repository = AuditRepository(session)
            head = await repository.chain_head()
            anchor = await repository.retention_anchor()
        start = anchor or ChainLink(0, GENESIS_HASH)
        previous = start
        checked = 0
        after = 0  # from the very first id: a record older than the anchor is foreign
        while head is not None:
            async with self._db.session() as session:
                rows = await AuditRepository(session).chain(after, head.id, limit=chunk)
            for stored in rows:
                if stored.prev_hash != previous.hash and not await self._cut_by_retention(
                    start, previous, stored
                ):
                    return ChainVerification(
                        checked, stored.id, "the previous record is missing or was changed"
                    )
                if chain_hash(stored.prev_hash, AuditRow.of_model(stored)) != stored.hash:
                    return ChainVerification(checked, stored.id, "this record was changed")
                previous = ChainLink(stored.id, stored.hash)
                checked += 1
            if len(rows) < chunk:
                break
            after = rows[-1].id
        if head is not None and previous.hash != head.hash:
            async with self._db.session() as session:
                anchor = await AuditRepository(session).retention_anchor()
            if anchor == start or anchor != head:  # else retention removed them meanwhile
                # The head names a later record than the last one left: the newest were removed.
                return ChainVerification(
                    checked, previous.id + 1, "the newest records were deleted"
                )
        async with self._db.session() as session:
            extra = await AuditRepository(session).first_after_head()
        if extra is not None:
            return ChainVerification(
                checked, extra, "a record after the newest one was not written by authgate"
            )
        return ChainVerification(checked, None, None)

    async def _cut_by_retention(
        self, start: ChainLink, previous: ChainLink, stored: AuditEvent
    ) -> bool:
        """Whether retention, running on some node while ``verify`` walks, deleted the
        records between ``previous`` and ``stored`` (the anchor moved to right before
        ``stored``); a gap the anchor already named at the start is tampering."""
        async with self._db.session() as session:
            anchor = await AuditRepository(session).retention_anchor()
        return (
            anchor is not None
            and anchor != start
            and anchor.hash == stored.prev_hash
            and previous.id <= anchor.id < stored.id
        )

    async def delete_expired(self) -> int:
        """Retention: drop the oldest records, up to the first one within the configured
        period; the last one dropped becomes the chain's retention anchor."""
        async with self._db.transaction() as session:
            return await AuditRepository(session).delete_before(self._clock() - self._retention)


Listener = Callable[[AuditRow], None]


# C0 control characters and DEL: PostgreSQL refuses NUL in text (one such record
# would stop every later write), and the others do not belong in a trail that is
# shown to people and sent to syslog.
_CONTROL_CHARACTERS = dict.fromkeys([*range(0x20), 0x7F], "\ufffd")


def printable(text: str | None) -> str | None:
    """``text`` with control characters replaced by U+FFFD (for text from requests)."""
    return text.translate(_CONTROL_CHARACTERS) if text else text


def chain_hash(previous: str, row: AuditRow) -> str:
    """SHA-256 over the previous hash and a canonical JSON of the record's content."""
    canonical = json.dumps(row.content(), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{previous}|{canonical}".encode("ascii")).hexdigest()


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        occurred_at=row.occurred_at,
        event_type=row.event_type,
        outcome=row.outcome,
        actor_login=row.actor_login,
        actor_user_id=row.actor_user_id,
        api_key_id=row.api_key_id,
        api_key_name=row.api_key_name,
        client_ip=row.client_ip,
        user_agent=row.user_agent,
        request_path=row.request_path,
        reason=row.reason,
        correlation_id=row.correlation_id,
        details=json.loads(row.details) if row.details else None,
        hash=row.hash,
    )
