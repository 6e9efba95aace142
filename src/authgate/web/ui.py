"""Mounting the Settings UI on the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from authgate.web import account_pages, admin_pages, key_pages, reset_pages

STATIC_DIR = Path(__file__).with_name("static")


def install_settings_ui(app: FastAPI) -> None:
    app.mount("/settings/static", StaticFiles(directory=STATIC_DIR), name="settings-static")
    for router in (
        account_pages.public_router,
        reset_pages.router,
        account_pages.router,
        key_pages.router,
        admin_pages.router,
    ):
        app.router.routes.extend(router.routes)
