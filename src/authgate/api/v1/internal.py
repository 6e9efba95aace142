"""UTMStack v12's internal endpoints: other services call them with a service credential.

``POST /api/v1/api-keys/authenticate`` is how v12's log ingestion
(``log-input/auth/upstream.go``) checks an API key pushed to it: ``X-Internal-Key``
carries the calling service's credential, the camelCase body the key and the address
it came from. v12 checks one shared secret from the environment; here each service has
its own credential, allowed only the endpoints it needs (``services/service_credentials``).

* The service credential is checked before the body is read: missing, invalid or
  revoked is 401, as v12's auth middleware answers in front of the route (a credential
  that does not work is no better than none); a live one not allowed this endpoint is
  403. Refusals are audited, and bad credentials counted against the caller's address
  like bad API keys (429 once blocked). A user's token or API key instead of the
  service credential is checked as on any route (401 when bad) and then refused with
  v12's 403 ``internal-only endpoint``.
* The key is then checked by the gate exactly as if its client had sent it from
  ``clientIp``: allow list, expiry, revocation, suspension, the owner's state, the
  key's rate limit, and bad keys counted (and blocked) against ``clientIp``, as
  forward-auth counts them against the address its proxy reports. Every refusal of
  the key is 401 ``invalid api key`` but a throttle's: the key over its own rate limit,
  or ``clientIp`` blocked for bad keys, is 429 with ``Retry-After`` (the reason goes to
  the audit trail and the key's usage log, as for any key request). A missing or
  unreadable ``clientIp`` is no address, as v12's ``ipAllowed`` takes it: a key without
  an allow list passes, a key with one is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from authgate.api.access import (
    Endpoint,
    Handler,
    admit,
    client_address,
    header_value,
    request_credentials,
    services_of,
    verdict_of,
)
from authgate.api.errors import documented_v12
from authgate.api.routing import AuthgateRoute
from authgate.exceptions import (
    ApiKeyInvalid,
    PermissionDenied,
    ServiceCredentialInvalid,
    Throttled,
)
from authgate.reasons import Reason
from authgate.security.networks import parse_address
from authgate.security.principal import Principal
from authgate.services.gate import Credentials
from authgate.services.service_credentials import InternalEndpoint

PREFIX = "/api/v1"
INTERNAL_KEY_HEADER = "X-Internal-Key"
_INTERNAL_KEY_HEADER = INTERNAL_KEY_HEADER.lower().encode("ascii")
_INTERNAL_ENDPOINT_MARK = "__authgate_internal_endpoint__"


def internal_endpoint(endpoint: InternalEndpoint) -> Callable[[Endpoint], Endpoint]:
    """Marks the handler of an :class:`InternalRoute` with the registry entry a service
    credential must be allowed. Put it under the router's decorator."""

    def mark(handler: Endpoint) -> Endpoint:
        setattr(handler, _INTERNAL_ENDPOINT_MARK, endpoint)
        return handler

    return mark


class InternalRoute(AuthgateRoute):
    """A route only a service credential allowed its internal endpoint reaches (401
    without a working one, 403 for one not allowed it or for a user's credential),
    checked before FastAPI reads the body."""

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()
        endpoint: InternalEndpoint | None = getattr(self.endpoint, _INTERNAL_ENDPOINT_MARK, None)
        if endpoint is None:  # an unmarked internal route would be open to every service
            raise TypeError(f"{self.path}: internal route without @internal_endpoint")
        marked: InternalEndpoint = endpoint

        async def internal(request: Request) -> Response:
            services = services_of(request)
            scope = request.scope
            presented = header_value(scope, _INTERNAL_KEY_HEADER)
            try:
                await services.service_credentials.authenticate(
                    presented, marked, client_address(scope, services)
                )
            except ServiceCredentialInvalid:
                if not presented and request_credentials(scope, services).kind != "none":
                    # v12's middleware takes a user's token or API key here as anywhere
                    # (401 when bad), and RequireInternal refuses the user: always raises.
                    await admit(request, services, request.method, _internal_only)
                raise
            return await handle(request)

        return internal


router = APIRouter(prefix=PREFIX, tags=["v12 internal"], route_class=InternalRoute)


class KeyCheckRequest(BaseModel):
    """v12's body (camelCase); unknown fields are ignored."""

    apiKey: Annotated[str, Field(max_length=1024)]
    clientIp: Annotated[
        str,
        Field(
            max_length=64,
            examples=["203.0.113.7"],
            description="The key's client. Missing or not an address: only a key "
            "without an allow list passes.",
        ),
    ] = ""


class KeyCheckResponse(BaseModel):
    userId: str = Field(description="The key owner's public UUID.")
    login: str
    tenantId: str | None = Field(
        description="authgate has no tenants: AUTHGATE_V12_TENANT_ID, by default "
        "UTMStack's single tenant."
    )


def _any_key(_principal: Principal, _method: str) -> None:
    """What the key may do is for the calling service to decide: any valid key passes."""


def _internal_only(_principal: Principal, _method: str) -> None:
    """A user's credential on an internal route: refused, whoever it is."""
    raise PermissionDenied("internal-only endpoint", reason=Reason.INTERNAL_ONLY)


@router.post(
    "/api-keys/authenticate",
    summary="Check an API key for another service (UTMStack v12's internal key check)",
    responses=documented_v12(400, 401, 403, 413, 429),
)
@internal_endpoint(InternalEndpoint.API_KEYS_AUTHENTICATE)
async def authenticate_api_key(body: KeyCheckRequest, request: Request) -> KeyCheckResponse:
    services = services_of(request)
    # No address is inside no allow list (api_key_auth): never a stand-in address.
    address = parse_address(body.clientIp)
    verdict = await services.gate.check(
        verdict_of(request.scope), Credentials("api_key", body.apiKey), address, "POST", _any_key
    )
    error = verdict.error
    if isinstance(error, Throttled):  # bad keys from clientIp, or the key's own limit
        raise error
    if error is not None:
        raise ApiKeyInvalid("invalid api key", reason=error.reason) from None
    principal = verdict.principal
    assert principal is not None  # no error: the gate admitted the key
    profile = await services.sessions.profile(principal.user_id)
    return KeyCheckResponse(
        userId=profile.public_id, login=principal.login, tenantId=services.settings.v12_tenant_id
    )
