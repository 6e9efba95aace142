"""Asking authgate about a credential: ``GET /api/auth/verify`` (its forward-auth endpoint).

The guard sends what a reverse proxy would: the credential in the header it came in,
the client address in ``X-Forwarded-For`` and ``Forwarded`` ("unknown" when the server
gave none; authgate believes them only from addresses in its
``AUTHGATE_TRUSTED_PROXIES``), the method-override headers as they came, and the
original method and URI (authgate's
forward-auth rules and the ``write`` scope for unsafe methods apply to them) in both
header pairs authgate knows (``X-Original-*`` and ``X-Forwarded-*``, the same values),
so that it is read alike whichever proxy authgate is configured for. No other header
of the incoming request is passed on. When the app has a root path, authgate is asked
about the route's reading of the URI too, and both must pass (``_paths``).

* 200 with the identity headers: a :class:`GuardPrincipal`, remembered for
  ``key_cache_ttl`` seconds under a SHA-256 of what was sent (credential, client
  address, method, raw URI with its query): the plaintext is never a cache key, and a
  different address or request (another spelling of the path included) is asked about
  afresh, since authgate's answer depends on them.
* 400/401/403/423/429: refused, with authgate's code, message, ``WWW-Authenticate``
  and ``Retry-After``. Refusals are never cached, so authgate keeps counting bad keys.
* anything else (5xx, a redirect, a 200 without identity, or for an API key without
  ``X-Auth-Scopes``, no whole answer within ``timeout``, however slowly it trickles
  in): 503. The guard fails closed and never lets such a request through; a key's
  missing scopes never read as "all scopes", which is what a user's token has.

A malformed key or a bad checksum is refused here, without asking: authgate would
answer exactly the same "Invalid API key".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx2

from authgate.exceptions import ApiKeyInvalid
from authgate.guard._cache import ExpiringCache
from authgate.guard._errors import (
    REALM,
    AccessDenied,
    AuthgateUnavailable,
    GuardError,
    InvalidRequest,
    NotAuthenticated,
    Throttled,
)
from authgate.guard._incoming import Credential, IncomingRequest
from authgate.guard._link import Answer, AuthgateLink, LinkFailure
from authgate.guard._principal import GuardPrincipal
from authgate.security.keys import check_key_shape
from authgate.security.principal import parse_authorities

__all__ = ["VERIFY_PATH", "RemoteVerifier"]

VERIFY_PATH = "api/auth/verify"
_PASSED_ON = ("WWW-Authenticate", "Retry-After")
# authgate's answers are headers and at most a short JSON error: anything longer is not
# authgate, and is not read on.
_MAX_ANSWER_BYTES = 64 * 1024
_REFUSALS: dict[int, type[GuardError]] = {
    400: InvalidRequest,
    401: NotAuthenticated,
    403: AccessDenied,
    423: Throttled,
    429: Throttled,
}

log = logging.getLogger("authgate.guard")


class RemoteVerifier:
    """Verifies credentials by asking authgate, with a short cache of successes."""

    def __init__(
        self,
        link: AuthgateLink,
        *,
        cache_ttl: float,
        cache_size: int,
        timeout: float,
        timer: Callable[[], float],
    ) -> None:
        self._link = link
        self._timeout = timeout
        self._ttl = cache_ttl
        self._cache: ExpiringCache[bytes, GuardPrincipal] = ExpiringCache(cache_size)
        self._timer = timer  # monotonic: deadlines only

    async def verify(self, request: IncomingRequest) -> GuardPrincipal:
        """Raises:
        GuardError: authgate refused the credential (its status), or could not be
            asked (``AuthgateUnavailable``, 503).
        """
        credential = request.credential
        if credential is None:
            raise NotAuthenticated(code="credentials_missing", headers={"WWW-Authenticate": REALM})
        if credential.kind == "api_key":
            try:
                check_key_shape(credential.value)
            except ApiKeyInvalid:
                raise NotAuthenticated(
                    "Invalid API key",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
                ) from None
        full, *other_readings = request.uris
        principal = await self._verify_uri(request, credential, full)
        for uri in other_readings:
            # The route's reading of the path must pass too (``_paths``); same caller.
            await self._verify_uri(request, credential, uri)
        return principal

    async def _verify_uri(
        self, request: IncomingRequest, credential: Credential, uri: str
    ) -> GuardPrincipal:
        cache_key = _cache_key(request, credential, uri)
        cached = self._cache.get(cache_key, now=self._timer())
        if cached is not None:
            return cached
        principal = await self._ask(request, credential, uri)
        if self._ttl > 0:
            # The deadline counts from the answer: a slow authgate shortens nothing.
            self._cache.put(cache_key, principal, expires_at=self._timer() + self._ttl)
        return principal

    async def _ask(
        self, request: IncomingRequest, credential: Credential, uri: str
    ) -> GuardPrincipal:
        """One call to authgate. ``fail_after`` bounds the whole call: httpx's timeout
        is per read, so an answer trickling a byte at a time would never end it."""
        headers = _headers(request, credential, uri)
        try:
            with anyio.fail_after(self._timeout):
                response = await self._link.get(
                    VERIFY_PATH, headers=headers, limit=_MAX_ANSWER_BYTES
                )
        except (httpx2.HTTPError, TimeoutError, LinkFailure) as error:
            log.warning("authgate unreachable for %s: %s", VERIFY_PATH, type(error).__name__)
            raise AuthgateUnavailable() from None
        if response.status_code == 200:
            principal = _principal(response.headers)
            if principal is None:
                log.error(
                    "authgate answered 200 without identity headers (or a key's scopes): "
                    "is AUTHGATE_URL right?"
                )
                raise AuthgateUnavailable()
            return principal
        refusal = _REFUSALS.get(response.status_code)
        if refusal is None:
            log.warning("authgate answered HTTP %s to %s", response.status_code, VERIFY_PATH)
            raise AuthgateUnavailable()
        code, message = _code_and_message(response)
        passed_on = {
            name: response.headers[name] for name in _PASSED_ON if name in response.headers
        }
        raise refusal(message, code=code, status=response.status_code, headers=passed_on)


def _headers(
    request: IncomingRequest, credential: Credential, uri: str
) -> list[tuple[bytes, bytes]]:
    headers = [
        ("X-Original-Method", request.method),
        ("X-Original-URI", uri),
        ("X-Forwarded-Method", request.method),
        ("X-Forwarded-Uri", uri),
    ]
    if credential.header == "utm-api-key":
        headers.append(("Utm-Api-Key", credential.value))
    else:
        headers.append(("Authorization", f"Bearer {credential.value}"))
    # Only the address the guard saw (a client's own forwarding headers are not passed
    # on), in both headers authgate may be configured to read. Without one (a unix
    # socket), "unknown": authgate then knows no address for the caller, which no allow
    # list admits; sending nothing would make the guard's own address the caller's.
    address = request.client_ip
    headers.append(("X-Forwarded-For", address or "unknown"))
    if address is None:
        headers.append(("Forwarded", "for=unknown"))
    else:
        headers.append(("Forwarded", f'for="[{address}]"' if ":" in address else f"for={address}"))
    headers.extend(request.overrides)
    # As bytes, each value as it came (read as latin-1): httpx refuses non-ASCII text in
    # a header, not bytes, and a client's odd byte must be authgate's to judge, not a 500.
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers]


def _cache_key(request: IncomingRequest, credential: Credential, uri: str) -> bytes:
    """Exactly what :func:`_headers` sends, so that a cached answer is the one authgate
    gave for this request: the raw URI, not the decoded path (``/public%2Fy`` decodes
    to ``/public/y``, which authgate allows, but is refused as sent)."""
    # Unambiguous: the overrides are counted, and only the URI, which comes last,
    # could contain a NUL.
    parts = (
        credential.header,
        credential.value,
        request.client_ip or "",
        request.method,
        str(len(request.overrides)),
        *(f"{name}:{value}" for name, value in request.overrides),
        uri,
    )
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).digest()


def _principal(headers: httpx2.Headers) -> GuardPrincipal | None:
    login = headers.get("X-Auth-User")
    user_id = headers.get("X-Auth-User-Id", "")
    method = headers.get("X-Auth-Method")
    if not login or not user_id.isdigit() or method not in ("jwt", "api_key"):
        return None
    scopes = headers.get("X-Auth-Scopes")
    if method == "api_key" and scopes is None:
        # authgate always sends a key's scopes (empty for none); None would mean "every
        # scope", as for a user's token.
        return None
    return GuardPrincipal(
        login=login,
        user_id=int(user_id),
        roles=parse_authorities(headers.get("X-Auth-Roles", "")),
        method="jwt" if method == "jwt" else "api_key",
        key_id=headers.get("X-Auth-Key-Id") or None,
        scopes=parse_authorities(scopes) if scopes is not None else None,
        permissions=parse_authorities(headers.get("X-Auth-Permissions", "")),
    )


def _code_and_message(response: Answer) -> tuple[str | None, str | None]:
    """authgate's stable code and message, when the body is its JSON error."""
    code = response.headers.get("X-Auth-Error")
    message = None
    try:
        body: Any = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("code"), str):
            code = body["code"]
        if isinstance(body.get("message"), str):
            message = body["message"]
    return code, message
