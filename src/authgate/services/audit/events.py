"""What the audit trail records: the event types, who acted (``Actor``), what the HTTP
layer knows about the current request (``current_request``), and a record as read back
(``AuditEntry``).

What a record never holds: passwords, tokens, keys, peppers, request bodies or query
strings. Callers pass reason codes and ids, never credentials; ``details`` is a small
JSON object built by authgate's own code.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

from authgate.clock import format_utc
from authgate.security.principal import KeyReference, Principal
from authgate.services.audit_verification import CHAIN_TAMPERED, KEY_INTRODUCED

Outcome = Literal["success", "failure"]


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
    api_key_public_id: str | None  # the key's public UUID (the record stores its key_pk)
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
            "apiKeyId": self.api_key_public_id,
            "apiKeyName": self.api_key_name,
            "ipAddress": self.client_ip,
            "userAgent": self.user_agent,
            "path": self.request_path,
            "reason": self.reason,
            "correlationId": self.correlation_id,
            "details": self.details,
            "hash": self.hash,
        }

    @classmethod
    def of(cls, row: Any, key_public_id: str | None) -> AuditEntry:
        """The entry of a stored record (a model or a result row). A key is named by
        its public UUID (the stored bigint id stays in the record and its hash)."""
        return cls(
            id=row.id,
            occurred_at=row.occurred_at,
            event_type=row.event_type,
            outcome=row.outcome,
            actor_login=row.actor_login,
            actor_user_id=row.actor_user_id,
            api_key_public_id=key_public_id,
            api_key_name=row.api_key_name,
            client_ip=row.client_ip,
            user_agent=row.user_agent,
            request_path=row.request_path,
            reason=row.reason,
            correlation_id=row.correlation_id,
            details=json.loads(row.details) if row.details else None,
            hash=row.hash,
        )


# C0 control characters and DEL: PostgreSQL refuses NUL in text (one such record
# would stop every later write), and the others do not belong in a trail that is
# shown to people and sent to syslog.
_CONTROL_CHARACTERS = dict.fromkeys(
    [
        *range(0x20),
        *range(0x7F, 0xA0),  # DEL and C1 (NEL, U+0085, ends a line for some readers)
        0x2028,  # line and paragraph separators
        0x2029,
        0x200E,  # and the bidirectional controls, which make a line read as other text
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    ],
    "\ufffd",
)


def printable(text: str | None) -> str | None:
    """``text`` with control characters replaced by U+FFFD (for text from requests)."""
    return text.translate(_CONTROL_CHARACTERS) if text else text


# How much of a request's own text a record keeps: enough to tell what was asked for
# and by what, not a store for whatever a caller sends (a refused request is free to
# send; its record is not).
PATH_MAX: Final = 512
USER_AGENT_MAX: Final = 256
TRUNCATED: Final = "\u2026[truncated]"


def clipped(text: str | None, limit: int) -> str | None:
    """``printable(text)``, cut to at most ``limit`` characters and then ending with
    ``TRUNCATED`` when it was longer; ``None`` for no text."""
    if not text:
        return None
    if len(text) > limit:
        text = text[: limit - len(TRUNCATED)] + TRUNCATED
    return printable(text)
