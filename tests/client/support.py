"""Helpers shared by the client tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2

from authgate.client import AsyncClient, ClientConfig, Credentials
from tests.conftest import Harness

USER_PASSWORD = "user-password-for-client-tests"


def unique(prefix: str) -> str:
    """A name no other test (sharing the session's server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def asgi_client(harness: Harness, credentials: Credentials, **options: Any) -> AsyncClient:
    """The async SDK talking to the in-process app of ``harness``."""
    transport = httpx2.ASGITransport(app=harness.app, raise_app_exceptions=False)
    return AsyncClient(
        ClientConfig("http://testserver", credentials), transport=transport, **options
    )
