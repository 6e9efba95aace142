"""The gate: one framework-free verdict on a request's credentials.

Every way into authgate that needs a caller - the API routes, the metrics endpoint,
the Settings pages (the session cookie's token), forward-auth (``/api/auth/verify``,
answered before any framework code runs) - asks
the same :class:`Gate` with the same facts: the credentials as presented, the client
address (trusted-proxy aware), the method and the requirement of what is asked for.
The verdict is the principal or the failure (with the error to answer), the rate-limit
state for the ``RateLimit`` headers, and what to record; :meth:`Gate.record` turns a
finished request into its audit and usage records (buffered, written in batches).

Nothing here knows HTTP frameworks: the callers extract three header values and
render the verdict.

Credentials: ``Utm-Api-Key: <key>`` (UTMStack's header) wins when present; otherwise
``Authorization: Bearer <credential>``, where a key and a JWT are told apart by
format (keys start with ``agk_``), never by trial. A request with neither has *no*
credentials: it is refused (401 ``credentials_missing``) and recorded as such
(``CREDENTIALS_MISSING``), not as a rejected token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from authgate.clock import Clock
from authgate.exceptions import (
    AmbiguousUpstreamRequest,
    ApiKeyInvalid,
    ApiKeyRejected,
    AuthenticationFailed,
    AuthgateError,
    CredentialsMissing,
    IpNotAllowed,
    Throttled,
    TokenInvalid,
)
from authgate.reasons import Reason
from authgate.security.credentials import bearer_credential
from authgate.security.keys import looks_like_api_key
from authgate.security.networks import IPAddress, network_of
from authgate.security.principal import KeyReference, Principal
from authgate.services.access_tokens import AccessTokenService
from authgate.services.address_block import AddressBlocker
from authgate.services.api_key_auth import ApiKeyAuthenticator
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.metrics import Metrics
from authgate.services.notable_use import NotableUse
from authgate.services.rate_limits import KeyRateLimits, RateLimitState, exceeded
from authgate.services.usage import UsageEvent, UsageRecorder

# Methods that change nothing: an API key without the ``write`` scope may use only these.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CredentialKind = Literal["none", "api_key", "jwt", "duplicate"]
FailureMethod = Literal["none", "api_key", "jwt"]

# What a request asks for: nothing when ``principal`` may make a ``method`` request,
# an ``AuthgateError`` (PermissionDenied, SessionRequired, ValidationFailed) otherwise.
Requirement = Callable[[Principal, str], None]


class Credentials(NamedTuple):
    """The credential a request presents, classified by form (not yet verified). A
    tuple: built on every request, and a frozen dataclass's ``__init__`` costs 3x more."""

    kind: CredentialKind
    value: str = ""


NO_CREDENTIALS = Credentials("none")
# Two ``Authorization`` (or two ``Utm-Api-Key``) headers: a proxy or upstream that
# reads the other one would see another caller, so neither is believed.
DUPLICATE_CREDENTIALS = Credentials("duplicate")
_new_credentials = tuple.__new__


def credentials_of(
    api_key_header: str | None, authorization: str | None, query_token: str | None = None
) -> Credentials:
    """Classify what a request presents (``query_token``: ``?access_token=``, where
    allowed). ``Utm-Api-Key`` wins; a blank one is an (invalid) key."""
    if api_key_header is not None:
        return Credentials("api_key", api_key_header.strip())
    bearer = bearer_credential(authorization)
    if bearer is None:
        bearer = query_token
    if bearer is None:
        return NO_CREDENTIALS
    # tuple.__new__ directly: the NamedTuple's own __new__ is a Python function.
    return _new_credentials(
        Credentials, ("api_key" if looks_like_api_key(bearer) else "jwt", bearer)
    )


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request's credentials were refused or denied (for the audit and usage logs).

    ``ambiguous_header`` is set (``""`` when no single header is at fault) when
    forward-auth refused an ambiguous upstream request rather than the caller.
    """

    method: FailureMethod
    reason: Reason
    key: KeyReference | None = None
    ambiguous_header: str | None = None


_UNRESOLVED: object = object()


class Verdict:
    """A request's passage through the gate, kept in one ASGI scope key
    (:data:`VERDICT_SCOPE_KEY`) from the first byte to the records.

    ``principal`` or ``failure`` (and ``error``, what to answer) once the gate decided;
    ``rate_limit`` when a key's limit applied; ``upstream`` the (method, path) a
    forward-auth request asks about; the client address once resolved.
    """

    __slots__ = (
        "at",
        "client_ip",
        "client_ip_known",
        "error",
        "failure",
        "principal",
        "rate_limit",
        "upstream",
    )

    def __init__(self) -> None:
        # When the gate checked an API key (one clock reading serves the key's checks
        # and its records).
        self.at: datetime | None = None
        self.principal: Principal | None = None
        self.failure: AuthFailure | None = None
        self.error: AuthgateError | None = None
        self.rate_limit: RateLimitState | None = None
        self.upstream: tuple[str, str] | None = None
        # The client address, once resolved (``None`` is an answer: no address known).
        # Plain attributes, not a property: both are read on every authenticated request.
        self.client_ip: IPAddress | None = None
        self.client_ip_known = False

    def refuse(self, failure: AuthFailure, error: AuthgateError) -> None:
        self.failure, self.error = failure, error


VERDICT_SCOPE_KEY = "authgate"

# Bounds of what the gate remembers about keys' use (memory stays bounded whatever
# the traffic; forgetting only means one more audit record, never one less).
MAX_TRACKED_KEYS = 100_000
# Networks, as the ``key_new_ip`` alert rule and brute-force protection count them: an
# IPv4 address, or an IPv6 /64 (so one /64's many addresses are one network, and
# cannot crowd the others out).
MAX_ADDRESSES_PER_KEY = 256
# A key used from more networks than that is recorded once (``many_addresses``); for this
# long after, a new network is recorded at most once a minute (``NEW_ADDRESS``), then they
# are counted afresh.
MANY_ADDRESSES_QUIET_SECONDS = 3600
CROWDED_RECORD_SECONDS = 60
_MANY_ADDRESSES_DETAILS = {
    "moreThan": MAX_ADDRESSES_PER_KEY,
    "quietSeconds": MANY_ADDRESSES_QUIET_SECONDS,
}
# An accepted request's event of its own address: the reason and its details.
_Event = tuple[Reason, dict[str, int] | None]
_NEW_ADDRESS: _Event = (Reason.NEW_ADDRESS, None)


class _KeyActivity:
    """When this process last saw a key accepted, and from which networks."""

    __slots__ = ("last", "latest_address", "networks", "quiet_record_at", "quiet_until")

    def __init__(self, last: float | None) -> None:
        self.last = last
        self.networks: set[object] = set()
        # Until when the key counts as crowded (seen from too many networks), and when
        # a new network may next be recorded meanwhile.
        self.quiet_until = 0.0
        self.quiet_record_at = 0.0
        # The address object of the latest accepted request: the client-address resolver
        # hands out one object per peer, so a key used again from the same client is
        # recognised by identity, without hashing the address.
        self.latest_address: object = _UNRESOLVED

    def new_network(self, address: IPAddress | None, now: float) -> _Event | None:
        """The event of a use from ``address`` (a client other than the latest), if its
        network is new for the key."""
        network = network_of(address)
        networks = self.networks
        if network in networks:
            return None
        if now < self.quiet_until:
            if now < self.quiet_record_at:
                return None
            self.quiet_record_at = now + CROWDED_RECORD_SECONDS
            return _NEW_ADDRESS
        if len(networks) >= MAX_ADDRESSES_PER_KEY:
            # Memory stays bounded: the networks are forgotten, counted afresh later.
            networks.clear()
            self.quiet_until = now + MANY_ADDRESSES_QUIET_SECONDS
            self.quiet_record_at = now + CROWDED_RECORD_SECONDS
            return (Reason.MANY_ADDRESSES, dict(_MANY_ADDRESSES_DETAILS))
        networks.add(network)
        return _NEW_ADDRESS


class Gate:
    """Authenticates, authorizes and rate-limits; records what happened."""

    def __init__(
        self,
        *,
        tokens: AccessTokenService,
        key_auth: ApiKeyAuthenticator,
        address_blocker: AddressBlocker,
        rate_limits: KeyRateLimits,
        metrics: Metrics,
        audit: AuditLog,
        usage: UsageRecorder,
        clock: Clock,
        audit_key_successes: bool,
        idle_seconds: float = 3600.0,
    ) -> None:
        self._tokens = tokens
        self._key_auth = key_auth
        self._address_blocker = address_blocker
        self._rate_limits = rate_limits
        self._metrics = metrics
        self._audit = audit
        self._usage = usage
        self._clock = clock
        self._audit_key_successes = audit_key_successes
        self._idle_seconds = idle_seconds
        self._activity: dict[int, _KeyActivity] = {}
        self._count_key_success = metrics.local_counter(
            metrics.api_key_requests.labels("success", "none")
        ).inc
        self._observe = {
            method: metrics.local_authentication_seconds(method).observe
            for method in ("jwt", "api_key")
        }

    async def check(
        self,
        verdict: Verdict,
        credentials: Credentials,
        client_ip: IPAddress | None,
        method: str,
        requirement: Requirement,
    ) -> Verdict:
        """Decide on one request: fills ``verdict`` (principal, or failure and error;
        rate-limit state) and returns it. Never raises an ``AuthgateError``."""
        verdict.client_ip, verdict.client_ip_known = client_ip, True
        started = time.perf_counter()
        try:
            principal = await self._authenticate(verdict, credentials, client_ip)
        except ApiKeyInvalid as error:
            verdict.refuse(AuthFailure("api_key", error.reason, error.key), error)
            await self._address_blocker.failed(client_ip)
            return verdict
        except (ApiKeyRejected, IpNotAllowed) as error:
            verdict.refuse(AuthFailure("api_key", error.reason, error.key), error)
            return verdict
        except Throttled as error:  # this address sent too many bad keys
            verdict.refuse(AuthFailure("api_key", error.reason), error)
            return verdict
        except CredentialsMissing as error:
            verdict.refuse(AuthFailure("none", error.reason), error)
            return verdict
        except AuthenticationFailed as error:
            verdict.refuse(AuthFailure("jwt", error.reason), error)
            return verdict
        self._observe[principal.method](time.perf_counter() - started)
        verdict.principal = principal
        try:
            requirement(principal, method)
            key = principal.api_key
            if key is not None and self._rate_limits.applies(principal.rate_limit):
                state, allowed = await self._rate_limits.hit(key.key_pk, principal.rate_limit)
                verdict.rate_limit = state
                if not allowed:
                    raise exceeded(state)
        except AuthgateError as error:  # PermissionDenied, RateLimited, ValidationFailed
            header = None
            if isinstance(error, AmbiguousUpstreamRequest):
                header = error.header or ""
            verdict.refuse(
                AuthFailure(principal.method, error.reason, principal.api_key, header), error
            )
        return verdict

    async def _authenticate(
        self, verdict: Verdict, credentials: Credentials, client_ip: IPAddress | None
    ) -> Principal:
        kind = credentials.kind
        if kind == "jwt":
            if not credentials.value:
                raise TokenInvalid(reason=Reason.EMPTY_BEARER)
            return await self._tokens.authenticate(credentials.value)
        if kind == "none":
            raise CredentialsMissing()
        if kind == "duplicate":
            raise TokenInvalid(
                "Send one credential: this request has two Authorization or Utm-Api-Key headers",
                reason=Reason.DUPLICATE_CREDENTIALS,
            )
        if not credentials.value:
            raise ApiKeyInvalid(reason=Reason.EMPTY_API_KEY)
        at = verdict.at = self._clock()
        now = at.timestamp()
        self._address_blocker.check(client_ip, now)
        return await self._key_auth.authenticate(credentials.value, client_ip, now=now)

    def record(
        self,
        verdict: Verdict,
        *,
        method: str,
        path: str,
        status: int,
        user_agent: str | None,
        elapsed_ms: float,
    ) -> None:
        """What a finished request leaves behind: the audit record of a refusal (and of an
        accepted key, if configured), and the key's usage. No I/O (buffered)."""
        failure = verdict.failure
        principal = verdict.principal
        audit = self._audit
        if failure is not None:
            key = failure.key
            if failure.ambiguous_header is not None:
                header = failure.ambiguous_header
                recorded = audit.record(
                    EventType.FORWARD_AUTH_REFUSED,
                    "failure",
                    reason=failure.reason,
                    details={"header": header} if header else None,
                )
            elif failure.method == "none":
                recorded = audit.record(
                    EventType.CREDENTIALS_MISSING, "failure", reason=failure.reason
                )
            elif failure.method == "jwt":
                recorded = audit.record(EventType.TOKEN_REJECTED, "failure", reason=failure.reason)
            else:
                actor = Actor.of(principal, key=key) if principal else Actor(key=key)
                recorded = audit.record(
                    EventType.API_KEY_ACCESS_FAILURE, "failure", actor=actor, reason=failure.reason
                )
            # A refusal the audit trail counts in a summary (repeated past its limits, per
            # key, reason and network) is no usage row either: the summary has its count.
            if key is None or not recorded:
                return
            if verdict.upstream is not None:
                method, path = verdict.upstream
            self._usage.record(
                UsageEvent(
                    api_key_id=key.key_pk,
                    api_key_name=key.name,
                    user_id=key.owner_id,
                    occurred_at=verdict.at or self._clock(),
                    method=method,
                    path=path,
                    status=status,
                    client_ip=verdict.client_ip,
                    user_agent=user_agent,
                    latency_ms=round(elapsed_ms, 3),
                    failure_reason=failure.reason,
                )
            )
            return
        if principal is None or principal.api_key is None:
            return
        key = principal.api_key
        now = verdict.at or self._clock()
        self._count_key_success()
        notable, details, address_event = self._note_use(
            principal, key, verdict.client_ip, now.timestamp()
        )
        if notable is not None or self._audit_key_successes:
            # A candidate: confirmed, off the request path, against the key's last use as
            # every process stored it (``notable_use``). With every accepted request
            # audited the others wait in the same queue, so that this process's records
            # of a key keep the order of its requests.
            self._usage.confirm(
                key.key_pk,
                NotableUse(
                    audit=audit,
                    at=now,
                    reason=notable,
                    details=details,
                    address_event=address_event,
                    idle_seconds=self._idle_seconds,
                    every_success=self._audit_key_successes,
                ),
            )
        if verdict.upstream is not None:
            method, path = verdict.upstream
        # Positional: the request path's cheapest call (no event object is built).
        self._usage.accepted(
            key.key_pk,
            key.name,
            key.owner_id,
            now,
            method,
            path,
            status,
            verdict.client_ip,
            user_agent,
            elapsed_ms,  # rounded when written
        )

    def _note_use(
        self, principal: Principal, key: KeyReference, address: IPAddress | None, now: float
    ) -> tuple[Reason | None, dict[str, int] | None, _Event | None]:
        """Whether an accepted key request is a security event, and which: the key's
        first use, its use after ``idle_seconds`` without use, or its first use from a
        network (in this process: the ``key_new_ip`` rule checks the whole trail); past
        ``MAX_ADDRESSES_PER_KEY`` networks, once ``many_addresses``, then a new network at
        most once a minute for ``MANY_ADDRESSES_QUIET_SECONDS``. Third: the address's own
        event (new address, many addresses), recorded instead of a use after inactivity
        that the cluster's view does not confirm (``notable_use``)."""
        activity = self._activity.get(key.key_pk)
        if activity is None:
            if len(self._activity) >= MAX_TRACKED_KEYS:
                del self._activity[next(iter(self._activity))]
            stored = self._key_auth.stored_last_use(principal.credential_id)
            activity = self._activity[key.key_pk] = _KeyActivity(stored)
        last = activity.last
        address_event: _Event | None = None
        if address is not activity.latest_address:
            activity.latest_address = address
            address_event = activity.new_network(address, now)
        notable: Reason | None = None
        details: dict[str, int] | None = None
        if last is None:
            notable = Reason.FIRST_USE
        elif now - last >= self._idle_seconds:
            notable, details = Reason.AFTER_INACTIVITY, {"idleSeconds": int(now - last)}
        elif address_event is not None:
            notable, details = address_event
        if last is None or now > last:
            activity.last = now
        return notable, details, address_event


def leaves_record(verdict: Verdict) -> bool:
    """Whether :meth:`Gate.record` keeps anything of this request: a refusal, or an
    accepted API key. An accepted token leaves nothing, so callers skip the call (and
    reading the user agent for it)."""
    if verdict.failure is not None:
        return True
    principal = verdict.principal
    return principal is not None and principal.api_key is not None


__all__ = [
    "NO_CREDENTIALS",
    "SAFE_METHODS",
    "VERDICT_SCOPE_KEY",
    "AuthFailure",
    "Credentials",
    "Gate",
    "Requirement",
    "Verdict",
    "credentials_of",
    "leaves_record",
]
