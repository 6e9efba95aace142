"""The audit trail: append-only, keyed hash chain of security events, written in batches.

Recording an event is an O(1) append to a buffer (no I/O on the request path); a
background task writes the buffer every ``flush_interval`` seconds or when
``batch_size`` events wait, and a clean shutdown writes what is left.

Tamper evidence: every record carries ``hash = HMAC-SHA256(audit key, prev_hash |
canonical content)`` where ``prev_hash`` is the previous record's hash (by id), and the
chain's two end points, the head (newest record) and the retention anchor (last record
retention deleted), are signed under the same key. The key lives outside the database
(``AUTHGATE_AUDIT_KEY`` / ``_FILE``, or generated into the data dir), so someone who can
write the database can neither recompute hashes after an edit, nor move either end of
the chain: ``verify`` (``services.audit_verification``) reports every such change.
Signed checkpoints kept outside the database (``services.audit_checkpoints``) catch
the one thing left, a rollback of the whole trail to an earlier state of itself.

Appends take a row lock on ``audit_chain_head`` (PostgreSQL) or the write lock (SQLite)
first, so several workers and nodes extend one chain, never fork it. Retention deletes
a prefix of the chain (never a hole) and remembers, signed, the last record it deleted.

Trails written before the key: at the first start with a key, the chain is re-anchored
by an ``AUDIT_KEY_INTRODUCED`` record, hashed with the key and linked to the last plain
SHA-256 hash; records before it stay plain, every record after it is keyed.

What a record never holds: passwords, tokens, keys, peppers, request bodies or query
strings. Callers pass reason codes and ids, never credentials; ``details`` is a small
JSON object built by authgate's own code.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from authgate.clock import Clock, format_utc
from authgate.exceptions import ConfigurationError, FieldError, ValidationFailed
from authgate.security.audit_chain import GENESIS_HASH, AuditKey, LinkKind, plain_hash
from authgate.security.audit_checkpoints import Checkpoint
from authgate.security.principal import KeyReference, Principal
from authgate.services.audit_verification import (
    CHAIN_TAMPERED,
    KEY_FINGERPRINT_SETTING,
    KEY_INTRODUCED,
    ChainVerification,
    ChainVerifier,
)
from authgate.storage.audit_repository import (
    AuditFilter,
    AuditRepository,
    AuditRow,
    LinkSigner,
    SignedLink,
    refused_value,
)
from authgate.storage.cluster_repository import ClusterRepository
from authgate.storage.db import Database
from authgate.storage.paging import Page, PageRequest

__all__ = [
    "GENESIS_HASH",
    "OPERATOR",
    "SERVER",
    "Actor",
    "AuditEntry",
    "AuditLog",
    "ChainVerification",
    "EventType",
    "RequestInfo",
    "chain_hash",
    "current_request",
    "printable",
]

log = logging.getLogger(__name__)

AUDIT_KEY_FINGERPRINT = KEY_FINGERPRINT_SETTING

Outcome = Literal["success", "failure"]


# Records per INSERT statement when the buffer is written.
FLUSH_CHUNK = 100


class EventType(StrEnum):
    """Audit event types; UTMStack's names where it has them."""

    AUTH_SUCCESS = "AUTH_SUCCESS"
    AUTH_FAILURE = "AUTH_FAILURE"
    AUTH_LOCKOUT = "AUTH_LOCKOUT"
    LOGOUT = "LOGOUT"
    LOGOUT_ALL = "LOGOUT_ALL"
    # UTMStack v12's sessions (refresh-token families).
    SESSION_REVOKED = "SESSION_REVOKED"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    TOKEN_REJECTED = "TOKEN_REJECTED"
    # A protected resource was asked for without any credentials.
    CREDENTIALS_MISSING = "CREDENTIALS_MISSING"
    API_KEY_ACCESS_SUCCESS = "API_KEY_ACCESS_SUCCESS"
    API_KEY_ACCESS_FAILURE = "API_KEY_ACCESS_FAILURE"
    # Forward-auth refused an ambiguous upstream request before looking at credentials.
    FORWARD_AUTH_REFUSED = "FORWARD_AUTH_REFUSED"
    API_KEY_CREATED = "API_KEY_CREATED"
    API_KEY_UPDATED = "API_KEY_UPDATED"
    API_KEY_REGENERATED = "API_KEY_REGENERATED"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    API_KEY_SUSPENDED = "API_KEY_SUSPENDED"
    API_KEY_RESUMED = "API_KEY_RESUMED"
    API_KEY_EXPIRED = "API_KEY_EXPIRED"
    API_KEY_EXPIRING = "API_KEY_EXPIRING"
    # Service credentials (``X-Internal-Key``) and the internal calls they make.
    SERVICE_CREDENTIAL_CREATED = "SERVICE_CREDENTIAL_CREATED"
    SERVICE_CREDENTIAL_UPDATED = "SERVICE_CREDENTIAL_UPDATED"
    SERVICE_CREDENTIAL_ROTATED = "SERVICE_CREDENTIAL_ROTATED"
    SERVICE_CREDENTIAL_REVOKED = "SERVICE_CREDENTIAL_REVOKED"
    INTERNAL_CALL_REFUSED = "INTERNAL_CALL_REFUSED"
    RATE_LIMITED = "RATE_LIMITED"
    IP_BLOCKED = "IP_BLOCKED"
    USER_CREATED = "USER_CREATED"
    USER_UPDATED = "USER_UPDATED"
    USER_DEACTIVATED = "USER_DEACTIVATED"
    USER_DELETED = "USER_DELETED"
    PASSWORD_CHANGED = "PASSWORD_CHANGED"
    PASSWORD_RESET = "PASSWORD_RESET"
    # A reset link was asked for (or refused, throttled) or handed to an admin.
    PASSWORD_RESET_REQUESTED = "PASSWORD_RESET_REQUESTED"
    TFA_SUCCESS = "TFA_SUCCESS"
    TFA_FAILURE = "TFA_FAILURE"
    TFA_ENABLED = "TFA_ENABLED"
    TFA_DISABLED = "TFA_DISABLED"
    TFA_RECOVERY_CODES_REGENERATED = "TFA_RECOVERY_CODES_REGENERATED"
    ALERT_FIRED = "ALERT_FIRED"
    ALERT_RULE_CHANGED = "ALERT_RULE_CHANGED"
    # ``authgate import utmstack``: counts only, never a key or a password hash.
    UTMSTACK_IMPORTED = "UTMSTACK_IMPORTED"
    AUDIT_KEY_INTRODUCED = KEY_INTRODUCED
    AUDIT_CHAIN_TAMPERED = CHAIN_TAMPERED


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
# What the server does on its own (alerts, expiry reminders): no person acted.
SERVER = Actor(login="authgate (server)")


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
            "timestamp": format_utc(self.occurred_at, timespec="microseconds"),
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


class AuditLog:
    def __init__(
        self,
        *,
        db: Database,
        key: AuditKey,
        clock: Clock,
        flush_interval: float,
        retention: timedelta,
        batch_size: int = 1000,
        max_buffered: int = 100_000,
    ) -> None:
        self._db = db
        self._key = key
        # Whether this process knows the chain is keyed (it introduced the key, or saw the
        # head signed): from then on an unsigned head is tampering, never "not yet keyed".
        self._introduced = False
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
    def key(self) -> AuditKey:
        return self._key

    @property
    def introduced(self) -> bool:
        """Whether this process writes the chain keyed."""
        return self._introduced

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
            head = await repository.lock_chain_head(GENESIS_HASH)
            keyed, batch = self._judge(head, batch)
            hashed = self._hasher(keyed)
            previous = head.hash
            # Hashed and inserted in chunks, each one statement: a large batch never
            # holds the event loop for long (a record costs tens of microseconds).
            for start in range(0, len(batch), FLUSH_CHUNK):
                chained = []
                for row in batch[start : start + FLUSH_CHUNK]:
                    own = hashed(previous, row.canonical())
                    chained.append((row, previous, own))
                    previous = own
                await repository.insert(chained)
            await repository.move_head(previous, sign=self._signer(keyed))

    async def _append_each(self, batch: list[AuditRow]) -> int:
        """Append record by record, dropping (and counting) those the database refuses;
        the chain links the records that were written."""
        refused = 0
        async with self._db.transaction() as session:
            repository = AuditRepository(session)
            head = await repository.lock_chain_head(GENESIS_HASH)
            keyed, batch = self._judge(head, batch)
            hashed = self._hasher(keyed)
            previous = head.hash
            for row in batch:
                own = hashed(previous, row.canonical())
                try:
                    async with session.begin_nested():
                        await repository.insert([(row, previous, own)])
                except Exception as error:
                    if not refused_value(error):
                        raise
                    refused += 1
                    continue
                previous = own
            if previous != head.hash:
                await repository.move_head(previous, sign=self._signer(keyed))
        if refused:
            # The count only: the refused content may be anything an attacker sent.
            log.error("the database refused %d audit records; they were dropped", refused)
            self._dropped += refused
        return len(batch) - refused

    def _judge(self, head: SignedLink, batch: list[AuditRow]) -> tuple[bool, list[AuditRow]]:
        """Whether to write keyed, and the records to write (with a tampering record
        first when the head was moved by something without the key)."""
        if self._key.signs_link("head", head.id, head.hash, head.mac):
            self._introduced = True
            return True, batch
        if head.mac is None and not self._introduced:
            return False, batch  # the key is not introduced yet: plain, like older nodes
        # Signing this head now would bless whatever was done to the chain: the finding
        # goes into the chain itself, under the key, where verify reports it.
        problem = "head_not_signed" if head.mac is None else "head_signature_mismatch"
        log.error(
            "the audit chain head (record %d) is not signed with the audit key (%s): "
            "records were deleted or replaced by something without the key; recorded as "
            "AUDIT_CHAIN_TAMPERED, run `authgate audit verify`",
            head.id,
            problem,
        )
        self._introduced = True
        tampered = self._system_row(
            EventType.AUDIT_CHAIN_TAMPERED,
            "failure",
            reason=problem,
            details={"headId": head.id, "headHash": printable(head.hash[:64])},
        )
        return True, [tampered, *batch]

    def _hasher(self, keyed: bool) -> Callable[[str, str], str]:
        return self._key.record_hash if keyed else plain_hash

    def _signer(self, keyed: bool, *, kind: LinkKind = "head") -> LinkSigner:
        if not keyed:
            return lambda _id, _hash: None
        return lambda record_id, record_hash: self._key.link_mac(kind, record_id, record_hash)

    def _system_row(
        self,
        event_type: EventType,
        outcome: Outcome,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRow:
        """A record authgate writes about the chain itself (no request, no actor)."""
        return AuditRow(
            occurred_at=self._clock(),
            event_type=event_type.value,
            outcome=outcome,
            actor_login=None,
            actor_user_id=None,
            api_key_id=None,
            api_key_name=None,
            client_ip=None,
            user_agent=None,
            request_path=None,
            reason=reason,
            correlation_id=None,
            details=json.dumps(dict(details), sort_keys=True) if details else None,
        )

    # -- the audit key --------------------------------------------------------------------

    async def check_key(self) -> None:
        """Refuse to run with an audit key other than the one the chain is keyed with:
        every record this process wrote would read as forged.

        The fingerprint stored in the database says which key that is; should it
        disagree while the chain head is signed with this very key, the stored value is
        what is wrong (it is corrected).
        """
        async with self._db.session() as session:
            stored = await ClusterRepository(session).setting(AUDIT_KEY_FINGERPRINT)
            head = await AuditRepository(session).chain_head()
        mine = self._key.fingerprint
        if stored is None or stored == mine:
            return
        if head is not None and self._key.signs_link("head", head.id, head.hash, head.mac):
            log.warning("the stored audit key fingerprint was wrong; corrected")
            async with self._db.transaction() as session:
                await ClusterRepository(session).put_setting(
                    AUDIT_KEY_FINGERPRINT, mine, now=self._clock()
                )
            return
        raise ConfigurationError(
            "this process's audit key is not the one the audit trail is keyed with, so "
            "every record it wrote would read as forged: give every node (and the CLI) the "
            "same AUTHGATE_AUDIT_KEY_FILE or AUTHGATE_AUDIT_KEY (audit key fingerprints: "
            f"database {stored[:12]}, this process {mine[:12]})"
        )

    async def introduce_key(self, *, node: str) -> int | None:
        """Key the chain from now on, once per deployment: sign a new trail's head, or
        re-anchor an existing plain SHA-256 chain with an ``AUDIT_KEY_INTRODUCED`` record
        hashed with the key (and sign its retention anchor). Returns that record's id.

        Call only when no node of an older version is running (it would go on writing
        plain records). Never introduces twice: a chain that was keyed once and whose
        head lost its signature is tampering (the next write records it), not a trail
        to re-anchor as it now stands.
        """
        async with self._db.transaction() as session:
            repository = AuditRepository(session)
            deployment = ClusterRepository(session)
            head = await repository.lock_chain_head(GENESIS_HASH)
            if head.mac is not None:
                self._introduced = True  # signed (or tampered with: the writer reports it)
                return None
            if await deployment.setting(AUDIT_KEY_FINGERPRINT) is not None or (
                await self._keyed_record(repository, head.id)
            ):
                log.error(
                    "the audit chain was keyed before but its head is no longer signed: "
                    "not introducing the key again; run `authgate audit verify`"
                )
                self._introduced = True
                return None
            introduced = await self._re_anchor(repository, head, node)
            await deployment.put_setting(
                AUDIT_KEY_FINGERPRINT, self._key.fingerprint, now=self._clock()
            )
        self._introduced = True
        if introduced is not None:
            log.warning(
                "audit key introduced: records up to %d stay plain SHA-256, record %d and "
                "every later one are keyed",
                introduced - 1,
                introduced,
            )
        return introduced

    async def _re_anchor(
        self, repository: AuditRepository, head: SignedLink, node: str
    ) -> int | None:
        anchor = await repository.retention_anchor()
        if head.id == 0 and anchor is None and not await repository.any_record():
            # A new trail: keyed from its first record.
            await repository.sign_head(self._key.link_mac("head", head.id, head.hash))
            return None
        if anchor is not None:
            mac = self._key.link_mac("retention", anchor.id, anchor.hash)
            await repository.sign_retention_anchor(mac)
        row = self._system_row(
            EventType.AUDIT_KEY_INTRODUCED,
            "success",
            details={
                "keyFingerprint": self._key.fingerprint[:12],
                "lastPlainRecord": head.id,
                "node": node,
            },
        )
        own = self._key.record_hash(head.hash, row.canonical())
        await repository.append([(row, head.hash, own)], sign=self._signer(True))
        introduced = await repository.chain_head()
        return introduced.id if introduced is not None else None

    async def _keyed_record(self, repository: AuditRepository, record_id: int) -> bool:
        """Whether record ``record_id`` is hashed with the key (a keyed chain's head)."""
        stored = await repository.record(record_id) if record_id else None
        if stored is None:
            return False
        canonical = AuditRow.of_model(stored).canonical()
        return self._key.record_hash(stored.prev_hash, canonical) == stored.hash

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

    async def verify(
        self, *, checkpoint: Checkpoint | None = None, chunk: int = 5000
    ) -> ChainVerification:
        """Check the whole chain under the audit key, and against ``checkpoint`` if
        given (see ``services.audit_verification``)."""
        return await ChainVerifier(self._db, self._key).verify(checkpoint=checkpoint, chunk=chunk)

    async def delete_expired(self) -> int:
        """Retention: drop the oldest records, up to the first one within the configured
        period; the last one dropped becomes the chain's (signed) retention anchor.

        Skipped, and logged, when an end of the chain is not signed as it should be:
        retention would otherwise sign a new anchor past the evidence.
        """
        async with self._db.transaction() as session:
            repository = AuditRepository(session)
            head = await repository.lock_existing_head()
            if head is None:
                return 0  # nothing was ever written
            sign: LinkSigner
            if self._key.signs_link("head", head.id, head.hash, head.mac):
                anchor = await repository.retention_anchor()
                if anchor is not None and not self._key.signs_link(
                    "retention", anchor.id, anchor.hash, anchor.mac
                ):
                    log.error(
                        "audit retention skipped: the retention anchor is not signed with "
                        "the audit key; run `authgate audit verify`"
                    )
                    return 0
                sign = self._signer(True, kind="retention")
            elif head.mac is None and not self._introduced:
                sign = self._signer(False)
            else:
                log.error(
                    "audit retention skipped: the chain head is not signed with the audit "
                    "key; run `authgate audit verify`"
                )
                return 0
            cutoff = self._clock() - self._retention
            return await repository.delete_before(cutoff, head, sign=sign)


Listener = Callable[[AuditRow], None]


# C0 control characters and DEL: PostgreSQL refuses NUL in text (one such record
# would stop every later write), and the others do not belong in a trail that is
# shown to people and sent to syslog.
_CONTROL_CHARACTERS = dict.fromkeys([*range(0x20), 0x7F], "\ufffd")


def printable(text: str | None) -> str | None:
    """``text`` with control characters replaced by U+FFFD (for text from requests)."""
    return text.translate(_CONTROL_CHARACTERS) if text else text


def chain_hash(previous: str, row: AuditRow) -> str:
    """The plain SHA-256 hash a record had before the audit key (and still has in the
    plain prefix of a re-anchored chain)."""
    return plain_hash(previous, row.canonical())


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
