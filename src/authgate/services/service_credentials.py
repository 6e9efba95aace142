"""Service credentials: how other services call authgate's internal endpoints.

UTMStack v12 lets its log ingestion check pushed API keys with one shared secret from
the environment (``X-Internal-Key``) that passes every internal check. Here each
calling service gets its own credential instead: named, stored as a keyed hash only
(``security/service_credentials``), allowed only the internal endpoints it needs
(:class:`InternalEndpoint`, the registry of them), rotatable with an optional grace
period, revocable, and audited (created, updated, rotated, revoked, every refused call).

Checking a credential reads its row (one indexed query) on every internal call: there
is no cache, so a revocation or rotation holds at once on every worker and node. The
last use is written at most once per :data:`LAST_USE_GRANULARITY` per credential, not
per call. A caller address that sends bad credentials is counted and blocked like one
that sends bad API keys (the address block, ``address_block``).

A credential may also **adopt** a secret the service already has (:meth:`adopt`,
:meth:`rotate_to`): UTMStack's installer gives log-input, agent-manager and the backend
one installation-wide ``INTERNAL_KEY``, and log-input sends it as is. Such a secret has no
public id in it: it is found by its keyed hash (``secret_lookup``, indexed), and is
otherwise the same: endpoints, audit, rotation with grace, revocation and last use. It
must look strong, may not start with ``ags_`` (a value that does is only ever looked up
by its id) and may not be the current secret of another credential, revoked ones
included (a secret a rotation retired is forgotten: see README).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

from authgate.clock import Clock
from authgate.exceptions import (
    Conflict,
    FieldError,
    NotFound,
    ServiceCredentialInvalid,
    ServiceCredentialRefused,
    Throttled,
    ValidationFailed,
)
from authgate.reasons import Reason
from authgate.security.keys import digests_match, new_key_id
from authgate.security.networks import IPAddress
from authgate.security.service_credentials import (
    CREDENTIAL_PREFIX,
    adopted_secret_problem,
    credential_digest,
    credential_id_of,
    generate_credential,
    generate_secret_for,
    may_be_adopted,
)
from authgate.services.address_block import AddressBlocker
from authgate.services.api_keys import MAX_GRACE
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.ports import Database
from authgate.services.text_rules import control_character_errors
from authgate.storage.models import ServiceCredential


class InternalEndpoint(StrEnum):
    """Every internal endpoint a service credential may be allowed (the registry)."""

    # POST /api/v1/api-keys/authenticate: UTMStack v12's log ingestion checks a key.
    API_KEYS_AUTHENTICATE = "api-keys.authenticate"


NAME_MAX_LENGTH: Final = 100
LAST_USE_GRANULARITY: Final = timedelta(minutes=1)

CredentialStatus = Literal["active", "revoked"]


@dataclass(frozen=True, slots=True)
class ServiceCredentialView:
    """A credential as shown to administrators (never its secret or hash)."""

    id: str
    name: str
    endpoints: tuple[str, ...]
    status: CredentialStatus
    created_at: datetime
    rotated_at: datetime | None
    previous_valid_until: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    adopted: bool  # its secret is one the service already had, not made here

    @classmethod
    def of(cls, row: ServiceCredential, *, now: datetime) -> ServiceCredentialView:
        grace = row.previous_valid_until
        return cls(
            id=row.credential_id,
            name=row.name,
            endpoints=_split(row.endpoints),
            status="revoked" if row.revoked_at is not None else "active",
            created_at=row.created_at,
            rotated_at=row.rotated_at,
            previous_valid_until=grace if grace is not None and grace > now else None,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            adopted=row.secret_lookup is not None,
        )


@dataclass(frozen=True, slots=True)
class CreatedCredential:
    """A credential and its plaintext, shown this once."""

    view: ServiceCredentialView
    plaintext: str

    def __repr__(self) -> str:  # never print the secret
        return f"CreatedCredential(view={self.view!r})"


@dataclass(frozen=True, slots=True)
class ServiceCaller:
    """The service behind an accepted ``X-Internal-Key``."""

    credential_id: str
    name: str


class ServiceCredentials:
    def __init__(
        self,
        *,
        db: Database,
        audit: AuditLog,
        address_blocker: AddressBlocker,
        clock: Clock,
        pepper: bytes,
    ) -> None:
        self._db = db
        self._audit = audit
        self._address_blocker = address_blocker
        self._clock = clock
        self._pepper = pepper

    # -- administration ----------------------------------------------------------------

    async def create(self, name: str, endpoints: Iterable[str]) -> CreatedCredential:
        """A new credential; its plaintext is returned once (only its hash is kept)."""
        name, allowed = _validated(name, endpoints)
        now = self._clock()
        generated = generate_credential()
        async with self._db.transaction() as session:
            repository = self._db.service_credentials(session)
            if await repository.live_name_taken(name):
                raise _name_taken()
            row = ServiceCredential(
                name=name,
                credential_id=generated.credential_id,
                secret_hash=credential_digest(self._pepper, generated.plaintext),
                endpoints=",".join(allowed),
                created_at=now,
            )
            repository.add(row)
        self._audited(EventType.SERVICE_CREDENTIAL_CREATED, row)
        return CreatedCredential(ServiceCredentialView.of(row, now=now), generated.plaintext)

    async def adopt(
        self, name: str, endpoints: Iterable[str], secret: str
    ) -> ServiceCredentialView:
        """A new credential whose secret is ``secret``, one the service already has (never
        shown, logged or audited; only its keyed hash is kept)."""
        name, allowed = _validated(name, endpoints)
        digest = self._adoptable(secret)
        now = self._clock()
        async with self._db.transaction() as session:
            repository = self._db.service_credentials(session)
            if await repository.live_name_taken(name):
                raise _name_taken()
            if await repository.by_lookup(digest) is not None:
                raise _secret_in_use()
            row = ServiceCredential(
                name=name,
                credential_id=new_key_id(),
                secret_hash=digest,
                secret_lookup=digest,
                endpoints=",".join(allowed),
                created_at=now,
            )
            repository.add(row)
        self._audited(EventType.SERVICE_CREDENTIAL_CREATED, row, adopted=True)
        return ServiceCredentialView.of(row, now=now)

    async def list_all(self, *, include_revoked: bool = False) -> list[ServiceCredentialView]:
        now = self._clock()
        async with self._db.session() as session:
            rows = await self._db.service_credentials(session).listed(
                include_revoked=include_revoked
            )
        return [ServiceCredentialView.of(row, now=now) for row in rows]

    async def get(self, credential_id: str) -> ServiceCredentialView:
        async with self._db.session() as session:
            row = _found(
                await self._db.service_credentials(session).by_credential_id(credential_id)
            )
        return ServiceCredentialView.of(row, now=self._clock())

    async def update(
        self, credential_id: str, *, name: str, endpoints: Iterable[str]
    ) -> ServiceCredentialView:
        """Rename a live credential and replace the endpoints it is allowed."""
        name, allowed = _validated(name, endpoints)
        async with self._db.transaction() as session:
            repository = self._db.service_credentials(session)
            row = _live(_found(await repository.locked(credential_id)))
            if await repository.live_name_taken(name, except_id=row.id):
                raise _name_taken()
            row.name = name
            row.endpoints = ",".join(allowed)
        self._audited(EventType.SERVICE_CREDENTIAL_UPDATED, row)
        return ServiceCredentialView.of(row, now=self._clock())

    async def rotate(
        self, credential_id: str, *, grace: timedelta = timedelta(0)
    ) -> CreatedCredential:
        """A new secret; the previous one stops working at once, or after ``grace``
        (at most 7 days, as for API keys). The new plaintext is returned once."""
        _check_grace(grace)
        now = self._clock()
        async with self._db.transaction() as session:
            row = _live(_found(await self._db.service_credentials(session).locked(credential_id)))
            generated = generate_secret_for(row.credential_id)
            _replace_secret(
                row, credential_digest(self._pepper, generated.plaintext), None, grace, now
            )
        self._audited(
            EventType.SERVICE_CREDENTIAL_ROTATED,
            row,
            graceSeconds=int(grace.total_seconds()),
            adopted=False,
        )
        return CreatedCredential(ServiceCredentialView.of(row, now=now), generated.plaintext)

    async def rotate_to(
        self, credential_id: str, secret: str, *, grace: timedelta = timedelta(0)
    ) -> ServiceCredentialView:
        """Rotate to an adopted secret (one the service already has), as :meth:`rotate`
        otherwise; the secret is never returned."""
        _check_grace(grace)
        digest = self._adoptable(secret)
        now = self._clock()
        async with self._db.transaction() as session:
            repository = self._db.service_credentials(session)
            row = _live(_found(await repository.locked(credential_id)))
            if await repository.by_lookup(digest) is not None:
                raise _secret_in_use()
            _replace_secret(row, digest, digest, grace, now)
        self._audited(
            EventType.SERVICE_CREDENTIAL_ROTATED,
            row,
            graceSeconds=int(grace.total_seconds()),
            adopted=True,
        )
        return ServiceCredentialView.of(row, now=now)

    def _adoptable(self, secret: str) -> str:
        """The keyed hash of a secret fit to adopt; ``ValidationFailed`` (a message that
        never repeats the secret) otherwise."""
        problem = adopted_secret_problem(secret)
        if problem is not None:
            raise ValidationFailed(problem, field_errors=[FieldError("secret", problem)])
        return credential_digest(self._pepper, secret)

    async def revoke(self, credential_id: str) -> None:
        """Revoke at once (the next call is refused everywhere). Idempotent."""
        now = self._clock()
        async with self._db.transaction() as session:
            row = _found(await self._db.service_credentials(session).locked(credential_id))
            newly_revoked = row.revoked_at is None
            if newly_revoked:
                row.revoked_at = now
                row.previous_secret_hash = None
                row.previous_secret_lookup = None
                row.previous_valid_until = None
        if newly_revoked:
            self._audited(EventType.SERVICE_CREDENTIAL_REVOKED, row)

    # -- the internal call -------------------------------------------------------------

    async def authenticate(
        self, presented: str | None, endpoint: InternalEndpoint, caller_ip: IPAddress | None
    ) -> ServiceCaller:
        """The service calling ``endpoint``, or a refusal (audited).

        Missing, malformed, unknown, wrong or revoked credentials are all
        ``ServiceCredentialInvalid`` and, but a missing one, counted against
        ``caller_ip`` (blocked past the bad-key threshold: ``Throttled``); a real
        credential not allowed ``endpoint`` is told so (``ServiceCredentialRefused``).
        """
        now = self._clock()
        try:
            self._address_blocker.check(caller_ip, now.timestamp())
        except Throttled as error:
            self._refused(endpoint, error.reason)
            raise
        if not presented:
            self._refused(endpoint, Reason.INTERNAL_KEY_MISSING)
            raise ServiceCredentialInvalid(
                "missing internal key", reason=Reason.INTERNAL_KEY_MISSING
            )
        row = await self._presented_row(presented)
        reason = self._rejection(row, presented, now)
        if reason is not None:
            await self._address_blocker.failed(caller_ip)
            self._refused(endpoint, reason, row)
            raise ServiceCredentialInvalid(reason=reason)
        assert row is not None  # no rejection: a live credential matched
        if endpoint.value not in _split(row.endpoints):
            self._refused(endpoint, Reason.ENDPOINT_NOT_ALLOWED, row)
            raise ServiceCredentialRefused(reason=Reason.ENDPOINT_NOT_ALLOWED)
        last = row.last_used_at
        if last is None or now - last >= LAST_USE_GRANULARITY:
            async with self._db.transaction() as session:
                await self._db.service_credentials(session).touch(row.id, now)
        return ServiceCaller(credential_id=row.credential_id, name=row.name)

    async def _presented_row(self, presented: str) -> ServiceCredential | None:
        """The credential ``presented`` claims to be, by its public id (``ags_...``: only
        ever so), or, for a value that may be an adopted secret, by its keyed hash;
        None without a lookup for anything else."""
        if presented.startswith(CREDENTIAL_PREFIX):
            credential_id = credential_id_of(presented)
            if credential_id is None:
                return None
            async with self._db.session() as session:
                return await self._db.service_credentials(session).by_credential_id(credential_id)
        if not may_be_adopted(presented):
            return None
        digest = credential_digest(self._pepper, presented)
        async with self._db.session() as session:
            return await self._db.service_credentials(session).by_lookup(digest)

    def _rejection(
        self, row: ServiceCredential | None, presented: str, now: datetime
    ) -> Reason | None:
        """Why ``presented`` is not ``row``'s live secret, or None when it is."""
        if row is None:
            return Reason.UNKNOWN_INTERNAL_KEY
        if row.revoked_at is not None:
            return Reason.INTERNAL_KEY_REVOKED
        digest = credential_digest(self._pepper, presented)
        if digests_match(digest, row.secret_hash):
            return None
        previous, until = row.previous_secret_hash, row.previous_valid_until
        in_grace = previous is not None and until is not None and until > now
        if in_grace and digests_match(digest, previous or ""):
            return None
        return Reason.WRONG_INTERNAL_KEY

    # -- audit -------------------------------------------------------------------------

    def _audited(self, event: EventType, row: ServiceCredential, **extra: object) -> None:
        """An event about ``row``, by the current caller (or the operator)."""
        details: dict[str, object] = {
            "credential": row.credential_id,
            "name": row.name,
            "endpoints": list(_split(row.endpoints)),
            **extra,
        }
        self._audit.record(event, "success", details=details)

    def _refused(
        self, endpoint: InternalEndpoint, reason: Reason, row: ServiceCredential | None = None
    ) -> None:
        details: dict[str, object] = {"endpoint": endpoint.value}
        if row is not None:
            details["credential"] = row.credential_id
        actor = Actor(login=f"service:{row.name}") if row is not None else Actor()
        self._audit.record(
            EventType.INTERNAL_CALL_REFUSED, "failure", actor=actor, reason=reason, details=details
        )


def _check_grace(grace: timedelta) -> None:
    if grace < timedelta(0) or grace > MAX_GRACE:
        message = "The grace period must be between 0 seconds and 7 days."
        raise ValidationFailed(message, field_errors=[FieldError("graceSeconds", message)])


def _replace_secret(
    row: ServiceCredential, digest: str, lookup: str | None, grace: timedelta, now: datetime
) -> None:
    """``row``'s new secret (``lookup``: its digest when adopted); the current one stays
    valid for ``grace`` (found by its id, or by its lookup hash when it was adopted)."""
    if grace > timedelta(0):
        row.previous_secret_hash = row.secret_hash
        row.previous_secret_lookup = row.secret_lookup
        row.previous_valid_until = now + grace
    else:
        row.previous_secret_hash = None
        row.previous_secret_lookup = None
        row.previous_valid_until = None
    row.secret_hash = digest
    row.secret_lookup = lookup
    row.rotated_at = now


def _split(joined: str) -> tuple[str, ...]:
    return tuple(part for part in joined.split(",") if part)


def _validated(name: str, endpoints: Iterable[str]) -> tuple[str, list[str]]:
    errors: list[FieldError] = []
    name = name.strip()
    if not name:
        errors.append(FieldError("name", "Name is required."))
    elif len(name) > NAME_MAX_LENGTH:
        errors.append(FieldError("name", f"Name must be at most {NAME_MAX_LENGTH} characters."))
    errors.extend(control_character_errors("name", name))
    given = list(endpoints)
    known = {endpoint.value for endpoint in InternalEndpoint}
    if not given:
        errors.append(FieldError("endpoints", "Allow at least one internal endpoint."))
    for index, endpoint in enumerate(given):
        if endpoint not in known:
            errors.append(
                FieldError(
                    f"endpoints[{index}]",
                    f"Unknown internal endpoint; known: {', '.join(sorted(known))}.",
                )
            )
    if errors:
        raise ValidationFailed(errors[0].message, field_errors=errors)
    return name, sorted(set(given))


def _found(row: ServiceCredential | None) -> ServiceCredential:
    """The credential read (locked, for a change: two rotations at once must not both
    start from the same secret, nor a rotation from a secret revoked meanwhile)."""
    if row is None:
        raise NotFound(
            "No service credential with this id.", reason=Reason.SERVICE_CREDENTIAL_UNKNOWN
        )
    return row


def _live(row: ServiceCredential) -> ServiceCredential:
    if row.revoked_at is not None:
        raise Conflict(
            "This service credential is revoked.", reason=Reason.SERVICE_CREDENTIAL_REVOKED
        )
    return row


def _secret_in_use() -> Conflict:
    return Conflict(
        "This secret is already (or was) a service credential's: adopt a secret once; "
        "a revoked one is never taken again.",
        reason=Reason.SERVICE_SECRET_IN_USE,
    )


def _name_taken() -> Conflict:
    return Conflict(
        "A service credential with this name already exists.",
        reason=Reason.SERVICE_CREDENTIAL_NAME_EXISTS,
    )
