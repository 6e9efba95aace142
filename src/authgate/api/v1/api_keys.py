"""``/api/v1/api-keys``: UTMStack v12's API keys (snake_case), on the same keys and
service as ``/api/api-keys``.

Follows UTMStack v12's ``backend/modules/iam`` (routes.go, dto/api_key.go,
handler/api_key.go, usecase/api_key.go). As in v12,
creating a key does not show it: ``POST /api-keys/{id}/generate`` does (a secret is made
at creation all the same, nobody ever sees it, and ``generate`` replaces it).

v12's delete removes the key's row; authgate keeps a revoked key (the audit trail and
usage log name it, ``/api/api-keys?includeRevoked`` lists it). Here a revoked key is no
key: 404 to GET, PUT, generate and DELETE, and left out of the list, as v12 answers for
a deleted one (its key page shows any 409 as "name already taken").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, Field

from authgate.api.access import SelfServiceRoute, principal_of, services_of, sets_credentials
from authgate.api.api_keys import comma_joined
from authgate.api.errors import documented_v12
from authgate.api.pagination import MAX_PAGE_SIZE
from authgate.api.schemas import Instant, LenientBody
from authgate.api.v1.paging import PageInfo
from authgate.api.v1.paths import key_ref_of
from authgate.exceptions import Conflict, NotFound
from authgate.reasons import Reason
from authgate.services.api_key_views import ApiKeyView, KeySpec
from authgate.services.api_keys import NAME_MAX_LENGTH
from authgate.storage.paging import PageRequest

PREFIX = "/api/v1/api-keys"
router = APIRouter(prefix=PREFIX, tags=["v12 API keys"], route_class=SelfServiceRoute)

# What is no key id is 400 "invalid id" (``key_ref_of``), as in v12.
KEY_PATH = "/{key_id:v12_key_id}"
KeyIdPath = Annotated[
    str,
    Path(
        description="The key's UUID. Deprecated until the next release: its old numeric id.",
        examples=["6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f"],
    ),
]


def no_restriction(value: object) -> object:
    """v12 reads ``"allowed_ip": null`` as an empty list (a Go nil slice): any address."""
    return [] if value is None else comma_joined(value)


class ApiKeyRequest(LenientBody):
    """v12's body for creating and replacing a key. authgate requires ``expires_at``
    (and caps it) unless ``AUTHGATE_API_KEY_REQUIRE_EXPIRY=false``: a null one is 400.
    No ``allowed_ip`` (or null, or empty) lets the key in from any address."""

    name: Annotated[str, Field(max_length=NAME_MAX_LENGTH, examples=["log-shipper"])]
    allowed_ip: Annotated[
        list[Annotated[str, Field(max_length=64)]],
        BeforeValidator(no_restriction),
        Field(max_length=100, examples=[["203.0.113.7", "10.0.0.0/8"]]),
    ] = Field(default_factory=list)
    expires_at: Instant | None = None

    def spec(self) -> KeySpec:
        return KeySpec(name=self.name, allowed_networks=self.allowed_ip, expires_at=self.expires_at)


class ApiKeyResponse(BaseModel):
    id: str = Field(description="The key's UUID.")
    name: str
    allowed_ip: list[str]
    created_at: datetime
    generated_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, key: ApiKeyView) -> ApiKeyResponse:
        return cls(
            id=key.public_id,
            name=key.name,
            allowed_ip=list(key.allowed_networks),
            created_at=key.created_at,
            generated_at=key.generated_at,
            expires_at=key.expires_at,
        )


class GeneratedKey(BaseModel):
    api_key: str = Field(description="The key itself. Shown only in this response.")


class ApiKeyPage(BaseModel):
    data: list[ApiKeyResponse]
    page_info: PageInfo


def _revoked() -> NotFound:
    # The words of any key this caller cannot see: v12 has no revoked key to tell apart.
    return NotFound("API key not found", reason=Reason.API_KEY_REVOKED)


@contextmanager
def _revoked_is_not_found() -> Iterator[None]:
    """The service's 409 for a change to a revoked key, as the 404 v12 answers."""
    try:
        yield
    except Conflict as refusal:
        if refusal.reason is not Reason.API_KEY_REVOKED:
            raise
        raise _revoked() from None


@router.post(
    "",
    summary="Create an API key (without showing it: generate it next)",
    status_code=201,
    responses=documented_v12(400, 401, 403, 409, 413),
)
@sets_credentials("creates an API key")
async def create_api_key(
    body: ApiKeyRequest, request: Request, response: Response
) -> ApiKeyResponse:
    caller = principal_of(request)
    created = await services_of(request).api_keys.create(caller.user_id, body.spec(), caller=caller)
    response.headers["Location"] = f"{PREFIX}/{created.view.public_id}"
    return ApiKeyResponse.of(created.view)


@router.get(
    "", summary="The caller's API keys, a page at a time", responses=documented_v12(400, 401, 403)
)
async def list_api_keys(
    request: Request,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="One-based page number.")] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> ApiKeyPage:
    # No page when empty (total_pages 0), as v12's API keys list; its users list differs.
    listed = await services_of(request).api_keys.list_keys(
        principal_of(request), PageRequest(page=page - 1, size=page_size)
    )
    return ApiKeyPage(
        data=[ApiKeyResponse.of(key) for key in listed.items],
        page_info=PageInfo.of(page=page, page_size=page_size, total_items=listed.total),
    )


@router.get(KEY_PATH, summary="One API key", responses=documented_v12(400, 401, 403, 404))
async def get_api_key(key_id: KeyIdPath, request: Request) -> ApiKeyResponse:
    # The caller's own keys only, as v12's Get (FindByIDAndUser); everyone's keys, for
    # api_keys.read, stay on /api/api-keys.
    view = await services_of(request).api_keys.get(
        principal_of(request), key_ref_of(key_id), own_only=True
    )
    if view.revoked_at is not None:
        raise _revoked()
    return ApiKeyResponse.of(view)


@router.put(
    KEY_PATH,
    summary="Replace name, allowed IPs and expiry",
    responses=documented_v12(400, 401, 403, 404, 409, 413),
)
@sets_credentials("changes an API key's allowed addresses or expiry")
async def replace_api_key(
    key_id: KeyIdPath, body: ApiKeyRequest, request: Request
) -> ApiKeyResponse:
    with _revoked_is_not_found():
        view = await services_of(request).api_keys.replace(
            principal_of(request), key_ref_of(key_id), body.spec()
        )
    return ApiKeyResponse.of(view)


@router.post(
    KEY_PATH + "/generate",
    summary=(
        "Generate the key (again): the previous one stops working; shown once. "
        "The expiry moves as far after now as it was after the last generation "
        "(at most the maximum lifetime)"
    ),
    responses=documented_v12(400, 401, 403, 404, 409),
)
@sets_credentials("generates an API key")
async def generate_api_key(key_id: KeyIdPath, request: Request, response: Response) -> GeneratedKey:
    # v12's Generate keeps the key's lifetime (usecase/api_key.go).
    with _revoked_is_not_found():
        plaintext = await services_of(request).api_keys.regenerate(
            principal_of(request), key_ref_of(key_id), renew_lifetime=True
        )
    response.headers["Cache-Control"] = "no-store"
    return GeneratedKey(api_key=plaintext)


@router.delete(
    KEY_PATH,
    summary="Revoke the key (effective at once, everywhere)",
    status_code=204,
    response_class=Response,
    responses=documented_v12(400, 401, 403, 404),
)
async def revoke_api_key(key_id: KeyIdPath, request: Request) -> Response:
    # The caller's own keys only, as v12's Delete (FindByIDAndUser) and the other v12 key
    # routes; revoking anyone's key, for api_keys.write, stays on /api/api-keys.
    if not await services_of(request).api_keys.revoke(
        principal_of(request), key_ref_of(key_id), own_only=True
    ):
        raise _revoked()  # revoked before: v12 deleted it, and answers 404
    return Response(status_code=204)
