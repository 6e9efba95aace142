"""``/api/service-credentials``: the credentials other services present in
``X-Internal-Key``, for administrators (see ``services/service_credentials``).

Creating, editing and rotating one gives a service access: like API keys, that needs a
password session (``sets_credentials``), never an API key with the admin scope.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import Field

from authgate.api.access import (
    AdminConfigurationRoute,
    requires_permission,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented
from authgate.api.schemas import CreatedServiceCredentialDTO, LenientBody, ServiceCredentialDTO
from authgate.security.permissions import SETTINGS_READ, SETTINGS_WRITE
from authgate.services.api_keys import MAX_GRACE
from authgate.services.service_credentials import (
    NAME_MAX_LENGTH,
    InternalEndpoint,
)
from authgate.services.text_rules import REQUIRED_NAME_PATTERN

router = APIRouter(
    prefix="/api/service-credentials",
    tags=["service credentials"],
    route_class=AdminConfigurationRoute,
)

CredentialIdPath = Annotated[str, Path(max_length=12, examples=["Zx81QmT0aB3c"])]
_ENDPOINTS = [endpoint.value for endpoint in InternalEndpoint]


class ServiceCredentialBody(LenientBody):
    name: Annotated[
        str,
        Field(
            max_length=NAME_MAX_LENGTH,
            examples=["utmstack-log-input"],
            json_schema_extra={"pattern": REQUIRED_NAME_PATTERN},  # the service checks
        ),
    ]
    endpoints: Annotated[
        list[Annotated[str, Field(max_length=100, json_schema_extra={"enum": _ENDPOINTS})]],
        Field(
            max_length=len(_ENDPOINTS) * 4,
            examples=[["api-keys.authenticate"]],
            json_schema_extra={"minItems": 1},  # the service checks: 422 for none
        ),
    ]


@router.get(
    "",
    summary="Service credentials (never their secrets)",
    response_model=list[ServiceCredentialDTO],
    responses=documented(401, 403, 422),
)
@requires_permission(SETTINGS_READ)
async def list_service_credentials(
    request: Request, includeRevoked: bool = False
) -> list[ServiceCredentialDTO]:
    listed = await services_of(request).service_credentials.list_all(include_revoked=includeRevoked)
    return [ServiceCredentialDTO.of(view) for view in listed]


@router.post(
    "",
    summary="Create a service credential; returns it once",
    status_code=201,
    response_model=CreatedServiceCredentialDTO,
    responses=documented(401, 403, 409, 413, 422),
)
@requires_permission(SETTINGS_WRITE)
@sets_credentials("creates a service credential")
async def create_service_credential(
    body: ServiceCredentialBody, request: Request, response: Response
) -> CreatedServiceCredentialDTO:
    created = await services_of(request).service_credentials.create(body.name, body.endpoints)
    response.headers["Cache-Control"] = "no-store"
    return CreatedServiceCredentialDTO.created(created)


@router.get(
    "/{credential_id}",
    summary="One service credential",
    response_model=ServiceCredentialDTO,
    responses=documented(401, 403, 404, 422),
)
@requires_permission(SETTINGS_READ)
async def get_service_credential(
    credential_id: CredentialIdPath, request: Request
) -> ServiceCredentialDTO:
    return ServiceCredentialDTO.of(
        await services_of(request).service_credentials.get(credential_id)
    )


@router.put(
    "/{credential_id}",
    summary="Rename a service credential and replace its internal endpoints",
    response_model=ServiceCredentialDTO,
    responses=documented(401, 403, 404, 409, 413, 422),
)
@requires_permission(SETTINGS_WRITE)
@sets_credentials("changes the internal endpoints a service credential may call")
async def update_service_credential(
    credential_id: CredentialIdPath, body: ServiceCredentialBody, request: Request
) -> ServiceCredentialDTO:
    view = await services_of(request).service_credentials.update(
        credential_id, name=body.name, endpoints=body.endpoints
    )
    return ServiceCredentialDTO.of(view)


@router.post(
    "/{credential_id}/rotate",
    summary="A new secret; the previous one works on for graceSeconds (default 0)",
    response_model=CreatedServiceCredentialDTO,
    responses=documented(401, 403, 404, 409, 422),
)
@requires_permission(SETTINGS_WRITE)
@sets_credentials("rotates a service credential")
async def rotate_service_credential(
    credential_id: CredentialIdPath,
    request: Request,
    response: Response,
    graceSeconds: Annotated[
        int,
        Query(
            ge=0,
            le=int(MAX_GRACE.total_seconds()),
            description="How long the previous secret keeps working (0 to 7 days).",
        ),
    ] = 0,
) -> CreatedServiceCredentialDTO:
    created = await services_of(request).service_credentials.rotate(
        credential_id, grace=timedelta(seconds=graceSeconds)
    )
    response.headers["Cache-Control"] = "no-store"
    return CreatedServiceCredentialDTO.created(created)


@router.delete(
    "/{credential_id}",
    summary="Revoke a service credential (refused from the next call on)",
    status_code=204,
    response_class=Response,
    responses=documented(401, 403, 404, 422),
)
@requires_permission(SETTINGS_WRITE)
async def revoke_service_credential(credential_id: CredentialIdPath, request: Request) -> Response:
    await services_of(request).service_credentials.revoke(credential_id)
    return Response(status_code=204)
