"""The audit trail page for administrators: search, export, chain verification."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.datastructures import QueryParams

from authgate.api.access import services_of
from authgate.services.audit.events import EventType
from authgate.services.audit_export import export, export_format_of
from authgate.services.audit_query import (
    EVENT_TYPES,
    MAX_ACTOR_LENGTH,
    MAX_EVENT_TYPES,
    OUTCOMES,
    day_range,
    outcome_of,
)
from authgate.services.audit_verification import ChainVerification
from authgate.storage.audit_repository import AuditFilter
from authgate.web import forms
from authgate.web.pages import AdminPageRoute, error_page, render

router = APIRouter(prefix="/settings", route_class=AdminPageRoute)

AUDIT_PATH: Final = "/settings/audit"
AUDIT_PAGE_SIZES: Final = (25, 50, 100, 200)


@dataclass
class AuditQuery:
    """The filter form read from a query string: the filter, or why it cannot be used."""

    where: AuditFilter
    values: dict[str, Any]
    errors: dict[str, str]

    def pairs(self) -> list[tuple[str, str]]:
        """The filter as query parameters (for paging and export links)."""
        pairs = [("type", t) for t in self.values["types"]]
        pairs += [(name, self.values[name]) for name in ("outcome", "actor", "ip", "from", "to")]
        return [(name, value) for name, value in pairs if value]


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    return await _audit(request, request.query_params)


@router.get("/audit/export")
async def export_audit(request: Request) -> Response:
    query = _audit_query(request.query_params)
    export_format = export_format_of(request.query_params.get("format", "csv"))
    if export_format is None:
        query.errors["format"] = "Choose CSV or JSON Lines."
    if query.errors or export_format is None:
        return error_page(request, 422, "Cannot export", " ".join(query.errors.values()))
    download = export(services_of(request).audit.stream(query.where), export_format)
    return StreamingResponse(
        download.body,
        media_type=download.media_type,
        headers={
            "Content-Disposition": download.content_disposition,
            "Cache-Control": "no-store",
        },
    )


@router.post("/audit/verify")
async def verify_audit(request: Request) -> Response:
    result = await services_of(request).audit.verify()
    return await _audit(request, QueryParams(""), verification=result)


async def _audit(
    request: Request, params: QueryParams, *, verification: ChainVerification | None = None
) -> Response:
    query = _audit_query(params)
    number, size = forms.paging(params, AUDIT_PAGE_SIZES, default=50)
    entries: Sequence[Any] = []
    total = 0
    if not query.errors:
        search = partial(services_of(request).audit.search, query.where)
        page, number = await forms.page_in_range(search, number, size)
        entries, total = page.items, page.total
    filters = query.pairs()
    return render(
        request,
        "audit.html",
        {
            "entries": entries,
            "pager": forms.pager(AUDIT_PATH, params, total, number, size, AUDIT_PAGE_SIZES),
            "filters": query.values,
            "errors": query.errors,
            "filtered": bool(filters),
            "event_types": [event.value for event in EventType],
            "outcomes": OUTCOMES,
            "sizes": AUDIT_PAGE_SIZES,
            "size": size,
            "export_csv": "/settings/audit/export?" + urlencode([("format", "csv"), *filters]),
            "export_json": "/settings/audit/export?" + urlencode([("format", "json"), *filters]),
            "verification": verification,
        },
        status=422 if query.errors else 200,
    )


def _audit_query(params: QueryParams) -> AuditQuery:
    errors: dict[str, str] = {}
    types = [t for t in params.getlist("type") if t][:MAX_EVENT_TYPES]
    if any(t not in EVENT_TYPES for t in types):
        errors["type"] = "Choose an event type from the list."
    outcome = params.get("outcome", "")
    if outcome and outcome_of(outcome) is None:
        errors["outcome"] = "Choose success or failure."
    ip = forms.text(params, "ip", 64)
    client_ip = None
    if ip:
        try:
            client_ip = str(ipaddress.ip_address(ip))
        except ValueError:
            errors["ip"] = "Enter an IPv4 or IPv6 address, such as 203.0.113.7."
    since = _day(params, "from", errors)
    until = _day(params, "to", errors)
    if since is not None and until is not None and until < since:
        errors["to"] = "The end date is before the start date."
    actor = forms.text(params, "actor", MAX_ACTOR_LENGTH)
    values = {
        "types": types,
        "outcome": outcome,
        "actor": actor,
        "ip": ip,
        "from": forms.text(params, "from", 32),
        "to": forms.text(params, "to", 32),
    }
    first, last = day_range(since, until)  # "to" is inclusive
    where = AuditFilter(
        event_types=tuple(types),
        outcome=outcome_of(outcome),
        actor=actor or None,
        client_ip=client_ip,
        since=first,
        until=last,
    )
    return AuditQuery(where=where, values=values, errors=errors)


def _day(params: QueryParams, name: str, errors: dict[str, str]) -> date | None:
    raw = forms.text(params, name, 32)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is None or not 1 < day.year < 9999:  # the day after must exist too
        errors[name] = "Enter a date as YYYY-MM-DD."
        return None
    return day


# -- key review -------------------------------------------------------------------------
