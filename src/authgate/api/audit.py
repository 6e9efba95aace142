"""The audit trail for administrators: search, export (CSV or JSON), chain verification."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, BaseModel

from authgate.api.access import AdminRoute, services_of
from authgate.api.errors import documented
from authgate.api.pagination import PageRequestDep, pagination_headers
from authgate.services.audit import AuditEntry, EventType
from authgate.services.audit_export import as_csv, as_json_lines
from authgate.storage.audit_repository import AuditFilter

router = APIRouter(prefix="/api/audit-events", tags=["audit"], route_class=AdminRoute)


def _as_utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


Instant = Annotated[datetime, AfterValidator(_as_utc)]


class AuditEventDTO(BaseModel):
    id: int
    timestamp: datetime
    type: str
    outcome: str
    actor: str | None
    userId: int | None
    apiKeyId: int | None
    apiKeyName: str | None
    ipAddress: str | None
    userAgent: str | None
    path: str | None
    reason: str | None
    correlationId: str | None
    details: dict[str, Any] | None
    hash: str

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEventDTO:
        return cls.model_validate(entry.as_record())


class ChainStatus(BaseModel):
    intact: bool
    checked: int
    firstBrokenId: int | None
    problem: str | None


def audit_filter(
    type: Annotated[list[EventType] | None, Query(max_length=30)] = None,
    outcome: Annotated[Literal["success", "failure"] | None, Query()] = None,
    actor: Annotated[str | None, Query(max_length=254, description="Login or key name.")] = None,
    ip: Annotated[str | None, Query(max_length=45)] = None,
    since: Annotated[Instant | None, Query(alias="from")] = None,
    until: Annotated[Instant | None, Query(alias="to")] = None,
    apiKeyId: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> AuditFilter:
    return AuditFilter(
        event_types=tuple(event.value for event in type or ()),
        outcome=outcome,
        actor=actor,
        client_ip=ip,
        since=since,
        until=until,
        api_key_id=apiKeyId,
    )


AuditFilterDep = Annotated[AuditFilter, Depends(audit_filter)]


@router.get(
    "",
    summary="Search the audit trail (newest first by default)",
    response_model=list[AuditEventDTO],
    responses=documented(400, 401, 403),
)
async def search_audit_events(
    request: Request, response: Response, paging: PageRequestDep, where: AuditFilterDep
) -> list[AuditEventDTO]:
    page = await services_of(request).audit.search(where, paging)
    response.headers.update(pagination_headers(request, page))
    return [AuditEventDTO.of(entry) for entry in page.items]


@router.get(
    "/export",
    summary="Every matching record, oldest first, as CSV or JSON Lines (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The records",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        },
        **documented(400, 401, 403),
    },
)
async def export_audit_events(
    request: Request,
    where: AuditFilterDep,
    format: Annotated[Literal["csv", "json"], Query()] = "csv",
) -> StreamingResponse:
    entries = services_of(request).audit.stream(where)
    if format == "json":
        body, media_type, extension = as_json_lines(entries), "application/x-ndjson", "jsonl"
    else:
        body, media_type, extension = as_csv(entries), "text/csv", "csv"
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="audit-events.{extension}"'},
    )


@router.get(
    "/verify",
    summary="Check the hash chain; names the first record that does not fit",
    response_model=ChainStatus,
    responses=documented(401, 403),
)
async def verify_audit_chain(request: Request) -> ChainStatus:
    result = await services_of(request).audit.verify()
    return ChainStatus(
        intact=result.intact,
        checked=result.checked,
        firstBrokenId=result.first_broken_id,
        problem=result.problem,
    )
