"""A small service that accepts authgate's credentials (JWTs and API keys).

Run it next to authgate::

    AUTHGATE_URL=http://127.0.0.1:8080 uvicorn --factory app:app_from_env --port 9000

``/orders`` is protected route by route with ``guard.require`` dependencies; the
``/reports`` sub-application is protected as a whole by ``GuardMiddleware``.

(No ``from __future__ import annotations``: FastAPI resolves the handlers'
``Annotated`` dependencies, which are local names, at run time.)
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from authgate.guard import Guard, GuardConfig, GuardMiddleware, GuardPrincipal, principal_of


def create_app(guard: Guard) -> FastAPI:
    """The service, protected by ``guard`` (which it closes on shutdown)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with guard:  # closes the guard's connections to authgate
            yield

    app = FastAPI(title="Guarded service", lifespan=lifespan)
    guard.install(app)  # refusals as authgate-shaped JSON errors

    reader = Depends(guard.require(scopes=["read"]))
    writer = Depends(guard.require(scopes=["write"]))
    admin = Depends(guard.require(roles=["ROLE_ADMIN"]))

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Public: no dependency, no middleware."""
        return {"status": "ok"}

    @app.get("/orders")
    async def list_orders(caller: Annotated[GuardPrincipal, reader]) -> dict[str, object]:
        return {"orders": [], "for": caller.login, "via": caller.method}

    @app.post("/orders", status_code=201)
    async def create_order(caller: Annotated[GuardPrincipal, writer]) -> dict[str, object]:
        return {"created": True, "by": caller.login}

    @app.get("/admin/stats")
    async def stats(caller: Annotated[GuardPrincipal, admin]) -> dict[str, object]:
        return {"orders": 0, "admin": caller.login}

    # Everything under /reports needs a credential (except /reports/status); keys need
    # "read" there, and "admin" under /reports/audit/. The middleware's scopes bind keys
    # only (a user's token carries the user's rights): the audit report also requires
    # ROLE_ADMIN, which holds for tokens and keys alike.
    reports = FastAPI(title="Reports")
    guard.install(reports)  # a mounted app has exception handlers of its own

    @reports.get("/status")
    async def report_status() -> dict[str, str]:
        return {"status": "ok"}

    @reports.get("/daily")
    async def daily(request: Request) -> dict[str, object]:
        caller = principal_of(request)  # also request.state.principal
        return {"report": "daily", "for": caller.login}

    @reports.get("/audit/summary")
    async def audit_summary(caller: Annotated[GuardPrincipal, admin]) -> dict[str, object]:
        return {"report": "audit", "for": caller.login}

    reports.add_middleware(
        GuardMiddleware,
        guard=guard,
        # Inside a mount a request has two readings, the full path and the path within
        # the mount; it is exempt only when both are listed (main README, guard section).
        exempt=["/reports/status", "/status"],
        scopes={"/reports/": ["read"], "/reports/audit/": ["read", "admin"]},
    )
    app.mount("/reports", reports)
    return app


def app_from_env() -> FastAPI:
    """The service configured by ``AUTHGATE_URL`` (and optional ``AUTHGATE_JWT_ISSUER``,
    ``AUTHGATE_JWT_AUDIENCE``, ``AUTHGATE_TIMEOUT``, ``AUTHGATE_LOCAL_JWT_MAX_AGE``)."""
    return create_app(Guard(GuardConfig.from_env(os.environ)))
