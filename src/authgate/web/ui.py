"""Mounting the Settings UI on the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from authgate.api.routing import AuthgateRoute
from authgate.web import (
    account_pages,
    key_pages,
    reset_pages,
    service_credential_pages,
    tfa_pages,
)
from authgate.web.admin import alerts, audit, review, users
from authgate.web.pages import error_page

STATIC_DIR = Path(__file__).with_name("static")


FAVICON = STATIC_DIR / "favicon.svg"

# Matched after every page: a browser that follows a wrong link under /settings/ gets a
# page it can read, not the REST API's JSON.
fallback_router = APIRouter(include_in_schema=False, route_class=AuthgateRoute)


@fallback_router.get("/settings/{rest:path}")
async def unknown_page(request: Request, rest: str) -> HTMLResponse:
    return error_page(request, 404, "Page not found", "There is no such page in the settings.")


@fallback_router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """Browsers ask for it on any page (Swagger UI, JSON answers) whatever the HTML says."""
    return FileResponse(
        FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
    )


def install_settings_ui(app: FastAPI) -> None:
    app.mount("/settings/static", StaticFiles(directory=STATIC_DIR), name="settings-static")
    for router in (
        account_pages.public_router,
        reset_pages.router,
        tfa_pages.public_router,
        account_pages.router,
        tfa_pages.router,
        tfa_pages.admin_router,
        key_pages.router,
        service_credential_pages.router,
        users.router,
        audit.router,
        review.router,
        alerts.router,
        fallback_router,
    ):
        app.router.routes.extend(router.routes)
