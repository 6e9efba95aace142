"""Domain exceptions shared by every layer.

The tree (``code`` is stable and machine-readable; ``api/errors.py`` maps it to HTTP)::

    AuthgateError
    ├── AuthenticationFailed             401  the caller is not who they claim
    │   ├── CredentialsMissing               no credentials were presented
    │   ├── BadCredentials                   wrong password, unknown or deactivated user
    │   └── TokenRejected                    a bearer token was presented and refused
    │       ├── TokenInvalid                 malformed, forged, unknown key, wrong iss/aud,
    │       │                                not yet valid (``nbf``/``iat`` in the future)
    │       ├── TokenExpired                 validly signed but past ``exp``
    │       └── TokenRevoked                 logged out, or all sessions of the user revoked
    │   ├── SecondFactorFailed               a wrong, used or expired second-factor code
    │   ├── ServiceCredentialInvalid         ``X-Internal-Key`` missing, malformed, unknown,
    │   │                                    wrong or revoked
    │   └── ApiKeyRejected                   an API key was presented and refused
    │       ├── ApiKeyInvalid                malformed, bad checksum, unknown, revoked, wrong
    │       │                                secret: all answered alike ("Invalid API key")
    │       ├── ApiKeyExpired                a genuine key past its expiry
    │       ├── ApiKeyOwnerInactive          a genuine key whose owner is deactivated
    │       └── ApiKeySuspended              a genuine key suspended when its owner was
    │                                        deactivated, not re-enabled since (the owner
    │                                        is active again)
    ├── PermissionDenied                 403  authenticated but not allowed
    │   ├── IpNotAllowed                     a genuine key used from outside its allow list
    │   ├── ServiceCredentialRefused         a live service credential not allowed the
    │   │                                    internal endpoint it called
    │   ├── InsufficientScope                the key's scopes do not cover the request
    │   └── SessionRequired                  sets credentials: needs a password session,
    │                                        never an API key
    ├── NotFound                         404
    ├── Conflict                         409  uniqueness or state conflicts
    ├── ValidationFailed                 400  input that breaks a rule (with per-field messages)
    │   └── AmbiguousUpstreamRequest         forward-auth: the proxy's description of the request
    │       │                                can be read two ways (headers that disagree)
    │       └── AmbiguousUpstreamPath        its path has no single canonical reading
    ├── Throttled                        429  too many attempts or requests (Retry-After)
    │   ├── ClientBlocked                423  this client address is blocked (UTMStack's answer)
    │   ├── AddressBlocked               429  the address block: too many bad API keys from
    │   │                                     this address (``services/address_block``)
    │   ├── SecondFactorLocked           429  too many wrong second-factor codes for the account
    │   └── RateLimited                  429  an API key's own rate limit
    └── Unavailable                      503  something authgate needs cannot serve the request
        │                                     now (Retry-After)
        ├── HashingOverloaded                every password-hashing thread is busy
        └── CodeNotSent                      a second-factor code could not be e-mailed
                                             (``services/second_factor``; v12's login)

    ConfigurationError                        outside the tree: a broken deployment is never
                                              reported to a caller as "bad credentials".

Security rule: a caller who proved possession of a real secret (a validly signed but
expired token) may be told why; anyone else gets the generic message of the branch.
The precise ``reason`` is always available for audit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from authgate.reasons import Reason
from authgate.security.principal import KeyReference


class AuthgateError(Exception):
    """Root of every error authgate raises on purpose."""

    code = "error"
    message = "Request failed"

    def __init__(self, message: str | None = None, *, reason: Reason | None = None) -> None:
        self.message = message or type(self).message
        # ``reason`` is precise and meant for audit/logs; never a secret.
        self.reason: Reason = reason or Reason.of(self.code)
        super().__init__(self.message)


class AuthenticationFailed(AuthgateError):
    code = "unauthorized"
    message = "Full authentication is required to access this resource"


class CredentialsMissing(AuthenticationFailed):
    code = "credentials_missing"


class BadCredentials(AuthenticationFailed):
    code = "bad_credentials"
    message = "Bad credentials"


class TokenRejected(AuthenticationFailed):
    code = "invalid_token"
    message = "Invalid token"


class TokenInvalid(TokenRejected):
    code = "invalid_token"


class TokenExpired(TokenRejected):
    code = "token_expired"
    message = "Token expired"


class TokenRevoked(TokenRejected):
    code = "token_revoked"
    message = "Token revoked"


class SecondFactorFailed(AuthenticationFailed):
    """A second-factor code was refused (wrong, already used, expired). UTMStack's message."""

    code = "invalid_second_factor"
    message = "Your secret code is invalid"


class ServiceCredentialInvalid(AuthenticationFailed):
    """An internal endpoint got no working service credential: missing, malformed,
    unknown, wrong or revoked are answered alike (UTMStack v12: 401 from its auth
    middleware)."""

    code = "invalid_internal_key"
    message = "invalid internal key"


class PermissionDenied(AuthgateError):
    code = "forbidden"
    message = "Access is denied"


class ServiceCredentialRefused(PermissionDenied):
    """A live service credential called an internal endpoint it is not allowed."""

    code = "internal_key_refused"
    message = "internal key not allowed for this endpoint"


class ApiKeyRejected(AuthenticationFailed):
    code = "invalid_api_key"
    message = "Invalid API key"

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: Reason | None = None,
        key: KeyReference | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.key = key


class ApiKeyInvalid(ApiKeyRejected):
    code = "invalid_api_key"


class ApiKeyExpired(ApiKeyRejected):
    code = "api_key_expired"
    message = "API key expired"


class ApiKeyOwnerInactive(ApiKeyRejected):
    code = "api_key_owner_inactive"
    message = "The API key's owner is deactivated"


class ApiKeySuspended(ApiKeyRejected):
    code = "api_key_suspended"
    message = (
        "The API key is suspended (its owner was deactivated); the owner or an "
        "administrator can re-enable it"
    )


class IpNotAllowed(PermissionDenied):
    code = "ip_not_allowed"

    def __init__(self, address: str, *, key: KeyReference | None = None) -> None:
        super().__init__(
            f"Invalid IP address: {address}. If you recognize this IP, add it to allowed IP list.",
            reason=Reason.IP_NOT_ALLOWED,
        )
        self.key = key


class InsufficientScope(PermissionDenied):
    code = "insufficient_scope"
    message = "The API key's scopes do not allow this request"


class SessionRequired(PermissionDenied):
    """The operation sets credentials (or sessions): only a user session from a password
    login may do it, never an API key, whatever its scopes."""

    code = "session_required"
    message = "This operation needs a user session from a password login, not an API key"


class NotFound(AuthgateError):
    code = "not_found"
    message = "Not found"


class Conflict(AuthgateError):
    code = "conflict"
    message = "Conflict"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field's problem, in JHipster's ``fieldErrors`` shape."""

    field: str
    message: str
    object_name: str = "body"


class ValidationFailed(AuthgateError):
    code = "validation_failed"
    message = "Request is invalid"

    def __init__(
        self,
        message: str | None = None,
        *,
        field_errors: Sequence[FieldError] = (),
        reason: Reason | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.field_errors = tuple(field_errors)


class AmbiguousUpstreamRequest(ValidationFailed):
    """Forward-auth: the request a proxy asks about is not described one way only.

    Refused rather than guessed: whichever reading authgate picked, the upstream might
    act on the other. ``reason`` says what was ambiguous (for the audit trail);
    ``header`` names the header at fault, if one is.
    """

    code = "ambiguous_upstream_request"
    message = "The upstream request is ambiguous"

    def __init__(
        self, message: str | None = None, *, reason: Reason | None = None, header: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.header = header


class AmbiguousUpstreamPath(AmbiguousUpstreamRequest):
    """Forward-auth: the upstream path has no single canonical form (encoded separators,
    double encoding, control characters, a ``..`` above the root, ...)."""

    code = "ambiguous_upstream_path"
    message = "The upstream path is ambiguous"


class Throttled(AuthgateError):
    """Refused for now; ``retry_after`` seconds tell when to try again."""

    code = "too_many_attempts"
    message = "Too many attempts; try again later"

    def __init__(
        self, message: str | None = None, *, retry_after: int, reason: Reason | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = max(1, retry_after)


class ClientBlocked(Throttled):
    code = "client_blocked"
    message = "Authentication blocked"


class AddressBlocked(Throttled):
    """The address block: this address sent too many bad API keys (or service
    credentials) and is refused for a while, whatever key it sends now."""

    message = "Too many invalid API keys from this address"


class SecondFactorLocked(Throttled):
    """Too many wrong second-factor codes for this account: its second step is refused
    for a while and the login must start again."""

    code = "second_factor_locked"
    message = "Too many wrong codes; sign in again later"


class RateLimited(Throttled):
    code = "rate_limited"
    message = "Rate limit exceeded"


class Unavailable(AuthgateError):
    """Something the request needs cannot serve it now (not the caller's fault, nor a
    bug): answered 503 with ``Retry-After`` (``retry_after`` seconds)."""

    code = "unavailable"
    message = "The service is temporarily unavailable; try again shortly"

    def __init__(
        self, message: str | None = None, *, retry_after: int, reason: Reason | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class HashingOverloaded(Unavailable):
    """Every password-hashing thread is busy and the queue is full (or the wait would
    pass its deadline)."""

    code = "overloaded"
    message = "Too many sign-ins are being checked; try again shortly"


class ConfigurationError(Exception):
    """The deployment is misconfigured (bad key file, unreadable secret, ...)."""
