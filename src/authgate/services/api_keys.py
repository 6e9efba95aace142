"""Managing API keys: create, list, edit, rotate (regenerate) with grace, revoke.

Rules enforced here, for the REST API and the CLI alike:

* a name is required (1-100 characters) and unique among the owner's live keys;
* an expiry is required (unless configured otherwise), in the future, and at most
  ``max_lifetime`` away;
* allowed entries are IPv4/IPv6 addresses or CIDR networks, without duplicates, at
  most 100 (UTMStack's messages);
* scopes are ``read``, ``write``, ``admin``; ``admin`` only on a key of an admin;
* ordinary users see and change only their own keys (anyone else's is "not found");
  ``api_keys.read`` lists and reads every key, ``api_keys.write`` revokes and
  re-enables any (ROLE_ADMIN holds both; ``security/permissions.py``).

The plaintext key leaves this module exactly once: returned by ``create`` and
``regenerate``. Only its keyed hash is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from authgate.clock import Clock
from authgate.exceptions import (
    Conflict,
    FieldError,
    NotFound,
    TokenRevoked,
    ValidationFailed,
)
from authgate.reasons import Reason
from authgate.security import keys, networks
from authgate.security.permissions import API_KEYS_READ, API_KEYS_WRITE
from authgate.security.principal import (
    KNOWN_SCOPES,
    ROLE_ADMIN,
    SCOPE_ADMIN,
    KeyReference,
    Principal,
    join_authorities,
    parse_authorities,
)
from authgate.services.api_key_views import (
    ApiKeyView,
    CreatedKey,
    KeyReview,
    KeySpec,
    UsageRecordView,
    UsageTotals,
)
from authgate.services.audit.events import Actor, EventType, current_request
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind, UnitOfWork
from authgate.services.key_refs import KeyRef
from authgate.services.owner_keys import end_grace
from authgate.services.ports import Database
from authgate.services.rate_limits import check_rate_limit
from authgate.services.sorting import require_sortable
from authgate.services.text_rules import control_character_errors
from authgate.services.user_states import UserAuthState
from authgate.settings_lists import comma_separated
from authgate.storage.api_key_repository import UsageFilter
from authgate.storage.errors import Conflict as StorageConflict
from authgate.storage.models import ApiKey, User
from authgate.storage.paging import Page, PageRequest

NAME_MAX_LENGTH = 100
SCOPES_MAX_LENGTH = 1000  # the comma-joined column
MAX_GRACE = timedelta(days=7)
# Who may act on a key besides its owner: anyone with this permission (None: nobody).
OTHERS_TO_READ = API_KEYS_READ
OTHERS_TO_CHANGE: str | None = None  # edit, regenerate: what the key can do is its owner's
OTHERS_TO_REVOKE = API_KEYS_WRITE  # revoke, re-enable
# The review reads (and judges) live keys this many at a time, giving the event loop back
# between pages, and lists at most REVIEW_LIMIT keys a section (its count covers all):
# memory and each stretch of work stay bounded whatever the number of keys.
REVIEW_PAGE = 200
REVIEW_LIMIT = 500
REVIEW_LIMIT_MAX = 5000


class KeyPolicy(BaseModel):
    """``Settings.api_keys``, set by the ``AUTHGATE_API_KEY_*`` names of the policy
    (``authgate.settings_names``) or an ``[api_keys]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_expiry: bool = True
    max_lifetime_days: int = Field(default=365, ge=1, le=3650)
    # Before default_scopes, whose check reads it (pydantic validates in this order).
    extra_scopes: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(),
        description="Scopes keys may carry besides read/write/admin, for APIs behind "
        "forward-auth (e.g. orders:write).",
    )
    default_scopes: Annotated[frozenset[str], NoDecode] = frozenset({"read", "write"})
    # ApiKeyAuthenticator's caches (``AUTHGATE_API_KEY_CACHE_*``,
    # ``AUTHGATE_API_KEY_UNKNOWN_CACHE_*``): known keys' records, and keys found unknown.
    cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    cache_ttl_seconds: float = Field(default=60.0, gt=0, le=3600)
    unknown_cache_size: int = Field(default=10_000, ge=0, le=10_000_000)
    unknown_cache_ttl_seconds: float = Field(default=30.0, gt=0, le=3600)
    # UserService's (``AUTHGATE_API_KEY_RESUME_ON_REACTIVATION``): a reactivation resumes
    # the keys the deactivation suspended, as UTMStack (which checks the owner per
    # request) lets them work again; by default each is re-enabled on its own.
    resume_on_reactivation: bool = False

    @field_validator("default_scopes", "extra_scopes", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("default_scopes")
    @classmethod
    def _known_default_scopes(cls, scopes: frozenset[str], info: ValidationInfo) -> frozenset[str]:
        """Refused at start: else every key created without scopes (what UTMStack's
        clients send) is refused, "Unknown scope", long after the mistake."""
        extra = info.data.get("extra_scopes")
        if extra is None:  # refused itself: that error is the one to read
            return scopes
        unknown = scopes - (KNOWN_SCOPES | extra)
        if unknown:
            allowed = ", ".join(sorted(KNOWN_SCOPES | extra))
            raise ValueError(
                f"unknown scope {', '.join(sorted(unknown))} (allowed: {allowed}; "
                "add it to api_key_extra_scopes)"
            )
        return scopes

    @property
    def max_lifetime(self) -> timedelta:
        return timedelta(days=self.max_lifetime_days)

    @property
    def allowed_scopes(self) -> frozenset[str]:
        return KNOWN_SCOPES | self.extra_scopes


class ApiKeyService:
    def __init__(
        self,
        *,
        db: Database,
        feed: ChangeFeed,
        clock: Clock,
        pepper: bytes,
        policy: KeyPolicy,
        audit: AuditLog,
    ) -> None:
        self._db = db
        self._feed = feed
        self._clock = clock
        self._pepper = pepper
        self._policy = policy
        self._audit = audit

    @property
    def allowed_scopes(self) -> frozenset[str]:
        return self._policy.allowed_scopes

    async def create(
        self, owner_id: int, spec: KeySpec, *, caller: Principal | None = None
    ) -> CreatedKey:
        """A new key for ``owner_id``; the result holds the plaintext, shown once.

        The owner's row is locked in the transaction that stores the key, and the
        ``caller`` (None: the operator) checked again there: a password reset, "log out
        everywhere" or deactivation committed meanwhile has ended the caller's session
        (``TokenRevoked``), and one that commits later waits for this key and revokes or
        suspends it with the others. The operator's key for a deactivated owner is
        suspended from the start, as the owner's other keys are."""
        now = self._clock()
        async with self._db.session() as session:
            owner = await self._db.users(session).get(owner_id)
        if owner is None:
            raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
        owner_is_admin = ROLE_ADMIN in parse_authorities(owner.authorities)
        scopes = spec.scopes if spec.scopes is not None else self._policy.default_scopes
        name, allowed = self._validated(spec, scopes, owner_is_admin=owner_is_admin, now=now)
        generated = keys.generate_key()
        key = ApiKey(
            user_id=owner_id,
            name=name,
            key_id=generated.key_id,
            key_tail=generated.plaintext[-4:],
            secret_hash=keys.key_digest(self._pepper, generated.plaintext),
            allowed_networks=",".join(allowed),
            scopes=join_authorities(scopes),
            rate_limit=spec.rate_limit or None,
            created_at=now,
            generated_at=now,
            updated_at=now,
            expires_at=spec.expires_at,
        )
        try:
            async with self._feed.unit_of_work() as work:
                owner = await self._db.users(work.session).locked(owner_id)
                if owner is None:
                    raise NotFound("User not found", reason=Reason.USER_NOT_FOUND)
                _refuse_if_caller_ended(owner, caller)
                repository = self._db.api_keys(work.session)
                if not owner.activated:
                    key.suspended_at = now
                if await repository.live_name_taken(owner_id, name):
                    raise _name_taken()
                repository.add(key)
                await repository.flush()
                work.publish(Change(ChangeKind.API_KEY_CHANGED, key.key_id))
        except StorageConflict:  # a concurrent create with the same name
            raise _name_taken() from None
        self._audited(EventType.API_KEY_CREATED, key, details={"owner": owner.login})
        return CreatedKey(view=ApiKeyView.of(key, now=now), plaintext=generated.plaintext)

    async def get(
        self, viewer: Principal | None, ref: KeyRef, *, own_only: bool = False
    ) -> ApiKeyView:
        """A key the viewer owns, or anyone's with ``api_keys.read`` unless ``own_only``
        (v12's ``GET /api-keys/{id}`` serves the caller's keys only)."""
        others = None if own_only else OTHERS_TO_READ
        async with self._db.session() as session:
            key = _visible(await self._db.api_keys(session).by_ref(ref), viewer, others=others)
        return ApiKeyView.of(key, now=self._clock())

    async def list_keys(
        self,
        viewer: Principal | None,
        request: PageRequest,
        *,
        owner_id: int | None = None,
        everyone: bool = False,
        include_revoked: bool = False,
    ) -> Page[ApiKeyView]:
        """The viewer's keys; with ``everyone`` (``api_keys.read``) all keys, optionally
        of one owner."""
        require_sortable(request, self._db.api_keys.SORT_COLUMNS)
        if viewer is not None and not (everyone and viewer.has_permission(OTHERS_TO_READ)):
            owner_id = viewer.user_id
        now = self._clock()
        async with self._db.session() as session:
            repository = self._db.api_keys(session)
            total = await repository.count(owner_id=owner_id, include_revoked=include_revoked)
            rows = await repository.page(
                request, owner_id=owner_id, include_revoked=include_revoked
            )
        return Page(items=[ApiKeyView.of(k, now=now) for k in rows], total=total, request=request)

    async def replace(self, viewer: Principal | None, ref: KeyRef, spec: KeySpec) -> ApiKeyView:
        """PUT: new name, allow list and expiry (and scopes, when given)."""
        now = self._clock()
        async with self._feed.unit_of_work() as work:
            repository = self._db.api_keys(work.session)
            key = _visible(await repository.locked(ref), viewer, others=OTHERS_TO_CHANGE)
            _refuse_if_revoked(key)
            owner = await self._db.users(work.session).get(key.user_id)
            owner_is_admin = owner is not None and ROLE_ADMIN in parse_authorities(
                owner.authorities
            )
            scopes = spec.scopes if spec.scopes is not None else parse_authorities(key.scopes)
            name, allowed = self._validated(spec, scopes, owner_is_admin=owner_is_admin, now=now)
            if await repository.live_name_taken(key.user_id, name, except_key_pk=key.id):
                raise _name_taken()
            key.name = name
            key.allowed_networks = ",".join(allowed)
            key.expires_at = spec.expires_at
            key.scopes = join_authorities(scopes)
            if spec.rate_limit is not None:
                key.rate_limit = spec.rate_limit or None
            key.updated_at = now
            work.publish(Change(ChangeKind.API_KEY_CHANGED, key.key_id))
        self._audited(EventType.API_KEY_UPDATED, key)
        return ApiKeyView.of(key, now=now)

    async def regenerate(
        self,
        viewer: Principal | None,
        ref: KeyRef,
        *,
        grace: timedelta = timedelta(0),
        renew_lifetime: bool = False,
    ) -> str:
        """Rotate the secret; the old one keeps working for ``grace`` (0 to 7 days).
        With ``renew_lifetime`` (UTMStack v12's generate) the key keeps the lifetime it
        had: it expires as long after now as it did after its last generation, never
        beyond ``max_lifetime`` from now.

        A key suspended with its owner's deactivation is re-enabled by its owner's
        regeneration (a password session, so the owner is active and vouches for it):
        the secret the suspension held back is replaced, with no grace (it never works
        again). UTMStack's UI, which has no "re-enable", offers only this. The operator's
        (``viewer`` None: ``authgate keys rotate``) leaves the suspension as it is: the
        owner may still be deactivated.

        Returns the new plaintext, shown once.
        """
        if grace < timedelta(0) or grace > MAX_GRACE:
            message = "The grace period must be between 0 seconds and 7 days."
            raise ValidationFailed(message, field_errors=[FieldError("graceSeconds", message)])
        now = self._clock()
        async with self._feed.unit_of_work() as work:
            key = await self._locked_by(work, ref, viewer, others=OTHERS_TO_CHANGE)
            _refuse_if_revoked(key)
            by_owner = viewer is not None and viewer.user_id == key.user_id
            resumed = key.suspended_at is not None and by_owner
            if resumed:
                key.suspended_at = None
            generated = keys.generate_secret_for(key.key_id)
            if grace > timedelta(0) and not resumed:
                key.previous_secret_hash = key.secret_hash
                key.previous_valid_until = now + grace
            else:
                end_grace(key)
            key.secret_hash = keys.key_digest(self._pepper, generated.plaintext)
            key.key_tail = generated.plaintext[-4:]
            if renew_lifetime and key.expires_at is not None:
                lifetime = key.expires_at - key.generated_at
                if lifetime > timedelta(0):
                    key.expires_at = now + min(lifetime, self._policy.max_lifetime)
            key.generated_at = now
            key.updated_at = now
            work.publish(Change(ChangeKind.API_KEY_CHANGED, key.key_id))
        granted = 0 if resumed else int(grace.total_seconds())
        self._audited(EventType.API_KEY_REGENERATED, key, details={"graceSeconds": granted})
        if resumed:
            self._audited(EventType.API_KEY_RESUMED, key, details={"cause": "regenerated"})
        return generated.plaintext

    async def revoke(
        self, viewer: Principal | None, ref: KeyRef, *, own_only: bool = False
    ) -> bool:
        """Revoke at once (every worker and node within a second). Idempotent: whether
        this call revoked it (False: it was revoked already). Anyone's key with
        ``api_keys.write`` unless ``own_only`` (v12's ``DELETE /api-keys/{id}`` revokes the
        caller's keys only)."""
        others = None if own_only else OTHERS_TO_REVOKE
        now = self._clock()
        async with self._feed.unit_of_work() as work:
            repository = self._db.api_keys(work.session)
            key = _visible(await repository.locked(ref), viewer, others=others)
            newly_revoked = key.revoked_at is None
            if newly_revoked:
                key.revoked_at = now
                key.updated_at = now
                end_grace(key)
                work.publish(Change(ChangeKind.API_KEY_CHANGED, key.key_id))
        if newly_revoked:
            self._audited(EventType.API_KEY_REVOKED, key)
        return newly_revoked

    async def resume(self, viewer: Principal | None, ref: KeyRef) -> ApiKeyView:
        """Re-enable a key suspended when its owner was deactivated (the owner or an
        admin; a session, never a key: see ``sets_credentials``). Idempotent; a revoked
        key stays revoked (409)."""
        now = self._clock()
        async with self._feed.unit_of_work() as work:
            key = await self._locked_by(work, ref, viewer, others=OTHERS_TO_REVOKE)
            _refuse_if_revoked(key)
            resumed = key.suspended_at is not None
            if resumed:
                key.suspended_at = None
                key.updated_at = now
                end_grace(key)  # as a suspension does (a key suspended before it did)
                work.publish(Change(ChangeKind.API_KEY_CHANGED, key.key_id))
        if resumed:
            self._audited(EventType.API_KEY_RESUMED, key)
        return ApiKeyView.of(key, now=now)

    async def _locked_by(
        self, work: UnitOfWork, ref: KeyRef, viewer: Principal | None, *, others: str | None
    ) -> ApiKey:
        """The key, locked, for a change that may lift its suspension (a rotation or a
        re-enabling). When the viewer is its owner, the owner's row is locked first (a
        user's row before its keys') and the owner's session checked again under it: a
        deactivation that committed meanwhile suspended the key and ended that session,
        and must not be undone by a request authenticated just before it (the diff
        review: the rotated key worked again after the owner's reactivation)."""
        repository = self._db.api_keys(work.session)
        if viewer is not None:
            peek = await repository.by_ref(ref)
            if peek is not None and peek.user_id == viewer.user_id:
                owner = await self._db.users(work.session).locked(peek.user_id)
                if owner is not None:
                    _refuse_if_caller_ended(owner, viewer)
        return _visible(await repository.locked(ref), viewer, others=others)

    async def review(
        self, *, unused_days: int, expiring_days: int, limit: int = REVIEW_LIMIT
    ) -> KeyReview:
        """The reference's "regularly review active API keys" in one answer (admins):
        live keys unused for ``unused_days`` (or never), without an IP restriction (no
        allow list, or one admitting every address of a family),
        expiring within ``expiring_days``, with the broadest scopes (admin or write),
        imported from UTMStack and not rotated yet, and without an expiry or with one
        beyond the policy's maximum lifetime (an import keeps UTMStack's). Each section
        lists its first ``limit`` keys (oldest first) and counts them all."""
        now = self._clock()
        idle_since = now - timedelta(days=unused_days)
        expiring_by = now + timedelta(days=expiring_days)
        tests: dict[str, Callable[[ApiKeyView], bool]] = {
            "unused": lambda k: (k.last_used_at or k.created_at) <= idle_since,
            "unrestricted": lambda k: _unrestricted(k.allowed_networks),
            "expiring": lambda k: k.expires_at is not None and k.expires_at <= expiring_by,
            "broad_scopes": lambda k: SCOPE_ADMIN in k.scopes or "write" in k.scopes,
            "legacy": lambda k: k.legacy,
            "beyond_expiry_policy": lambda k: self._beyond_expiry_policy(k, now),
        }
        listed: dict[str, list[ApiKeyView]] = {name: [] for name in tests}
        counts = dict.fromkeys(tests, 0)
        owner_logins: dict[int, str] = {}
        async with self._db.session() as session:
            repository = self._db.api_keys(session)
            after = 0  # the last database id read: the next page starts after it
            while True:
                page = await repository.live_with_owners(now, after=after, size=REVIEW_PAGE)
                for key, login in page:
                    view = ApiKeyView.of(key, now=now)
                    for name, test in tests.items():
                        if test(view):
                            counts[name] += 1
                            if len(listed[name]) < limit:
                                listed[name].append(view)
                                if login is not None:
                                    owner_logins[key.user_id] = login
                    after = key.id
                if len(page) < REVIEW_PAGE:
                    break
        return KeyReview(
            unused=listed["unused"],
            unrestricted=listed["unrestricted"],
            expiring=listed["expiring"],
            broad_scopes=listed["broad_scopes"],
            legacy=listed["legacy"],
            beyond_expiry_policy=listed["beyond_expiry_policy"],
            owner_logins=owner_logins,
            counts=counts,
            limit=limit,
        )

    async def usage_totals(
        self, viewer: Principal | None, key_pk: int, since: datetime
    ) -> UsageTotals:
        """The key's accepted requests since ``since`` (the viewer's keys; with
        ``api_keys.read``: any)."""
        owner = None if viewer is None or viewer.has_permission(OTHERS_TO_READ) else viewer.user_id
        async with self._db.session() as session:
            minutes = await self._db.usage(session).minutes(
                UsageFilter(owner_id=owner, key_ref=key_pk, since=since)
            )
        return UsageTotals(
            requests=sum(m.requests for m in minutes),
            status_2xx=sum(m.status_2xx for m in minutes),
            status_3xx=sum(m.status_3xx for m in minutes),
            status_4xx=sum(m.status_4xx for m in minutes),
            status_5xx=sum(m.status_5xx for m in minutes),
            busiest_minute=max((m.requests for m in minutes), default=0),
        )

    def _beyond_expiry_policy(self, key: ApiKeyView, now: datetime) -> bool:
        if key.expires_at is None:
            return self._policy.require_expiry
        return key.expires_at > now + self._policy.max_lifetime

    async def usage(
        self, viewer: Principal | None, request: PageRequest, where: UsageFilter
    ) -> Page[UsageRecordView]:
        """Usage records of the viewer's keys (with ``api_keys.read``: of every key)."""
        require_sortable(request, self._db.usage.SORT_COLUMNS)
        if viewer is not None and not viewer.has_permission(OTHERS_TO_READ):
            where = UsageFilter(
                owner_id=viewer.user_id,
                key_ref=where.key_ref,
                since=where.since,
                until=where.until,
                status=where.status,
                succeeded=where.succeeded,
            )
        async with self._db.session() as session:
            repository = self._db.usage(session)
            total = await repository.count(where)
            rows = await repository.page(request, where)
        items = [
            UsageRecordView(
                id=row.id,
                api_key_public_id=public_id,
                api_key_name=row.api_key_name,
                user_id=row.user_id,
                occurred_at=row.occurred_at,
                method=row.method,
                path=row.path,
                status=row.status,
                client_ip=row.client_ip,
                user_agent=row.user_agent,
                latency_ms=row.latency_ms,
                failure_reason=row.failure_reason,
            )
            for row, public_id in rows
        ]
        return Page(items=items, total=total, request=request)

    def _audited(
        self, event: EventType, key: ApiKey, *, details: dict[str, object] | None = None
    ) -> None:
        """An event about ``key``, by the current caller (or the operator)."""
        request = current_request.get()
        caller = request.principal if request is not None else None
        reference = KeyReference(key_pk=key.id, name=key.name, owner_id=key.user_id)
        self._audit.record(event, "success", actor=Actor.of(caller, key=reference), details=details)

    # -- rules -----------------------------------------------------------------------------

    def _validated(
        self, spec: KeySpec, scopes: frozenset[str], *, owner_is_admin: bool, now: datetime
    ) -> tuple[str, list[str]]:
        errors: list[FieldError] = []
        name = spec.name.strip()
        if not name:
            errors.append(FieldError("name", "Name is required."))
        elif len(name) > NAME_MAX_LENGTH:
            errors.append(FieldError("name", f"Name must be at most {NAME_MAX_LENGTH} characters."))
        errors.extend(control_character_errors("name", name))
        errors.extend(self._expiry_errors(spec.expires_at, now))
        if spec.rate_limit:
            try:
                check_rate_limit(spec.rate_limit)
            except ValueError as error:
                errors.append(FieldError("rateLimit", str(error)))
        if len(spec.allowed_networks) > networks.MAX_ENTRIES:
            message = f"At most {networks.MAX_ENTRIES} allowed IP entries."
            errors.append(FieldError("allowedIp", message))
        allowed, entry_errors = networks.normalize_allow_list(spec.allowed_networks)
        errors.extend(FieldError(f"allowedIp[{i}]", m) for i, m in sorted(entry_errors.items()))
        if not scopes:
            errors.append(FieldError("scopes", "At least one scope is required."))
        elif not scopes <= self._policy.allowed_scopes:
            unknown = ", ".join(sorted(scopes - self._policy.allowed_scopes))
            allowed_text = ", ".join(sorted(self._policy.allowed_scopes))
            errors.append(
                FieldError("scopes", f"Unknown scope {unknown} (allowed: {allowed_text}).")
            )
        elif len(join_authorities(scopes)) > SCOPES_MAX_LENGTH:
            errors.append(FieldError("scopes", "Too many scopes for one key."))
        elif SCOPE_ADMIN in scopes and not owner_is_admin:
            errors.append(FieldError("scopes", "The admin scope needs an owner with ROLE_ADMIN."))
        if errors:
            raise ValidationFailed(errors[0].message, field_errors=errors)
        return name, allowed

    def _expiry_errors(self, expires_at: datetime | None, now: datetime) -> list[FieldError]:
        if expires_at is None:
            if self._policy.require_expiry:
                return [FieldError("expiresAt", "Expiration date is required.")]
            return []
        if expires_at.tzinfo is None:
            return [FieldError("expiresAt", "Expiration date needs a time zone (e.g. Z).")]
        if expires_at <= now:
            return [FieldError("expiresAt", "Expiration date must be in the future.")]
        if expires_at > now + self._policy.max_lifetime:
            days = self._policy.max_lifetime.days
            return [FieldError("expiresAt", f"Expiration date must be within {days} days.")]
        return []


@dataclass(frozen=True, slots=True)
class KeyActions:
    """What a viewer may do to a key they can read, as ``ApiKeyService`` decides it (the
    Settings UI offers only these forms)."""

    change: bool  # replace, regenerate
    revoke: bool  # revoke, resume


def key_actions(viewer: Principal, key: ApiKeyView) -> KeyActions:
    return KeyActions(
        change=_may_act(viewer, key.owner_id, OTHERS_TO_CHANGE),
        revoke=_may_act(viewer, key.owner_id, OTHERS_TO_REVOKE),
    )


def _visible(key: ApiKey | None, viewer: Principal | None, *, others: str | None) -> ApiKey:
    """The key read (locked, for a change: two rotations at once must not both start from
    the same secret, nor one from a key revoked meanwhile) if the viewer may act on it:
    their own, or anyone's with the permission ``others`` (``None``: nobody else's);
    otherwise "not found" (never "forbidden": that would confirm the key exists)."""
    if key is None:
        raise NotFound("API key not found", reason=Reason.API_KEY_NOT_FOUND)
    if not _may_act(viewer, key.user_id, others):
        raise NotFound("API key not found", reason=Reason.API_KEY_NOT_VISIBLE)
    return key


def _may_act(viewer: Principal | None, owner_id: int, others: str | None) -> bool:
    """The owner may; someone else with the permission ``others``; the CLI (no viewer)."""
    if viewer is None or owner_id == viewer.user_id:
        return True
    return others is not None and viewer.has_permission(others)


def _unrestricted(allowed: tuple[str, ...]) -> bool:
    """No allow list, or one admitting every IPv4 or IPv6 address (``0.0.0.0/0``,
    ``::/0``, ...): either way the key works from anywhere on the Internet."""
    return not allowed or networks.covers_every_address(allowed)


def _refuse_if_caller_ended(owner: User, caller: Principal | None) -> None:
    """Refuse a caller whose session ended after its request was authenticated (read with
    the owner's row locked), as authenticating the request now would: the owner was
    deactivated, or the token's sessions were ended. A key never gets here (creating a
    key needs a password session: ``sets_credentials``); the operator (None) always may."""
    if caller is None:
        return
    if not owner.activated:
        raise TokenRevoked(reason=Reason.USER_DEACTIVATED)
    if caller.issued_at is not None and UserAuthState.of(owner).ends_token(
        caller.issued_at, caller.credential_id
    ):
        raise TokenRevoked(reason=Reason.SESSIONS_REVOKED)


def _refuse_if_revoked(key: ApiKey) -> None:
    if key.revoked_at is not None:
        raise Conflict("The API key is revoked.", reason=Reason.API_KEY_REVOKED)


def _name_taken() -> Conflict:
    return Conflict("An API key with this name already exists.", reason=Reason.API_KEY_NAME_EXISTS)
