"""What the typed helpers return: frozen dataclasses with Python names.

Parsing is lenient on purpose: a field the server does not send (UTMStack's DTOs have
fewer fields than authgate's) becomes ``None`` or empty, never an error, so the same
helpers work against both servers. Unknown fields are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Self, TypeVar

from authgate.client._config import mask_secret

__all__ = [
    "Account",
    "ApiKey",
    "AuditEvent",
    "CreatedApiKey",
    "Page",
    "RegeneratedApiKey",
    "Role",
    "SessionInfo",
    "Token",
    "TokenPair",
    "UsageRecord",
    "User",
    "V12User",
]

T = TypeVar("T")


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # UTMStack's table keeps allowed IPs comma-joined
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return ()


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token from a login; ``expires_at`` is read from its ``exp``, unverified."""

    value: str = field(repr=False)
    expires_at: datetime | None

    def __repr__(self) -> str:
        return f"Token(value='**********', expires_at={self.expires_at!r})"


@dataclass(frozen=True, slots=True)
class TokenPair:
    """A v12 login or refresh: the access token and the refresh token that renews it
    (single use: each refresh returns a new one). Never shown by ``repr``."""

    access: Token
    refresh_token: str = field(repr=False)
    refresh_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class User:
    """A user (JHipster's user DTO)."""

    id: int | None
    login: str
    email: str | None
    first_name: str | None
    last_name: str | None
    activated: bool
    lang_key: str | None
    authorities: tuple[str, ...]
    created_at: datetime | None
    updated_at: datetime | None
    created_by: str | None = None
    last_modified_by: str | None = None
    # Only in create_user's answer, for a user created without a password when the
    # server could not e-mail the link: the single-use link (24 h), shown this once.
    # Not in the repr: whoever holds it sets the user's password.
    reset_link: str | None = field(default=None, repr=False)

    @property
    def is_admin(self) -> bool:
        return "ROLE_ADMIN" in self.authorities

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            id=_int(data.get("id")),
            login=str(data.get("login", "")),
            email=_text(data.get("email")),
            first_name=_text(data.get("firstName")),
            last_name=_text(data.get("lastName")),
            activated=bool(data.get("activated", True)),
            lang_key=_text(data.get("langKey")),
            authorities=_strings(data.get("authorities")),
            created_at=_instant(data.get("createdDate")),
            updated_at=_instant(data.get("lastModifiedDate")),
            created_by=_text(data.get("createdBy")),
            last_modified_by=_text(data.get("lastModifiedBy")),
            reset_link=_text(data.get("resetLink")),
        )


@dataclass(frozen=True, slots=True)
class Account(User):
    """The caller's own user (``GET /api/account``)."""


@dataclass(frozen=True, slots=True)
class Role:
    """A role and the permissions it grants (``GET /api/v1/roles/{id}``)."""

    name: str
    description: str
    permissions: tuple[str, ...]
    id: str = ""
    display_name: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        permissions = data.get("permissions")
        return cls(
            name=str(data.get("name", "")),
            description=str(data.get("description", "")),
            # v12's shape, [{name, description}]; names alone are read too.
            permissions=tuple(
                str(item.get("name", "")) if isinstance(item, dict) else str(item)
                for item in (permissions if isinstance(permissions, list) else ())
            ),
            id=str(data.get("id", "")),
            display_name=str(data.get("display_name", "")),
        )


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's description; never the key itself."""

    id: str  # the key's UUID
    name: str
    allowed_ips: tuple[str, ...]
    created_at: datetime | None
    expires_at: datetime | None
    generated_at: datetime | None
    prefix: str | None
    scopes: tuple[str, ...]
    status: str | None
    last_used_at: datetime | None
    last_used_ip: str | None
    rate_limit: str | None
    revoked_at: datetime | None
    rotation_grace_until: datetime | None
    user_id: int | None
    # Imported from UTMStack and not rotated: rotate it (UTMStack stored its plaintext).
    legacy: bool = False

    @classmethod
    def fields_from_json(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": str(data["id"]),
            "name": str(data.get("name", "")),
            "allowed_ips": _strings(data.get("allowedIp")),
            "created_at": _instant(data.get("createdAt")),
            "expires_at": _instant(data.get("expiresAt")),
            "generated_at": _instant(data.get("generatedAt")),
            "prefix": _text(data.get("prefix")),
            "scopes": _strings(data.get("scopes")),
            "status": _text(data.get("status")),
            "last_used_at": _instant(data.get("lastUsedAt")),
            "last_used_ip": _text(data.get("lastUsedIp")),
            "rate_limit": _text(data.get("rateLimit")),
            "revoked_at": _instant(data.get("revokedAt")),
            "rotation_grace_until": _instant(data.get("rotationGraceUntil")),
            "user_id": _int(data.get("userId")),
            "legacy": data.get("legacy") is True,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKey:
        return cls(**cls.fields_from_json(data))


@dataclass(frozen=True, slots=True, repr=False)
class CreatedApiKey(ApiKey):
    """A new key: its description and, once, the key. ``repr`` shows only its prefix."""

    key: str = ""

    def __repr__(self) -> str:
        return (
            f"CreatedApiKey(id={self.id!r}, name={self.name!r}, "
            f"key={mask_secret(self.key)!r}, expires_at={self.expires_at!r})"
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreatedApiKey:
        return cls(**cls.fields_from_json(data), key=str(data.get("key", "")))


@dataclass(frozen=True, slots=True)
class RegeneratedApiKey:
    """The new secret of a regenerated key, shown once. ``repr`` shows only its prefix."""

    id: str
    key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"RegeneratedApiKey(id={self.id!r}, key={mask_secret(self.key)!r})"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request made with an API key (accepted or refused)."""

    id: int | None
    api_key_id: str | None  # the key's UUID
    api_key_name: str | None
    user_id: int | None
    timestamp: datetime | None
    endpoint: str | None
    method: str | None
    status: int | None
    ip_address: str | None
    user_agent: str | None
    latency_ms: float | None
    error_message: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageRecord:
        latency = data.get("latencyMs")
        return cls(
            id=_int(data.get("id")),
            api_key_id=_text(data.get("apiKeyId")),
            api_key_name=_text(data.get("apiKeyName")),
            user_id=_int(data.get("userId")),
            timestamp=_instant(data.get("timestamp")),
            endpoint=_text(data.get("endpoint")),
            method=_text(data.get("requestMethod")),
            status=_int(data.get("responseCode")),
            ip_address=_text(data.get("ipAddress")),
            user_agent=_text(data.get("userAgent")),
            latency_ms=float(latency) if isinstance(latency, int | float) else None,
            error_message=_text(data.get("errorMessage")),
        )


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One record of the audit trail."""

    id: int
    timestamp: datetime | None
    type: str
    outcome: str | None
    actor: str | None
    user_id: int | None
    api_key_id: str | None  # the key's UUID
    api_key_name: str | None
    ip_address: str | None
    user_agent: str | None
    path: str | None
    reason: str | None
    correlation_id: str | None
    details: Mapping[str, Any] | None
    hash: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEvent:
        details = data.get("details")
        return cls(
            id=int(data["id"]),
            timestamp=_instant(data.get("timestamp")),
            type=str(data.get("type", "")),
            outcome=_text(data.get("outcome")),
            actor=_text(data.get("actor")),
            user_id=_int(data.get("userId")),
            api_key_id=_text(data.get("apiKeyId")),
            api_key_name=_text(data.get("apiKeyName")),
            ip_address=_text(data.get("ipAddress")),
            user_agent=_text(data.get("userAgent")),
            path=_text(data.get("path")),
            reason=_text(data.get("reason")),
            correlation_id=_text(data.get("correlationId")),
            details=details if isinstance(details, dict) else None,
            hash=_text(data.get("hash")),
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``total`` is the server's ``X-Total-Count`` (if sent)."""

    items: tuple[T, ...]
    total: int | None
    page: int
    size: int

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_next(self) -> bool:
        """Whether a further page may hold more items."""
        if self.total is not None:
            return (self.page + 1) * self.size < self.total
        return len(self.items) == self.size


@dataclass(frozen=True, slots=True)
class V12User:
    """The caller as v12 shows them (``GET /api/v1/auth/me``); ``id`` is a UUID."""

    id: str
    email: str | None
    name: str | None
    status: str | None
    lang_key: str | None
    image_url: str | None
    federated: bool
    tfa_enabled: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> V12User:
        return cls(
            id=str(data.get("id", "")),
            email=_text(data.get("email")),
            name=_text(data.get("name")),
            status=_text(data.get("status")),
            lang_key=_text(data.get("lang_key")),
            image_url=_text(data.get("image_url")),
            federated=data.get("federated") is True,
            tfa_enabled=data.get("tfa_enabled") is True,
        )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One of the caller's v12 sessions (a refresh-token family): where it signed in
    from, and whether it is the one making the request."""

    id: str
    ip: str | None
    user_agent: str | None
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    current: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionInfo:
        return cls(
            id=str(data.get("id", "")),
            ip=_text(data.get("ip")),
            user_agent=_text(data.get("user_agent")),
            created_at=_instant(data.get("created_at")),
            last_used_at=_instant(data.get("last_used_at")),
            expires_at=_instant(data.get("expires_at")),
            current=data.get("current") is True,
        )
