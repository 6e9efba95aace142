"""Public liveness, health and version endpoints (Spring Boot actuator paths)."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from authgate import __version__
from authgate.api.access import authenticate_request, header_value, services_of
from authgate.api.errors import ErrorBody
from authgate.exceptions import PermissionDenied
from authgate.security.credentials import bearer_credential
from authgate.services.metrics import CONTENT_TYPE

router = APIRouter(tags=["management"])


class ComponentHealth(BaseModel):
    status: str


class Health(BaseModel):
    status: str
    components: dict[str, ComponentHealth]


@router.get("/api/ping", summary="Liveness: the process answers", response_model=str)
async def ping() -> str:
    return "pong"


@router.get(
    "/management/health",
    summary="Health, including the database",
    responses={
        200: {"model": Health, "description": "UP"},
        503: {"model": Health, "description": "DOWN: the database does not answer"},
    },
)
async def health(request: Request) -> JSONResponse:
    try:
        await services_of(request).db.ping()
    except Exception:  # noqa: BLE001 - any failure means the database is unusable
        body: dict[str, Any] = {"status": "DOWN", "components": {"db": {"status": "DOWN"}}}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "UP", "components": {"db": {"status": "UP"}}})


@router.get("/management/info", summary="Name and version")
async def info() -> dict[str, dict[str, str]]:
    return {"app": {"name": "authgate", "version": __version__}}


@router.get(
    "/management/prometheus",
    summary="Prometheus metrics (metrics token or an admin credential)",
    response_class=PlainTextResponse,
    openapi_extra={"security": [{"bearerAuth": []}, {"ApiKeyAuth": []}]},
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"model": ErrorBody, "description": "No or wrong credentials"},
        403: {"model": ErrorBody, "description": "Not an administrator"},
    },
)
async def prometheus(request: Request) -> PlainTextResponse:
    services = services_of(request)
    token = services.settings.metrics_token
    presented = bearer_credential(header_value(request.scope, b"authorization"))
    if not (token and presented and hmac.compare_digest(presented, token.get_secret_value())):
        principal = await authenticate_request(request, services)
        if not principal.is_admin:
            raise PermissionDenied(reason="role_admin_required")
    return PlainTextResponse(services.metrics.exposition(), media_type=CONTENT_TYPE)
