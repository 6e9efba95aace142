"""Authenticating a request by API key: the hot path.

On a cache hit there is no database round trip and no write: parse and checksum the
key (refusing typos and random strings at once), look the key's record up in a bounded
cache, compare HMAC-SHA256(pepper, key) in constant time, check the client address
against the allow list parsed once per key, the expiry, and the owner's cached state.

Unknown key ids go to a bounded, short-lived negative cache, so random keys cost one
lookup each at most every ``unknown_ttl`` seconds and never grow memory without bound
(UTMStack's list of invalid keys did). A change to a key (revoked, regenerated, edited)
reaches every worker and node through the change feed and drops the cached record.

Checks run in UTMStack's order: unknown/revoked/wrong secret, then client address, then
expiry, then owner. A caller who did not prove possession of the key learns nothing but
"Invalid API key"; a caller with the right key is told what to fix.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from authgate.clock import Clock
from authgate.exceptions import ApiKeyExpired, ApiKeyInvalid, ApiKeyOwnerInactive, IpNotAllowed
from authgate.security import keys
from authgate.security.networks import AllowList, IPAddress
from authgate.security.principal import (
    ROLE_ADMIN,
    SCOPE_ADMIN,
    KeyReference,
    Principal,
    parse_authorities,
)
from authgate.services.api_keys import split_networks
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.expiring_cache import ExpiringCache
from authgate.services.single_flight import SingleFlight
from authgate.services.user_states import UserAuthState, UserStates
from authgate.storage.api_key_repository import ApiKeyRepository
from authgate.storage.db import Database
from authgate.storage.models import ApiKey

# A key has at most two valid strings (current and previous secret); a few more entries
# cost nothing, and the bound keeps guessed strings from growing the dict.
_MAX_VERIFIED_PER_KEY = 8


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What verifying a key needs, prepared once per key (allow list parsed, times as floats)."""

    reference: KeyReference
    public_id: str
    secret_hash: str
    previous_hash: str | None
    previous_valid_until: float | None
    allow_list: AllowList
    scopes: frozenset[str]
    expires_at: datetime | None
    expires_at_ts: float  # infinity when the key never expires
    revoked: bool
    rate_limit: str | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyRecord:
        return cls(
            reference=KeyReference(key_id=key.id, name=key.name, owner_id=key.user_id),
            public_id=key.key_id,
            secret_hash=key.secret_hash,
            previous_hash=key.previous_secret_hash,
            previous_valid_until=(
                key.previous_valid_until.timestamp() if key.previous_valid_until else None
            ),
            allow_list=AllowList.of(split_networks(key.allowed_networks)),
            scopes=parse_authorities(key.scopes),
            expires_at=key.expires_at,
            expires_at_ts=key.expires_at.timestamp() if key.expires_at else math.inf,
            revoked=key.revoked_at is not None,
            rate_limit=key.rate_limit,
        )


class _CachedKey:
    """A record, the fingerprints of key strings already verified against it, and the
    principal last built from it (rebuilt when the owner changes).

    Fingerprints (SHA-256 of the key, not the key) map to whether the key matched the
    previous secret of a rotation. A changed key is reloaded as a new object, so what
    was verified against the old record is forgotten with it.
    """

    __slots__ = ("principal", "record", "state", "verified")

    def __init__(self, record: KeyRecord) -> None:
        self.record = record
        self.verified: dict[bytes, bool] = {}
        self.state: UserAuthState | None = None
        self.principal: Principal | None = None


class ApiKeyAuthenticator:
    def __init__(
        self,
        *,
        db: Database,
        feed: ChangeFeed,
        users: UserStates,
        clock: Clock,
        pepper: bytes,
        cache_size: int,
        record_ttl: float,
        unknown_cache_size: int,
        unknown_ttl: float,
    ) -> None:
        self._db = db
        self._users = users
        self._clock = clock
        self._pepper = pepper
        self._record_ttl = record_ttl
        self._unknown_ttl = unknown_ttl
        self._keys: ExpiringCache[str, _CachedKey] = ExpiringCache(cache_size)
        self._unknown: ExpiringCache[str, bool] = ExpiringCache(unknown_cache_size)
        self._loads: SingleFlight[str, ApiKey | None] = SingleFlight()
        self._generation = 0
        feed.subscribe(self._on_change)

    async def authenticate(self, credential: str, client_ip: IPAddress | None) -> Principal:
        """The principal of an API key, or raises an ``ApiKeyRejected``/``PermissionDenied``."""
        now = self._clock().timestamp()
        fingerprint = hashlib.sha256(credential.encode("utf-8", "surrogatepass")).digest()
        cached = self._keys.get(keys.public_id_of(credential), now=now)
        via_previous = cached.verified.get(fingerprint) if cached is not None else None
        if cached is None or via_previous is None:
            cached, via_previous = await self._verify(credential, cached, now=now)
            if len(cached.verified) >= _MAX_VERIFIED_PER_KEY:
                cached.verified.clear()
            cached.verified[fingerprint] = via_previous
        record = cached.record
        if via_previous and (record.previous_valid_until or 0.0) <= now:
            raise ApiKeyInvalid(reason="rotated_secret_expired", key=record.reference)
        if client_ip is None or not record.allow_list.permits(client_ip):
            raise IpNotAllowed(str(client_ip or "unknown"), key=record.reference)
        if now >= record.expires_at_ts:
            instant = datetime.fromtimestamp(record.expires_at_ts, UTC)
            raise ApiKeyExpired(
                f"API key expired at {instant.isoformat(timespec='milliseconds')}".replace(
                    "+00:00", "Z"
                ),
                reason="expired_key",
                key=record.reference,
            )
        owner = record.reference.owner_id
        state = self._users.cached(owner, now=now) or await self._users.load(owner, now=now)
        if state is None or not state.active:
            raise ApiKeyOwnerInactive(reason="owner_inactive", key=record.reference)
        if cached.state is not state or cached.principal is None:
            cached.principal = _principal(record, state)
            cached.state = state
        return cached.principal

    def cache_hit_ratios(self) -> dict[str, int]:
        return {"api_keys": self._keys.hit_ratio_percent()}

    def cache_sizes(self) -> dict[str, int]:
        return {"api_keys": len(self._keys), "unknown_api_keys": len(self._unknown)}

    async def _verify(
        self, credential: str, cached: _CachedKey | None, *, now: float
    ) -> tuple[_CachedKey, bool]:
        """Full check of a key not verified before: shape, checksum, record, keyed hash.

        Returns the record and whether the key is the previous secret of a rotation.
        """
        parsed = keys.parse_key(credential)
        if cached is None:
            cached = await self._load(parsed.key_id, now=now)
        record = cached.record
        if record.revoked:
            raise ApiKeyInvalid(reason="revoked_key", key=record.reference)
        digest = keys.key_digest(self._pepper, parsed.plaintext)
        if keys.digests_match(record.secret_hash, digest):
            return cached, False
        if record.previous_hash is not None and keys.digests_match(record.previous_hash, digest):
            return cached, True
        raise ApiKeyInvalid(reason="wrong_secret", key=record.reference)

    async def _load(self, public_id: str, *, now: float) -> _CachedKey:
        if self._unknown.get(public_id, now=now):
            raise ApiKeyInvalid(reason="unknown_key")
        generation = self._generation
        key = await self._loads.run(public_id, lambda: self._fetch(public_id))
        if key is None:
            if generation == self._generation:
                self._unknown.put(public_id, True, expires_at=now + self._unknown_ttl)
            raise ApiKeyInvalid(reason="unknown_key")
        cached = _CachedKey(KeyRecord.of(key))
        if generation == self._generation:
            self._keys.put(public_id, cached, expires_at=now + self._record_ttl)
        return cached

    async def _fetch(self, public_id: str) -> ApiKey | None:
        async with self._db.session() as session:
            return await ApiKeyRepository(session).by_public_id(public_id)

    def _on_change(self, change: Change) -> None:
        if change.kind is ChangeKind.API_KEY_CHANGED:
            self._generation += 1
            self._keys.discard(change.subject)
            self._unknown.discard(change.subject)


def _principal(record: KeyRecord, owner: UserAuthState) -> Principal:
    authorities = owner.authorities
    if SCOPE_ADMIN not in record.scopes:
        authorities = authorities - {ROLE_ADMIN}
    return Principal(
        user_id=owner.user_id,
        login=owner.login,
        authorities=authorities,
        method="api_key",
        credential_id=record.public_id,
        expires_at=record.expires_at,
        scopes=record.scopes,
        api_key=record.reference,
        rate_limit=record.rate_limit,
    )
