"""Swagger UI at ``/swagger-ui/index.html``, served offline and under a strict
Content-Security-Policy.

The page loads nothing from another host: Swagger UI's JavaScript and CSS come from
the ``fastapi-offline`` package installed beside authgate (never committed here), and
its start-up code is authgate's own static file (``swagger-init.js``), not an inline
script, so the policy allows scripts from this origin only. The start-up options are
data attributes of the page: the document's URL, and whether Swagger UI keeps the
credential entered in "Authorize" in localStorage (off unless
``AUTHGATE_SWAGGER_PERSIST_AUTHORIZATION`` is set: a full API key left in storage is
readable by any script of the origin, and outlives the tab).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).with_name("static")
ASSETS_URL = "/swagger-ui/assets"
INDEX_URL = "/swagger-ui/index.html"
INIT_URL = "/swagger-ui/swagger-init.js"
INIT_SCRIPT = Path(__file__).with_name("static") / "swagger-init.js"

# Swagger UI sets styles from its scripts (allowed: CSSOM, not markup) and draws some
# icons as data: images; it fetches the document and "Try it out" calls from here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}" data-persist-authorization="{persist}">
</div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init}"></script>
</body>
</html>
"""


def install_swagger_ui(app: FastAPI, *, openapi_url: str, persist_authorization: bool) -> None:
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="swagger-ui-assets")
    page = _PAGE.format(
        title=escape(f"{app.title} - Swagger UI"),
        assets=ASSETS_URL,
        openapi_url=escape(openapi_url),
        persist="true" if persist_authorization else "false",
        init=INIT_URL,
    )

    @app.get(INDEX_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    @app.get(INIT_URL, include_in_schema=False)
    async def swagger_init() -> FileResponse:
        return FileResponse(INIT_SCRIPT, media_type="text/javascript")

    @app.get("/swagger-ui", include_in_schema=False)
    @app.get("/swagger-ui/", include_in_schema=False)
    async def swagger_ui_redirect() -> RedirectResponse:
        return RedirectResponse(INDEX_URL)
