"""Public liveness, readiness, health and version endpoints (Spring Boot actuator paths).

Kubernetes (see the README): the liveness probe asks whether the process should be
restarted, so it never depends on the database (an outage would restart every pod and
fix nothing); the readiness probe asks whether traffic should be sent here, so it fails
while the database does not answer or its schema is behind this version.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from authgate import __version__
from authgate.api.access import (
    admit,
    check_method_scope,
    header_value,
    require_permission,
    services_of,
)
from authgate.api.errors import UNAVAILABLE_RETRY_AFTER, documented
from authgate.api.routing import AuthgateRoute
from authgate.security.credentials import bearer_credential, secrets_equal
from authgate.security.permissions import METRICS_READ
from authgate.security.principal import Principal
from authgate.services.cluster import ClusterMembership
from authgate.services.metrics import CONTENT_TYPE
from authgate.services.redis_link import RedisLink
from authgate.storage import migrate

router = APIRouter(tags=["management"], route_class=AuthgateRoute)
HEALTH_TIMEOUT_SECONDS = 1.0


class ComponentHealth(BaseModel):
    status: str
    details: dict[str, Any] | None = None


class Health(BaseModel):
    status: str
    components: dict[str, ComponentHealth]


@router.get("/api/ping", summary="Liveness: the process answers", response_model=str)
async def ping() -> str:
    return "OK"  # UTMStack's answer (its HttpStatus.OK as JSON)


class ProbeStatus(BaseModel):
    status: str


@router.get(
    "/management/health/liveness",
    summary="Liveness probe: the process answers (never depends on the database)",
    response_model=ProbeStatus,
)
async def liveness() -> dict[str, str]:
    return {"status": "UP"}


@router.get(
    "/management/health/readiness",
    summary="Readiness probe: the database answers and its schema is current",
    response_model_exclude_none=True,
    responses={
        200: {"model": Health, "description": "UP: send traffic here"},
        503: {"model": Health, "description": "OUT_OF_SERVICE: database down, migrations pending"},
    },
)
async def readiness(request: Request) -> JSONResponse:
    """One query: reading the schema revision proves the database answers, and says
    whether migrations are pending (a newer schema is fine: migrations only add)."""
    services = services_of(request)
    try:
        revision = await asyncio.wait_for(
            migrate.current_revision(services.db.engine), timeout=HEALTH_TIMEOUT_SECONDS
        )
    except Exception:  # noqa: BLE001 - any failure means the database is unusable
        components = {"db": {"status": "DOWN"}}
    else:
        schema = "UP" if migrate.schema_is_current(revision) else "DOWN"
        components = {"db": {"status": "UP"}, "schema": {"status": schema}}
    ready = all(component["status"] == "UP" for component in components.values())
    return JSONResponse(
        {"status": "UP" if ready else "OUT_OF_SERVICE", "components": components},
        status_code=200 if ready else 503,
    )


@router.get(
    "/management/health",
    summary="Health: the database decides; Redis and the cluster are reported",
    response_model_exclude_none=True,
    responses={
        200: {"model": Health, "description": "UP"},
        503: {"model": Health, "description": "DOWN: the database does not answer"},
    },
)
async def health(request: Request) -> JSONResponse:
    """``status`` follows the database alone: without it nothing works, while a dead
    Redis or a misconfigured peer leaves this node serving (see the README)."""
    services = services_of(request)
    components: dict[str, Any] = {}
    try:
        await services.db.ping()
    except Exception:  # noqa: BLE001 - any failure means the database is unusable
        components["db"] = {"status": "DOWN"}
    else:
        components["db"] = {"status": "UP"}
    if services.redis is not None:
        components["redis"] = await _redis_health(services.redis)
    if services.cluster is not None and components["db"]["status"] == "UP":
        components["cluster"] = await _cluster_health(services.cluster)
    status = components["db"]["status"]
    return JSONResponse(
        {"status": status, "components": components},
        status_code=200 if status == "UP" else 503,
        headers=None if status == "UP" else {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


async def _redis_health(link: RedisLink) -> dict[str, Any]:
    fallback = {"fallback": "database throttling, in-memory rate limits, change polling"}
    if not link.available:  # the breaker is open: do not wait for a dead server
        return {"status": "DOWN", "details": fallback}
    try:
        await asyncio.wait_for(link.client.ping(), timeout=HEALTH_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - any failure: Redis is not usable
        link.failed(error)
        return {"status": "DOWN", "details": fallback}
    link.succeeded()
    return {"status": "UP"}


async def _cluster_health(cluster: ClusterMembership) -> dict[str, Any]:
    nodes = await cluster.nodes()
    problems = sorted({problem for node in nodes for problem in node.problems})
    return {
        "status": "DOWN" if problems else "UP",
        # Counts only: the endpoint is public; `authgate cluster status` tells the problems.
        "details": {"liveNodes": len(nodes), "problems": len(problems)},
    }


@router.get("/management/info", summary="Name and version")
async def info() -> dict[str, dict[str, str]]:
    return {"app": {"name": "authgate", "version": __version__}}


@router.get(
    "/management/prometheus",
    summary="Prometheus metrics (metrics token or a credential with metrics.read)",
    # Not PlainTextResponse: FastAPI would document the JSON errors below as text/plain.
    response_class=Response,
    openapi_extra={"security": [{"bearerAuth": []}, {"ApiKeyAuth": []}]},
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        },
        **documented(401, 403, 429),
    },
)
async def prometheus(request: Request) -> PlainTextResponse:
    services = services_of(request)
    token = services.settings.metrics_token
    presented = bearer_credential(header_value(request.scope, b"authorization"))
    if not (token and presented and secrets_equal(presented, token.get_secret_value())):
        # Through `admit`, like every protected route: refused credentials are audited
        # and bad keys count toward the address block.
        await admit(request, services, "GET", _require_metrics_read)
    return PlainTextResponse(services.metrics.exposition(), media_type=CONTENT_TYPE)


def _require_metrics_read(principal: Principal, method: str) -> None:
    # An API key reads only with read or write, and has permissions only with the
    # admin scope, its owner's.
    check_method_scope(principal, method)
    require_permission(principal, METRICS_READ)
