"""UTMStack v12's internal endpoints: other services call them with a service credential.

``POST /api/v1/api-keys/authenticate`` is how v12's log ingestion
(``log-input/auth/upstream.go``) checks an API key pushed to it: ``X-Internal-Key``
carries the calling service's credential, the camelCase body the key and the address
it came from. v12 checks one shared secret from the environment; here each service has
its own credential, allowed only the endpoints it needs (``services/service_credentials``).

* The service credential is checked before the body is read: missing, invalid,
  revoked, or not allowed this endpoint is 403 (v12 answers 403 when it is missing;
  a credential that does not work is no better than none). Refusals are audited, and
  counted against the caller's address like bad API keys (429 once blocked).
* The key is then checked by the gate exactly as if its client had sent it from
  ``clientIp``: allow list, expiry, revocation, suspension, the owner's state, the
  key's rate limit, and bad keys counted (and blocked) against ``clientIp``, as
  forward-auth counts them against the address its proxy reports. Every refusal of
  the key is 401 ``invalid api key`` (the reason goes to the audit trail and the key's
  usage log, as for any key request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from authgate.api.access import (
    Endpoint,
    Handler,
    client_address,
    header_value,
    services_of,
    verdict_of,
)
from authgate.api.errors import documented_v12
from authgate.exceptions import ApiKeyInvalid, FieldError, Throttled, ValidationFailed
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


class InternalRoute(APIRoute):
    """A route only a service credential allowed its internal endpoint reaches (403
    otherwise), checked before FastAPI reads the body."""

    def get_route_handler(self) -> Handler:
        handle = super().get_route_handler()
        endpoint: InternalEndpoint | None = getattr(self.endpoint, _INTERNAL_ENDPOINT_MARK, None)
        if endpoint is None:  # an unmarked internal route would be open to every service
            raise TypeError(f"{self.path}: internal route without @internal_endpoint")
        marked: InternalEndpoint = endpoint

        async def internal(request: Request) -> Response:
            services = services_of(request)
            scope = request.scope
            await services.service_credentials.authenticate(
                header_value(scope, _INTERNAL_KEY_HEADER),
                marked,
                client_address(scope, services),
            )
            return await handle(request)

        return internal


router = APIRouter(prefix=PREFIX, tags=["v12 internal"], route_class=InternalRoute)


class KeyCheckRequest(BaseModel):
    """v12's body (camelCase); unknown fields are ignored."""

    apiKey: Annotated[str, Field(max_length=1024)]
    clientIp: Annotated[str, Field(max_length=64, examples=["203.0.113.7"])]


class KeyCheckResponse(BaseModel):
    userId: str = Field(description="The key owner's public UUID.")
    login: str
    tenantId: str | None = Field(
        description="authgate has no tenants: the configured AUTHGATE_V12_TENANT_ID (null)."
    )


def _any_key(_principal: Principal, _method: str) -> None:
    """What the key may do is for the calling service to decide: any valid key passes."""


@router.post(
    "/api-keys/authenticate",
    summary="Check an API key for another service (UTMStack v12's internal key check)",
    responses=documented_v12(400, 401, 403, 413, 429),
)
@internal_endpoint(InternalEndpoint.API_KEYS_AUTHENTICATE)
async def authenticate_api_key(body: KeyCheckRequest, request: Request) -> KeyCheckResponse:
    services = services_of(request)
    address = parse_address(body.clientIp)
    if address is None:
        message = "invalid client ip"
        raise ValidationFailed(message, field_errors=[FieldError("clientIp", message)])
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
