"""examples/guarded_service works against a real authgate."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from authgate.guard import Guard, GuardConfig, GuardConfigError
from tests.conftest import Harness, bearer
from tests.guard.conftest import (
    AUTHGATE_URL,
    CALLER_NETWORK,
    AuthgateTransport,
    service_client,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "guarded_service" / "app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("guarded_service_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_example_protects_its_routes(
    harness: Harness, authgate: AuthgateTransport, user_token: str
) -> None:
    example = load_example()
    guard = Guard(
        GuardConfig(authgate_url=AUTHGATE_URL, transport=authgate),
        clock=lambda: harness.clock().timestamp(),
        timer=lambda: harness.clock().timestamp(),
    )
    app = example.create_app(guard)
    reader = await harness.create_key(user_token, scopes=["read"], allowedIp=CALLER_NETWORK)
    async with app.router.lifespan_context(app), service_client(app) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/orders")).status_code == 401
        orders = await client.get("/orders", headers=bearer(user_token))
        assert orders.json() == {"orders": [], "for": "alice", "via": "jwt"}
        key = {"Utm-Api-Key": reader["key"]}
        assert (await client.post("/orders", headers=key)).status_code == 403
        assert (await client.post("/orders", headers=bearer(user_token))).status_code == 201
        assert (await client.get("/admin/stats", headers=bearer(user_token))).status_code == 403
        assert (await client.get("/reports/status")).status_code == 200
        assert (await client.get("/reports/daily")).status_code == 401
        daily = await client.get("/reports/daily", headers=key)
        assert daily.json() == {"report": "daily", "for": "alice"}
        assert (await client.get("/reports/audit/summary", headers=key)).status_code == 403
        # The middleware's scopes bind keys only; the route's role binds a user's token.
        summary = await client.get("/reports/audit/summary", headers=bearer(user_token))
        assert summary.status_code == 403
        assert summary.json()["code"] == "role_required"


def test_the_example_is_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """app_from_env needs AUTHGATE_URL and builds the app from it."""
    example = load_example()
    with pytest.raises(GuardConfigError, match="AUTHGATE_URL"):
        example.app_from_env()
    monkeypatch.setenv("AUTHGATE_URL", "http://127.0.0.1:8080")
    app = example.app_from_env()
    paths = {getattr(route, "path", None) for route in app.routes}
    assert {"/health", "/orders", "/admin/stats", "/reports"} <= paths
