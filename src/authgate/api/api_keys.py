"""Managed API keys at UTMStack v11's paths (``/api/api-keys``), owner-scoped."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, BeforeValidator, Field
from starlette.datastructures import URL

from authgate.api.access import (
    AdminConfigurationRoute,
    ApiKeyManagementRoute,
    principal_of,
    requires_permission,
    services_of,
    sets_credentials,
)
from authgate.api.errors import documented
from authgate.api.key_paths import KEY_PATH, KeyFilter, KeyIdPath
from authgate.api.pagination import PageRequestDep, paged
from authgate.api.schemas import (
    ApiKeyDTO,
    CreatedApiKeyDTO,
    Instant,
    LenientBody,
    UsageRecordDTO,
)
from authgate.clock import utc_now
from authgate.security.permissions import API_KEYS_READ
from authgate.security.principal import SCOPE_PATTERN
from authgate.services.api_key_views import KeySpec
from authgate.services.api_keys import MAX_GRACE, NAME_MAX_LENGTH, REVIEW_LIMIT, REVIEW_LIMIT_MAX
from authgate.services.key_refs import key_ref
from authgate.services.text_rules import REQUIRED_NAME_PATTERN
from authgate.storage.api_key_repository import UsageFilter
from authgate.storage.paging import Page

router = APIRouter(prefix="/api/api-keys", tags=["api-keys"], route_class=ApiKeyManagementRoute)
# Registered before ``router``: "/review" must not be taken for a key id.
review_router = APIRouter(
    prefix="/api/api-keys", tags=["api-keys"], route_class=AdminConfigurationRoute
)

Scope = Annotated[str, Field(pattern=SCOPE_PATTERN, examples=["read"])]


def comma_joined(value: object) -> object:
    """UTMStack stores ``allowed_ip`` comma-joined, and scripts send it that way too:
    ``"1.2.3.4, 10.0.0.0/8"`` is the list of its parts (empty parts dropped)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# An expiry the server accepts whenever the document is read (a fixed date would
# become a refused example once it has passed): 90 days after the process started.
_EXAMPLE_EXPIRY = (utc_now() + timedelta(days=90)).strftime("%Y-%m-%dT00:00:00.000Z")


class ApiKeyBody(LenientBody):
    """UTMStack's body for creating and replacing a key, plus optional ``scopes``."""

    name: Annotated[
        str,
        Field(
            max_length=NAME_MAX_LENGTH,
            examples=["ci-deploy"],
            json_schema_extra={"pattern": REQUIRED_NAME_PATTERN},  # the service checks
        ),
    ]
    allowedIp: Annotated[
        list[Annotated[str, Field(max_length=64)]],
        BeforeValidator(comma_joined),
        Field(
            max_length=100,
            examples=[["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"]],
            description="Addresses and CIDR networks (a list, or one comma-joined string); "
            "a network with host bits set is stored as its network.",
        ),
    ] = Field(default_factory=list)
    expiresAt: Instant | None = Field(
        default=None,
        examples=[_EXAMPLE_EXPIRY],
        description="Required (422 without it) while AUTHGATE_API_KEY_REQUIRE_EXPIRY is on, "
        "the default; at most AUTHGATE_API_KEY_MAX_LIFETIME_DAYS ahead.",
    )
    scopes: (
        Annotated[
            list[Scope], Field(max_length=32, json_schema_extra={"minItems": 1})  # service checks
        ]
        | None
    ) = Field(
        default=None,
        description="read, write, admin (and the configured extra scopes); default read + write.",
    )
    rateLimit: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description='Requests allowed, e.g. "100/minute" or "10/second;1000/hour" '
        "(burst and sustained); each window at most a day, at most 1,000,000,000 requests "
        "a window. Omitted on PUT: unchanged; null: no limit.",
        examples=["100/minute"],
    )

    def spec(self) -> KeySpec:
        rate_limit = self.rateLimit
        if rate_limit is None and "rateLimit" in self.model_fields_set:
            rate_limit = ""  # an explicit null removes the limit
        return KeySpec(
            name=self.name,
            allowed_networks=self.allowedIp,
            expires_at=self.expiresAt,
            scopes=frozenset(self.scopes) if self.scopes is not None else None,
            rate_limit=rate_limit,
        )


# The names of ``UsageQuery``'s filters in ``GET /usage``'s query string.
_USAGE_FILTERS = ("apiKeyId", "from", "to", "status", "outcome")

# UTMStack's ``top`` (its usage search's Integer): at most this many records in all.
UsageTop = Annotated[
    int | None,
    Query(
        ge=1,
        le=2**31 - 1,
        description="At most this many records in all, as UTMStack's usage search: "
        "`X-Total-Count` is at most `top` and the pages end at the `top`th record.",
    ),
]


class UsageQuery(LenientBody):
    """Filters for ``POST /api/api-keys/usage`` (all optional). UTMStack's verb, read as
    Spring reads it: unknown fields are ignored."""

    apiKeyId: KeyFilter | None = None
    since: Instant | None = Field(default=None, alias="from")
    until: Instant | None = Field(default=None, alias="to")
    status: Annotated[int, Field(ge=100, le=599)] | None = None
    outcome: Literal["success", "failure"] | None = None

    def filter(self) -> UsageFilter:
        return UsageFilter(
            key_ref=self.apiKeyId,
            since=self.since,
            until=self.until,
            status=self.status,
            succeeded=None if self.outcome is None else self.outcome == "success",
        )

    def query(self) -> dict[str, str]:
        """The filters as ``GET /usage`` takes them in its query string."""
        values: dict[str, object] = {
            "apiKeyId": self.apiKeyId,
            "from": self.since and self.since.isoformat().replace("+00:00", "Z"),
            "to": self.until and self.until.isoformat().replace("+00:00", "Z"),
            "status": self.status,
            "outcome": self.outcome,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


class KeyReviewTotalsDTO(BaseModel):
    """Every live key each review section matched."""

    unused: int
    unrestricted: int
    expiringSoon: int
    broadScopes: int
    legacy: int
    beyondExpiryPolicy: int


class KeyReviewDTO(BaseModel):
    """Live keys worth a look, by reason (a key may appear under several)."""

    unused: list[ApiKeyDTO] = Field(description="Not used for `unusedDays` (or never).")
    unrestricted: list[ApiKeyDTO] = Field(
        description="No allowed-IP restriction, or one admitting every address (0.0.0.0/0, ::/0)."
    )
    expiringSoon: list[ApiKeyDTO] = Field(description="Expiring within `expiringDays`.")
    broadScopes: list[ApiKeyDTO] = Field(description="With the write or admin scope.")
    legacy: list[ApiKeyDTO] = Field(
        default_factory=list,
        description="Imported from UTMStack and not rotated. Rotate: the plaintext was "
        "stored by UTMStack.",
    )
    beyondExpiryPolicy: list[ApiKeyDTO] = Field(
        default_factory=list,
        description="Without an expiry, or expiring later than the maximum lifetime "
        "allows (an import keeps UTMStack's expiry).",
    )
    totals: KeyReviewTotalsDTO = Field(
        description="How many live keys each section matched: a section lists the first "
        "`limit` (oldest first)."
    )


_ERRORS = documented(401, 403, 404, 409, 413, 422)


@review_router.get(
    "/review",
    summary="Review all live keys: unused, unrestricted, expiring, broad (admins)",
    response_model=KeyReviewDTO,
    responses=documented(401, 403, 422),
)
@requires_permission(API_KEYS_READ)
async def review_api_keys(
    request: Request,
    unusedDays: Annotated[int, Query(ge=1, le=3650)] = 30,
    expiringDays: Annotated[int, Query(ge=0, le=3650)] = 14,
    limit: Annotated[
        int, Query(ge=1, le=REVIEW_LIMIT_MAX, description="Keys listed per section at most.")
    ] = REVIEW_LIMIT,
) -> KeyReviewDTO:
    review = await services_of(request).api_keys.review(
        unused_days=unusedDays, expiring_days=expiringDays, limit=limit
    )
    counts = review.counts
    return KeyReviewDTO(
        unused=[ApiKeyDTO.of(k) for k in review.unused],
        unrestricted=[ApiKeyDTO.of(k) for k in review.unrestricted],
        expiringSoon=[ApiKeyDTO.of(k) for k in review.expiring],
        broadScopes=[ApiKeyDTO.of(k) for k in review.broad_scopes],
        legacy=[ApiKeyDTO.of(k) for k in review.legacy],
        beyondExpiryPolicy=[ApiKeyDTO.of(k) for k in review.beyond_expiry_policy],
        totals=KeyReviewTotalsDTO(
            unused=counts["unused"],
            unrestricted=counts["unrestricted"],
            expiringSoon=counts["expiring"],
            broadScopes=counts["broad_scopes"],
            legacy=counts["legacy"],
            beyondExpiryPolicy=counts["beyond_expiry_policy"],
        ),
    )


@router.post(
    "",
    summary="Create an API key (the key is in the response, once)",
    status_code=201,
    response_model=CreatedApiKeyDTO,
    responses=documented(401, 403, 404, 409, 413, 422),
)
@sets_credentials("creates an API key")
async def create_api_key(
    body: ApiKeyBody, request: Request, response: Response
) -> CreatedApiKeyDTO:
    caller = principal_of(request)
    created = await services_of(request).api_keys.create(caller.user_id, body.spec(), caller=caller)
    response.headers["Location"] = f"/api/api-keys/{created.view.public_id}"
    response.headers["Cache-Control"] = "no-store"
    return CreatedApiKeyDTO(**ApiKeyDTO.of(created.view).model_dump(), key=created.plaintext)


@router.get(
    "",
    summary="List API keys (yours; with api_keys.read: everyone's with all=true)",
    response_model=list[ApiKeyDTO],
    responses=documented(401, 403, 422),
)
async def list_api_keys(
    request: Request,
    response: Response,
    paging: PageRequestDep,
    everyone: Annotated[
        bool, Query(alias="all", description="With api_keys.read: every user's keys.")
    ] = False,
    userId: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="With api_keys.read: one owner.")
    ] = None,
    includeRevoked: Annotated[bool, Query(description="Also list revoked keys.")] = False,
) -> list[ApiKeyDTO]:
    page = await services_of(request).api_keys.list_keys(
        principal_of(request),
        paging,
        owner_id=userId,
        everyone=everyone or userId is not None,
        include_revoked=includeRevoked,
    )
    return paged(request, response, page, ApiKeyDTO.of)


@router.post(
    "/usage",
    summary="Usage records of your keys (admins: all keys)",
    response_model=list[UsageRecordDTO],
    responses=documented(401, 403, 413, 422),
)
async def usage_records(
    request: Request,
    response: Response,
    paging: PageRequestDep,
    filters: Annotated[UsageQuery | None, Body()] = None,
    top: UsageTop = None,
) -> list[UsageRecordDTO]:
    filters = filters or UsageQuery()
    # The Link header's pages carry the body's filters as GET's query parameters: a
    # client following a link with GET (or POSTing the same body to it) gets the next
    # page of the same search, never the unfiltered records.
    links = request.url.remove_query_params(_USAGE_FILTERS).include_query_params(**filters.query())
    return await _usage_page(request, response, paging, filters.filter(), top, links=links)


@router.get(
    "/usage",
    summary="Usage records, filtered by key, time range and status",
    response_model=list[UsageRecordDTO],
    responses=documented(401, 403, 422),
)
async def usage_records_filtered(
    request: Request,
    response: Response,
    paging: PageRequestDep,
    apiKeyId: Annotated[KeyFilter | None, Query()] = None,
    since: Annotated[Instant | None, Query(alias="from")] = None,
    until: Annotated[Instant | None, Query(alias="to")] = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    outcome: Annotated[Literal["success", "failure"] | None, Query()] = None,
    top: UsageTop = None,
) -> list[UsageRecordDTO]:
    where = UsageQuery(
        apiKeyId=apiKeyId, **{"from": since, "to": until}, status=status, outcome=outcome
    ).filter()
    return await _usage_page(request, response, paging, where, top)


@router.get(
    KEY_PATH,
    summary="One API key",
    response_model=ApiKeyDTO,
    responses=documented(401, 403, 404, 422),
)
async def get_api_key(key_id: KeyIdPath, request: Request) -> ApiKeyDTO:
    return ApiKeyDTO.of(
        await services_of(request).api_keys.get(principal_of(request), key_ref(key_id))
    )


@router.put(
    KEY_PATH,
    summary="Replace name, allowed IPs, expiry (and scopes)",
    response_model=ApiKeyDTO,
    responses=_ERRORS,
)
@sets_credentials("changes an API key's allowed addresses, expiry or scopes")
async def replace_api_key(key_id: KeyIdPath, body: ApiKeyBody, request: Request) -> ApiKeyDTO:
    view = await services_of(request).api_keys.replace(
        principal_of(request), key_ref(key_id), body.spec()
    )
    return ApiKeyDTO.of(view)


@router.post(
    KEY_PATH + "/generate",
    summary="Regenerate (rotate) the key; returns the new key as text, once",
    # Plain Response, so FastAPI documents the JSON error bodies as JSON, not text/plain.
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The key"},
        **_ERRORS,
    },
)
@sets_credentials("regenerates an API key")
async def regenerate_api_key(
    key_id: KeyIdPath,
    request: Request,
    graceSeconds: Annotated[
        int,
        Query(
            ge=0,
            le=int(MAX_GRACE.total_seconds()),
            description="How long the previous key keeps working (0 to 7 days).",
        ),
    ] = 0,
) -> PlainTextResponse:
    plaintext = await services_of(request).api_keys.regenerate(
        principal_of(request), key_ref(key_id), grace=timedelta(seconds=graceSeconds)
    )
    return PlainTextResponse(plaintext, headers={"Cache-Control": "no-store"})


@router.post(
    KEY_PATH + "/resume",
    summary="Re-enable a key suspended when its owner was deactivated (owner or admin)",
    response_model=ApiKeyDTO,
    responses=documented(401, 403, 404, 409, 422),
)
@sets_credentials("re-enables a suspended API key")
async def resume_api_key(key_id: KeyIdPath, request: Request) -> ApiKeyDTO:
    view = await services_of(request).api_keys.resume(principal_of(request), key_ref(key_id))
    return ApiKeyDTO.of(view)


@router.delete(
    KEY_PATH,
    summary="Revoke the key (effective at once, everywhere)",
    status_code=204,
    response_class=Response,
    responses=documented(401, 403, 404, 422),
)
async def revoke_api_key(key_id: KeyIdPath, request: Request) -> Response:
    await services_of(request).api_keys.revoke(principal_of(request), key_ref(key_id))
    return Response(status_code=204)


async def _usage_page(
    request: Request,
    response: Response,
    paging: PageRequestDep,
    where: UsageFilter,
    top: int | None,
    *,
    links: URL | None = None,
) -> list[UsageRecordDTO]:
    page = await services_of(request).api_keys.usage(principal_of(request), paging, where)
    if top is not None:
        # The first ``top`` records are all there is: the count, the links and the pages
        # end there.
        page = Page(
            items=page.items[: max(top - paging.offset, 0)],
            total=min(page.total, top),
            request=paging,
        )
    return paged(request, response, page, UsageRecordDTO.of, url=links)
