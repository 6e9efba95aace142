"""The audit trail for administrators: search, export (CSV or JSON), chain verification
(optionally against a checkpoint), the published checkpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from authgate.api.access import AdminRoute, requires_permission, services_of
from authgate.api.errors import documented
from authgate.api.key_paths import KeyFilter
from authgate.api.pagination import PageRequestDep, paged
from authgate.api.schemas import Instant
from authgate.security.audit_checkpoints import MAX_CHECKPOINT_LENGTH, Checkpoint
from authgate.security.permissions import AUDIT_READ
from authgate.services.audit.events import AuditEntry, EventType
from authgate.services.audit_checkpoints import PublishedCheckpoint
from authgate.services.audit_export import ExportFormat, export
from authgate.services.audit_query import MAX_ACTOR_LENGTH, MAX_EVENT_TYPES, Outcome
from authgate.services.audit_verification import ChainVerification, CheckpointStatus, Verdict
from authgate.storage.audit_repository import AuditFilter

router = APIRouter(prefix="/api/audit-events", tags=["audit"], route_class=AdminRoute)


class AuditEventDTO(BaseModel):
    id: int
    timestamp: datetime
    type: str
    outcome: str
    actor: str | None
    userId: int | None
    apiKeyId: str | None = Field(description="The key's UUID.")
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


class CheckpointResult(BaseModel):
    """How the chain compares with the checkpoint given (its signature verified)."""

    position: int
    hash: str
    time: datetime
    node: str
    status: CheckpointStatus
    detail: str


class ChainStatus(BaseModel):
    intact: bool
    verdict: Verdict
    checked: int
    firstBrokenId: int | None
    problem: str | None
    keyedFrom: int | None = Field(
        description="The first record hashed with the audit key (records before it are "
        "plain SHA-256, written before the key was introduced)."
    )
    checkpoint: CheckpointResult | None

    @classmethod
    def of(cls, result: ChainVerification) -> ChainStatus:
        compared = result.checkpoint
        return cls(
            intact=result.intact,
            verdict=result.verdict,
            checked=result.checked,
            firstBrokenId=result.first_broken_id,
            problem=result.problem,
            keyedFrom=result.keyed_from,
            checkpoint=None
            if compared is None
            else CheckpointResult(
                position=compared.checkpoint.position,
                hash=compared.checkpoint.hash,
                time=compared.checkpoint.time,
                node=compared.checkpoint.node,
                status=compared.status,
                detail=compared.detail,
            ),
        )


class CheckpointInput(BaseModel):
    """A checkpoint as published (webhook body, log line, listing), or just its JWS."""

    model_config = ConfigDict(extra="ignore")

    checkpoint: str = Field(
        min_length=1,
        max_length=MAX_CHECKPOINT_LENGTH,
        description="The signed checkpoint (compact JWS). Other members are ignored: only "
        "what the signature covers is trusted.",
    )


class CheckpointDTO(BaseModel):
    id: int
    time: datetime
    node: str
    position: int
    hash: str
    reason: str
    checkpoint: str

    @classmethod
    def of(cls, published: PublishedCheckpoint) -> CheckpointDTO:
        return cls(
            id=published.id,
            time=published.time,
            node=published.node,
            position=published.position,
            hash=published.hash,
            reason=published.reason,
            checkpoint=published.checkpoint,
        )


def audit_filter(
    type: Annotated[list[EventType] | None, Query(max_length=MAX_EVENT_TYPES)] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    actor: Annotated[
        str | None, Query(max_length=MAX_ACTOR_LENGTH, description="Login or key name.")
    ] = None,
    ip: Annotated[str | None, Query(max_length=45)] = None,
    since: Annotated[Instant | None, Query(alias="from")] = None,
    until: Annotated[Instant | None, Query(alias="to")] = None,
    apiKeyId: Annotated[KeyFilter | None, Query(description="The key's UUID.")] = None,
) -> AuditFilter:
    return AuditFilter(
        event_types=tuple(event.value for event in type or ()),
        outcome=outcome,
        actor=actor,
        client_ip=ip,
        since=since,
        until=until,
        key_ref=apiKeyId,
    )


AuditFilterDep = Annotated[AuditFilter, Depends(audit_filter)]


@router.get(
    "",
    summary="Search the audit trail (newest first by default)",
    response_model=list[AuditEventDTO],
    responses=documented(400, 401, 403),
)
@requires_permission(AUDIT_READ)
async def search_audit_events(
    request: Request, response: Response, paging: PageRequestDep, where: AuditFilterDep
) -> list[AuditEventDTO]:
    page = await services_of(request).audit.search(where, paging)
    return paged(request, response, page, AuditEventDTO.of)


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
@requires_permission(AUDIT_READ)
async def export_audit_events(
    request: Request,
    where: AuditFilterDep,
    format: Annotated[ExportFormat, Query()] = "csv",
) -> StreamingResponse:
    download = export(services_of(request).audit.stream(where), format)
    return StreamingResponse(
        download.body,
        media_type=download.media_type,
        headers={"Content-Disposition": download.content_disposition},
    )


@router.get(
    "/verify",
    summary="Check the keyed hash chain, optionally against a checkpoint (?checkpoint=JWS)",
    response_model=ChainStatus,
    responses=documented(400, 401, 403),
)
@requires_permission(AUDIT_READ)
async def verify_audit_chain(
    request: Request,
    checkpoint: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CHECKPOINT_LENGTH,
            description="A signed checkpoint (compact JWS) to compare the chain with.",
        ),
    ] = None,
) -> ChainStatus:
    services = services_of(request)
    held: Checkpoint | None = None
    if checkpoint is not None:
        held = services.checkpoints.read(checkpoint, location="query")
    return ChainStatus.of(await services.audit.verify(checkpoint=held))


@router.post(
    "/verify",
    summary="Check the keyed hash chain against a checkpoint (the JSON as published)",
    response_model=ChainStatus,
    responses=documented(400, 401, 403),
)
@requires_permission(AUDIT_READ)
async def verify_audit_chain_against(
    request: Request, body: Annotated[CheckpointInput, Body()]
) -> ChainStatus:
    services = services_of(request)
    held = services.checkpoints.read(body.checkpoint)
    return ChainStatus.of(await services.audit.verify(checkpoint=held))


@router.get(
    "/checkpoints",
    summary="The signed checkpoints of the chain published so far (newest first by default)",
    response_model=list[CheckpointDTO],
    responses=documented(400, 401, 403),
)
@requires_permission(AUDIT_READ)
async def list_audit_checkpoints(
    request: Request, response: Response, paging: PageRequestDep
) -> list[CheckpointDTO]:
    page = await services_of(request).checkpoints.search(paging)
    return paged(request, response, page, CheckpointDTO.of)
