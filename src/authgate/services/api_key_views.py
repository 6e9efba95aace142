"""What the key service hands out and takes in: a key as people see it (never its
secret), a newly created key (its plaintext, once), a request for a key, the review's
lists, usage records and totals; and the two readings of a stored key they share (its
status, its allow list)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from authgate.security import keys
from authgate.security.principal import parse_authorities
from authgate.storage.models import ApiKey

KeyStatus = Literal["active", "expired", "revoked", "rotating", "suspended"]


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    """A key as shown to people: everything but the secret."""

    public_id: str  # the UUID people see and name the key by
    key_pk: int  # internal: usage records and audit events refer to it
    owner_id: int
    name: str
    prefix: str
    allowed_networks: tuple[str, ...]
    scopes: frozenset[str]
    created_at: datetime
    generated_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    suspended_at: datetime | None
    previous_valid_until: datetime | None  # while the previous secret works; else None
    last_used_at: datetime | None
    last_used_ip: str | None
    rate_limit: str | None
    status: KeyStatus
    # Imported from UTMStack and not rotated since: its plaintext was stored by UTMStack.
    legacy: bool = False

    @classmethod
    def of(cls, key: ApiKey, *, now: datetime) -> ApiKeyView:
        legacy = is_legacy(key)
        # The row keeps the end of a grace period that has passed (nothing clears it);
        # shown, it would say the old secret still works when it does not.
        grace = key.previous_valid_until
        return cls(
            public_id=key.public_id,
            key_pk=key.id,
            owner_id=key.user_id,
            name=key.name,
            prefix=(
                keys.legacy_display_prefix(key.key_id)
                if legacy
                else keys.display_prefix(key.key_id, key.key_tail)
            ),
            allowed_networks=split_networks(key.allowed_networks),
            scopes=parse_authorities(key.scopes),
            created_at=key.created_at,
            generated_at=key.generated_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            suspended_at=key.suspended_at,
            previous_valid_until=grace if grace is not None and grace > now else None,
            last_used_at=key.last_used_at,
            last_used_ip=key.last_used_ip,
            rate_limit=key.rate_limit,
            status=key_status(key, now),
            legacy=legacy,
        )


def is_legacy(key: ApiKey) -> bool:
    """A key imported from UTMStack whose secret is still the one UTMStack stored in
    plaintext (a rotation gives it an ``agk_`` secret, and it is legacy no more)."""
    return key.legacy_digest is not None and key.secret_hash == key.legacy_digest


@dataclass(frozen=True, slots=True)
class CreatedKey:
    view: ApiKeyView
    plaintext: str

    def __repr__(self) -> str:  # never print the key
        return f"CreatedKey(view={self.view!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    """What a person asks for when creating or replacing (PUT) a key."""

    name: str
    allowed_networks: Sequence[str] = ()
    expires_at: datetime | None = None
    scopes: frozenset[str] | None = None  # None: the defaults (create) / unchanged (PUT)
    # A `limits` expression ("100/minute", "10/second;1000/hour"); "" for none;
    # None: none (create) / unchanged (PUT).
    rate_limit: str | None = None


@dataclass(frozen=True, slots=True)
class KeyReview:
    unused: list[ApiKeyView]
    unrestricted: list[ApiKeyView]
    expiring: list[ApiKeyView]
    broad_scopes: list[ApiKeyView]
    # Imported from UTMStack and not rotated: "rotate: plaintext was stored by UTMStack".
    legacy: list[ApiKeyView] = field(default_factory=list)
    # Without an expiry, or expiring later than the policy allows (kept by an import).
    beyond_expiry_policy: list[ApiKeyView] = field(default_factory=list)
    # The owners' logins by user id (read with the keys, in the same query).
    owner_logins: dict[int, str] = field(default_factory=dict)
    # Every matching key of each section, by the attribute names above (the lists hold
    # the first ``limit``, oldest first).
    counts: dict[str, int] = field(default_factory=dict)
    limit: int = 0


@dataclass(frozen=True, slots=True)
class UsageRecordView:
    id: int
    api_key_public_id: str  # the key's public UUID (the row stores its key_pk)
    api_key_name: str
    user_id: int
    occurred_at: datetime
    method: str
    path: str
    status: int
    client_ip: str | None
    user_agent: str | None
    latency_ms: float
    failure_reason: str | None


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """A key's accepted requests over a period, from the per-minute rollups."""

    requests: int = 0
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    busiest_minute: int = 0  # the most requests in one minute


def split_networks(stored: str) -> tuple[str, ...]:
    return tuple(entry for entry in stored.split(",") if entry)


def key_status(key: ApiKey, now: datetime) -> KeyStatus:
    if key.revoked_at is not None:
        return "revoked"
    if key.suspended_at is not None:
        return "suspended"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if key.previous_valid_until is not None and key.previous_valid_until > now:
        return "rotating"
    return "active"
