"""Public liveness, health and version endpoints (Spring Boot actuator paths)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from authgate import __version__
from authgate.api.access import services_of

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
