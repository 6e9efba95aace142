"""Alert rules and fired alerts, for administrators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field, model_validator

from authgate.api.access import AdminConfigurationRoute, requires_permission, services_of
from authgate.api.errors import documented
from authgate.api.pagination import MAX_PAGE_SIZE, SortQuery, paged, sort_orders
from authgate.api.schemas import StrictBody
from authgate.security.permissions import ALERTS_READ, ALERTS_WRITE
from authgate.services.alerts.engine import FiredAlertView
from authgate.services.alerts.kinds import KINDS
from authgate.services.alerts.rules import MAX_WINDOW_SECONDS, NAME_MAX_LENGTH, RuleSpec, RuleView
from authgate.services.severity import SEVERITIES, Severity
from authgate.services.text_rules import REQUIRED_NAME_PATTERN
from authgate.storage.paging import PageRequest

router = APIRouter(tags=["alerts"], route_class=AdminConfigurationRoute)

# Named "id" in the path, as in the DTO (the parameter's name shows in fieldErrors).
RuleIdPath = Annotated[int, Path(alias="id", ge=1, le=2**63 - 1)]


# What a GET answers and a PUT may send back unchanged: read, never written.
_READ_ONLY_FIELDS = frozenset({"id", "createdAt", "updatedAt"})


class AlertRuleBody(StrictBody):
    """Unknown fields are refused (a misspelt ``windowSecond`` must not be ignored), but
    the rule a GET returned can be sent back whole: its read-only fields are dropped."""

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {name: value for name, value in data.items() if name not in _READ_ONLY_FIELDS}
        return data

    name: Annotated[
        str,
        Field(
            max_length=NAME_MAX_LENGTH,
            examples=["Failed logins"],
            json_schema_extra={"pattern": REQUIRED_NAME_PATTERN},  # the service checks
        ),
    ]
    # The service checks kind, severity and the ranges (with UTMStack-style messages);
    # the document states the same rules.
    kind: Annotated[str, Field(max_length=40, json_schema_extra={"enum": list(KINDS)})]
    threshold: Annotated[
        int, Field(ge=-(2**31), le=2**31 - 1, json_schema_extra={"minimum": 1})
    ] = 1
    windowSeconds: Annotated[
        int,
        Field(
            ge=-(2**31),
            le=2**31 - 1,
            json_schema_extra={"minimum": 1, "maximum": MAX_WINDOW_SECONDS},
        ),
    ] = 300
    severity: Annotated[str, Field(max_length=10, json_schema_extra={"enum": list(SEVERITIES)})] = (
        "medium"
    )
    enabled: bool = True

    def spec(self) -> RuleSpec:
        return RuleSpec(
            name=self.name,
            kind=self.kind,
            threshold=self.threshold,
            window_seconds=self.windowSeconds,
            severity=self.severity,
            enabled=self.enabled,
        )


class AlertRuleDTO(BaseModel):
    id: int
    name: str
    kind: str
    threshold: int
    windowSeconds: int
    severity: Severity
    enabled: bool
    createdAt: datetime
    updatedAt: datetime

    @classmethod
    def of(cls, rule: RuleView) -> AlertRuleDTO:
        return cls(
            id=rule.id,
            name=rule.name,
            kind=rule.kind,
            threshold=rule.threshold,
            windowSeconds=rule.window_seconds,
            severity=rule.severity,
            enabled=rule.enabled,
            createdAt=rule.created_at,
            updatedAt=rule.updated_at,
        )


class FiredAlertDTO(BaseModel):
    id: int
    rule: str
    kind: str
    severity: str
    subject: str
    count: int
    firedAt: datetime
    summary: str

    @classmethod
    def of(cls, alert: FiredAlertView) -> FiredAlertDTO:
        return cls(
            id=alert.id,
            rule=alert.rule_name,
            kind=alert.kind,
            severity=alert.severity,
            subject=alert.subject,
            count=alert.count,
            firedAt=alert.fired_at,
            summary=alert.summary,
        )


class SinkTestResult(BaseModel):
    queued: int = Field(description="Sinks the test alert was handed to.")


@router.get(
    "/api/alert-rules",
    summary="All alert rules",
    response_model=list[AlertRuleDTO],
    responses=documented(401, 403),
)
@requires_permission(ALERTS_READ)
async def list_alert_rules(request: Request) -> list[AlertRuleDTO]:
    return [AlertRuleDTO.of(rule) for rule in await services_of(request).alert_rules.list()]


@router.post(
    "/api/alert-rules",
    summary="Create an alert rule",
    status_code=201,
    response_model=AlertRuleDTO,
    responses=documented(401, 403, 409, 413, 422),
)
@requires_permission(ALERTS_WRITE)
async def create_alert_rule(body: AlertRuleBody, request: Request) -> AlertRuleDTO:
    return AlertRuleDTO.of(await services_of(request).alert_rules.create(body.spec()))


@router.get(
    "/api/alert-rules/{id}",
    summary="One alert rule",
    response_model=AlertRuleDTO,
    responses=documented(401, 403, 404, 422),
)
@requires_permission(ALERTS_READ)
async def get_alert_rule(rule_id: RuleIdPath, request: Request) -> AlertRuleDTO:
    return AlertRuleDTO.of(await services_of(request).alert_rules.get(rule_id))


@router.put(
    "/api/alert-rules/{id}",
    summary="Replace an alert rule",
    response_model=AlertRuleDTO,
    responses=documented(401, 403, 404, 409, 413, 422),
)
@requires_permission(ALERTS_WRITE)
async def update_alert_rule(
    rule_id: RuleIdPath, body: AlertRuleBody, request: Request
) -> AlertRuleDTO:
    return AlertRuleDTO.of(await services_of(request).alert_rules.update(rule_id, body.spec()))


@router.delete(
    "/api/alert-rules/{id}",
    summary="Delete an alert rule",
    status_code=204,
    response_class=Response,
    responses=documented(401, 403, 404, 422),
)
@requires_permission(ALERTS_WRITE)
async def delete_alert_rule(rule_id: RuleIdPath, request: Request) -> Response:
    await services_of(request).alert_rules.delete(rule_id)
    return Response(status_code=204)


@router.get(
    "/api/alerts",
    summary="Fired alerts, newest first",
    response_model=list[FiredAlertDTO],
    responses=documented(401, 403, 422),
)
@requires_permission(ALERTS_READ)
async def list_fired_alerts(
    request: Request,
    response: Response,
    page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    sort: SortQuery = None,
) -> list[FiredAlertDTO]:
    paging = PageRequest(page=page, size=size, sort=sort_orders(sort))
    fired = await services_of(request).alerts.recent(paging)
    return paged(request, response, fired, FiredAlertDTO.of)


@router.post(
    "/api/alert-sinks/test",
    summary="Send a test alert to every configured sink",
    response_model=SinkTestResult,
    responses=documented(401, 403),
)
@requires_permission(ALERTS_WRITE)
async def test_alert_sinks(request: Request) -> SinkTestResult:
    return SinkTestResult(queued=services_of(request).alerts.send_test())
