"""Authenticating a request by API key: the hot path.

On a cache hit there is no database round trip and no write: parse and checksum the
key (refusing typos and random strings at once), look the key's record up in a bounded
cache, compare HMAC-SHA256(pepper, key) in constant time, check the client address
against the allow list parsed once per key, the expiry, and the owner's cached state.

Unknown key ids go to a bounded, short-lived negative cache, so random keys cost one
lookup each at most every ``unknown_ttl`` seconds and never grow memory without bound
(UTMStack's list of invalid keys did). A change to a key (revoked, regenerated, edited)
reaches every worker and node through the change feed and drops the cached record.

A legacy key (imported from UTMStack, 43 characters, no key id in it) takes the same path:
it is found by its keyed hash through an index (one query on a miss, single-flight,
negative cache), then cached under the key id its row was given at import, so a
change to the key drops it like any other; on a hit only the fingerprint of the string
is compared, as for ``agk_`` keys.

Checks run in UTMStack's order: unknown/revoked/wrong secret, then client address, then
expiry, then owner, then suspension (the owner was deactivated, and the key not
re-enabled since). A caller who did not prove possession of the key learns nothing but
"Invalid API key"; a caller with the right key is told what to fix.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from authgate.clock import Clock, format_utc
from authgate.exceptions import (
    ApiKeyExpired,
    ApiKeyInvalid,
    ApiKeyOwnerInactive,
    ApiKeySuspended,
    IpNotAllowed,
)
from authgate.reasons import Reason
from authgate.security import keys
from authgate.security.networks import AllowList, IPAddress
from authgate.security.permissions import PRIVILEGED_ROLES
from authgate.security.principal import (
    SCOPE_ADMIN,
    KeyReference,
    Principal,
    parse_authorities,
)
from authgate.services.api_key_views import split_networks
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.expiring_cache import ExpiringCache, SelfExpiringCache
from authgate.services.ports import Database, KeyColumns
from authgate.services.single_flight import CurrentLoads
from authgate.services.user_states import UserAuthState, UserStates
from authgate.storage.errors import is_unavailable


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What verifying a key needs, prepared once per key (allow list parsed, times as floats)."""

    reference: KeyReference
    key_id: str  # the public part of the key (agk_<key_id>_...), its cache key
    # The stored hex digests as raw bytes: half the memory of the strings per cached key.
    secret_hash: bytes
    previous_hash: bytes | None
    previous_valid_until: float | None
    allow_list: AllowList
    scopes: frozenset[str]
    expires_at: datetime | None
    expires_at_ts: float  # infinity when the key never expires
    revoked: bool
    suspended: bool
    rate_limit: str | None
    # When the key was last used as stored when the record was loaded (seeds the gate's
    # first-use and after-inactivity decisions; None: never used).
    last_used_ts: float | None

    @classmethod
    def of(cls, key: KeyColumns) -> KeyRecord:
        """From the stored key (or its verification columns, same names)."""
        return cls(
            reference=KeyReference(key_pk=key.id, name=key.name, owner_id=key.user_id),
            key_id=key.key_id,
            secret_hash=bytes.fromhex(key.secret_hash),
            previous_hash=(
                bytes.fromhex(key.previous_secret_hash) if key.previous_secret_hash else None
            ),
            previous_valid_until=(
                key.previous_valid_until.timestamp() if key.previous_valid_until else None
            ),
            allow_list=_shared_allow_list(key.allowed_networks),
            scopes=_shared_scopes(key.scopes),
            expires_at=key.expires_at,
            expires_at_ts=key.expires_at.timestamp() if key.expires_at else math.inf,
            revoked=key.revoked_at is not None,
            suspended=key.suspended_at is not None,
            rate_limit=key.rate_limit,
            last_used_ts=key.last_used_at.timestamp() if key.last_used_at else None,
        )


# Most keys share their scopes and allow list with many others (often: none), so each
# distinct value is parsed once and shared, instead of held once per cached key.
@lru_cache(maxsize=4096)
def _shared_scopes(joined: str) -> frozenset[str]:
    return parse_authorities(joined)


@lru_cache(maxsize=4096)
def _shared_allow_list(stored: str) -> AllowList:
    return AllowList.of(split_networks(stored))


@lru_cache(maxsize=256)
def _without_privileges(authorities: frozenset[str]) -> frozenset[str]:
    return authorities - PRIVILEGED_ROLES


class _CachedKey:
    """A record, the fingerprints of key strings already verified against it, and the
    principal last built from it (rebuilt when the owner changes).

    A key has at most two valid strings (current and previous secret of a rotation):
    their fingerprints (SHA-256 of the key, not the key) are remembered once verified;
    strings that fail are never remembered. A changed key is reloaded as a new object,
    so what was verified against the old record is forgotten with it.
    """

    __slots__ = ("current", "deadline", "permitted", "previous", "principal", "record", "state")

    def __init__(self, record: KeyRecord) -> None:
        self.record = record
        # Until when the cache may answer with it (set when cached: SelfExpiringCache).
        self.deadline = 0.0
        # Fingerprints of the key strings verified against the current and the previous
        # secret: two slots, not a dict (with 100,000 keys cached, ~230 bytes a key less).
        self.current: bytes | None = None
        self.previous: bytes | None = None
        self.state: UserAuthState | None = None
        self.principal: Principal | None = None
        # The address object the record's allow list last admitted: the client-address
        # resolver hands out one object per peer, and an allow list never changes (a
        # changed key is a new object), so the same client again needs no network match.
        self.permitted: object = None


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
        self._keys: SelfExpiringCache[str, _CachedKey] = SelfExpiringCache(cache_size)
        self._unknown: ExpiringCache[str, bool] = ExpiringCache(unknown_cache_size)
        self._loads: CurrentLoads[str, KeyColumns | None] = CurrentLoads()
        # Legacy keys: the fingerprint of a verified key string -> its row's key id
        # (both never change), and the loads by digest in flight.
        self._legacy_ids: ExpiringCache[bytes, str] = ExpiringCache(cache_size)
        self._legacy_loads: CurrentLoads[str, KeyColumns | None] = CurrentLoads()
        feed.subscribe(self._on_change)
        feed.on_rewind(self._forget_everything)

    async def authenticate(
        self, credential: str, client_ip: IPAddress | None, *, now: float | None = None
    ) -> Principal:
        """The principal of an API key, or raises an ``ApiKeyRejected``/``PermissionDenied``.
        ``now``: the request's time as the caller read it from this service's clock."""
        if now is None:
            now = self._clock().timestamp()
        fingerprint = hashlib.sha256(credential.encode("utf-8", "surrogatepass")).digest()
        if keys.is_legacy_key(credential):
            key_id = self._legacy_ids.get(fingerprint, now=now)
            cached = self._keys.get(key_id, now=now) if key_id is not None else None
        else:
            cached = self._keys.get(keys.key_id_of(credential), now=now)
        via_previous: bool | None = None
        if cached is not None:
            if fingerprint == cached.current:
                via_previous = False
            elif fingerprint == cached.previous:
                via_previous = True
        if cached is None or via_previous is None:
            if keys.is_legacy_key(credential):
                cached, via_previous = await self._verify_legacy(credential, fingerprint, now=now)
            else:
                cached, via_previous = await self._verify(credential, cached, now=now)
            if via_previous:
                cached.previous = fingerprint
            else:
                cached.current = fingerprint
        record = cached.record
        if via_previous and (record.previous_valid_until or 0.0) <= now:
            raise ApiKeyInvalid(reason=Reason.ROTATED_SECRET_EXPIRED, key=record.reference)
        if client_ip is None:
            # An unknown address is inside no allow list; a key without one permits any.
            if not record.allow_list.is_unrestricted:
                raise IpNotAllowed("unknown", key=record.reference)
        elif client_ip is not cached.permitted:
            if not record.allow_list.permits(client_ip):
                raise IpNotAllowed(str(client_ip), key=record.reference)
            cached.permitted = client_ip
        if now >= record.expires_at_ts:
            instant = datetime.fromtimestamp(record.expires_at_ts, UTC)
            raise ApiKeyExpired(
                f"API key expired at {format_utc(instant)}",
                reason=Reason.EXPIRED_KEY,
                key=record.reference,
            )
        owner = record.reference.owner_id
        state = self._users.cached(owner, now=now) or await self._users.load(owner, now=now)
        if state is None or not state.active:
            raise ApiKeyOwnerInactive(reason=Reason.OWNER_INACTIVE, key=record.reference)
        if record.suspended:  # the owner is active again, the key not re-enabled yet
            raise ApiKeySuspended(reason=Reason.SUSPENDED_KEY, key=record.reference)
        if cached.state is not state or cached.principal is None:
            cached.principal = _principal(record, state)
            cached.state = state
        return cached.principal

    def stored_last_use(self, key_id: str) -> float | None:
        """The key's last use as stored when its cached record was loaded (None: never
        used, or not cached)."""
        cached = self._keys.stale(key_id)
        return cached.record.last_used_ts if cached is not None else None

    async def _verify_legacy(
        self, credential: str, fingerprint: bytes, *, now: float
    ) -> tuple[_CachedKey, bool]:
        """Full check of a legacy key not verified before: found by its keyed hash (so
        the lookup is the check), then the same checks as :meth:`_verify`."""
        digest = keys.raw_key_digest(self._pepper, credential)
        cached = await self._load_legacy(digest.hex(), fingerprint, now=now)
        expires_at = now + self._record_ttl
        self._legacy_ids.put(fingerprint, cached.record.key_id, expires_at=expires_at)
        return self._match(cached, digest)

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
        return self._match(cached, keys.raw_key_digest(self._pepper, parsed.plaintext))

    @staticmethod
    def _match(cached: _CachedKey, digest: bytes) -> tuple[_CachedKey, bool]:
        """Whether ``digest`` is the key's current (False) or previous (True) secret;
        raises ``ApiKeyInvalid`` when it is neither, or the key is revoked."""
        record = cached.record
        if record.revoked:
            raise ApiKeyInvalid(reason=Reason.REVOKED_KEY, key=record.reference)
        if keys.digests_match(record.secret_hash, digest):
            return cached, False
        if record.previous_hash is not None and keys.digests_match(record.previous_hash, digest):
            return cached, True
        raise ApiKeyInvalid(reason=Reason.WRONG_SECRET, key=record.reference)

    async def _load(self, key_id: str, *, now: float) -> _CachedKey:
        if self._unknown.get(key_id, now=now):
            raise ApiKeyInvalid(reason=Reason.UNKNOWN_KEY)
        try:
            key, current = await self._loads.run(key_id, lambda: self._fetch(key_id))
        except Exception as error:
            # The database is down: a key known before keeps working (past its cache
            # TTL; a revoked or changed key was discarded by the change feed, and none can
            # change during the outage). An unknown key still cannot be checked: 503.
            last_known = self._keys.stale(key_id)
            if last_known is None or not is_unavailable(error):
                raise
            return last_known
        if key is None:
            if current:
                self._unknown.put(key_id, True, expires_at=now + self._unknown_ttl)
            raise ApiKeyInvalid(reason=Reason.UNKNOWN_KEY)
        cached = _CachedKey(KeyRecord.of(key))
        if current:
            # Keyed by the record's own string: one copy of the id per cached key.
            self._keys.put(cached.record.key_id, cached, expires_at=now + self._record_ttl)
        return cached

    async def _load_legacy(self, digest: str, fingerprint: bytes, *, now: float) -> _CachedKey:
        """The record of the legacy key with this digest (hex), cached under its key
        id; unknown digests go to the negative cache (marked, apart from key ids)."""
        unknown_key = "legacy:" + digest
        if self._unknown.get(unknown_key, now=now):
            raise ApiKeyInvalid(reason=Reason.UNKNOWN_KEY)
        try:
            key, current = await self._legacy_loads.run(digest, lambda: self._fetch_legacy(digest))
        except Exception as error:
            # The database is down: as for agk_ keys (``_load``), a legacy key verified
            # before keeps working on its last known record; an unknown one gets 503.
            key_id = self._legacy_ids.stale(fingerprint)
            last_known = self._keys.stale(key_id) if key_id is not None else None
            if last_known is None or not is_unavailable(error):
                raise
            return last_known
        if key is None:
            if current:
                self._unknown.put(unknown_key, True, expires_at=now + self._unknown_ttl)
            raise ApiKeyInvalid(reason=Reason.UNKNOWN_KEY)
        cached = self._keys.get(key.key_id, now=now)
        if cached is None:
            cached = _CachedKey(KeyRecord.of(key))
            if current:
                self._keys.put(cached.record.key_id, cached, expires_at=now + self._record_ttl)
        return cached

    async def _fetch_legacy(self, digest: str) -> KeyColumns | None:
        async with self._db.connection() as connection:
            return await self._db.legacy_verification_row(connection, digest)

    async def _fetch(self, key_id: str) -> KeyColumns | None:
        async with self._db.connection() as connection:
            return await self._db.verification_row(connection, key_id)

    async def _forget_everything(self) -> None:
        """The change feed went back (a restore): every key is read again."""
        self._loads.invalidate()
        self._legacy_loads.invalidate()
        self._keys.clear()
        self._unknown.clear()
        self._legacy_ids.clear()

    def _on_change(self, change: Change) -> None:
        if change.kind is ChangeKind.API_KEY_CHANGED:
            # A load in flight may have read the key before the change: not cached.
            self._loads.invalidate()
            self._legacy_loads.invalidate()
            self._keys.discard(change.subject)
            self._unknown.discard(change.subject)


def _principal(record: KeyRecord, owner: UserAuthState) -> Principal:
    # The admin scope lends the key the owner's permissions (never more: they follow
    # from the owner's current roles); without it the key has none of them.
    authorities = owner.authorities
    if SCOPE_ADMIN not in record.scopes:
        authorities = _without_privileges(authorities)
    return Principal(
        user_id=owner.user_id,
        login=owner.login,
        authorities=authorities,
        method="api_key",
        credential_id=record.key_id,
        expires_at=record.expires_at,
        scopes=record.scopes,
        api_key=record.reference,
        rate_limit=record.rate_limit,
    )
