"""The application factory: ``create_app(settings)`` wires everything; tests build apps with it."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from authgate import __version__
from authgate.api import (
    account,
    alerts,
    api_keys,
    audit,
    auth,
    forward_auth,
    management,
    recovery,
    service_credentials,
    tfa,
    users,
)
from authgate.api.errors import install_error_handlers
from authgate.api.middleware import RequestBodyLimit, SecurityHeadersAndRequestLogs
from authgate.api.openapi import install_openapi
from authgate.api.routing import AuthgateRoute
from authgate.api.v1 import api_keys as v1_api_keys
from authgate.api.v1 import auth as v1_auth
from authgate.api.v1 import internal as v1_internal
from authgate.api.v1 import recovery as v1_recovery
from authgate.api.v1 import tfa as v1_tfa
from authgate.api.v1 import users as v1_users
from authgate.clock import Clock, utc_now
from authgate.container import Services, build_services
from authgate.runtime import BackgroundWork, ensure_schema
from authgate.settings import Settings
from authgate.web.swagger import install_swagger_ui
from authgate.web.ui import install_settings_ui

log = logging.getLogger(__name__)

OPENAPI_URL = "/v3/api-docs"
GC_YOUNG_THRESHOLD = 10_000

DESCRIPTION = """\
Self-hosted API authentication, compatible with UTMStack's API.

**Bearer token:** `POST /api/authenticate` with `{"username", "password"}` returns
`id_token`; send it as `Authorization: Bearer <token>`.
"""


class AuthgateApp(FastAPI):
    """FastAPI, with forward-auth answered in front of it (``ForwardAuthFastPath``):
    ``/api/auth/verify`` never reaches the middleware stack or the router."""

    fast_path: forward_auth.ForwardAuthFastPath | None = None
    # The same object as ``state.services``: routes read it on every request, and
    # Starlette's ``State`` answers an attribute through a Python ``__getattr__``.
    services: Services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast_path = self.fast_path
        if (
            fast_path is not None
            and scope["type"] == "http"
            and scope["path"] == forward_auth.VERIFY_PATH
        ):
            await fast_path(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    services: Services | None = None,
    freeze_gc_after_start: bool = False,
) -> FastAPI:
    """A ready-to-serve application. Database and background tasks start with its lifespan."""
    services = services or build_services(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        work = BackgroundWork(services)
        try:
            await ensure_schema(services)
            await work.start()
        except BaseException:
            await work.close()  # e.g. a refused configuration: release the database
            raise
        if freeze_gc_after_start:
            # Everything built so far lives as long as the process: keep it out of the
            # cyclic collector's full passes (measured: p99 58 -> 21 ms under key load).
            gc.freeze()
            # A request allocates a few hundred container objects and frees nearly all
            # of them by reference counting; at the default threshold (700) the young
            # generation is collected every few requests for nothing. 10,000 makes
            # those collections ~14x rarer; each stays short (young objects only).
            _, middle, old = gc.get_threshold()
            gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
        try:
            yield
        finally:
            await work.close()

    app = AuthgateApp(
        title="authgate API",
        version=__version__,
        openapi_url=OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # No 307 from /api/users/ to /api/users: Starlette builds that Location from the
        # request's Host header (a cache in front could be poisoned with another host),
        # and a 307 repeats a PUT or DELETE; an unknown path is a 404 as any other.
        redirect_slashes=False,
        # FastAPI's native OpenTelemetry looks up global providers on every request;
        # off unless asked for (authgate's own metrics do not need it).
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    app.state.services = app.services = services
    # Routes added on the app itself (Swagger UI's) answer HEAD as the routers' do.
    app.router.route_class = AuthgateRoute
    install_error_handlers(app)
    # Routes are matched in order, ~1.5 us each: the ones clients call most come first.
    for router in (
        forward_auth.router,
        auth.router,
        management.router,
        auth.public_router,
        auth.session_router,
        recovery.public_router,
        recovery.check_router,
        tfa.pre_verification_router,
        tfa.setup_router,
        tfa.admin_router,
        account.router,
        api_keys.review_router,
        api_keys.router,
        users.router,
        audit.router,
        alerts.router,
        service_credentials.router,
        # Before any /api/v1/api-keys/{id} route: the fixed path must win over a template.
        v1_internal.router,
        v1_auth.public_router,
        v1_auth.router,
        v1_auth.self_router,
        v1_api_keys.router,
        v1_recovery.router,
        v1_tfa.setup_router,
        v1_tfa.admin_router,
        v1_users.router,
    ):
        # The routes themselves, not ``include_router``: FastAPI 0.163 matches an included
        # router through a wrapper that cost ~60 us per request (measured: 181 -> 122 us
        # in-process). Router prefixes, tags and route classes are part of each route.
        app.router.routes.extend(router.routes)
    install_swagger_ui(
        app,
        openapi_url=OPENAPI_URL,
        persist_authorization=settings.swagger_persist_authorization,
    )
    install_settings_ui(app)
    install_openapi(app, description=DESCRIPTION, settings=settings)
    app.add_middleware(RequestBodyLimit, max_bytes=settings.http.max_body_bytes)
    app.add_middleware(SecurityHeadersAndRequestLogs, services=services)
    app.fast_path = forward_auth.ForwardAuthFastPath(services)
    return app


def create_app_from_environment() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (each worker process builds its own app)."""
    return create_app(Settings(), freeze_gc_after_start=True)
