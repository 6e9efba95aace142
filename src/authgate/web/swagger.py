"""Swagger UI at ``/swagger-ui/index.html``, served offline.

The page loads nothing from another host: its JavaScript and CSS come from the
``fastapi-offline`` package installed beside authgate (never committed here).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).with_name("static")
ASSETS_URL = "/swagger-ui/assets"
INDEX_URL = "/swagger-ui/index.html"


def install_swagger_ui(app: FastAPI, *, openapi_url: str) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="swagger-ui-assets")

    @app.get(INDEX_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/swagger-ui", include_in_schema=False)
    @app.get("/swagger-ui/", include_in_schema=False)
    async def swagger_ui_redirect() -> RedirectResponse:
        return RedirectResponse(INDEX_URL)
