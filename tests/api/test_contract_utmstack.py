"""Contract tests: the exact wire shapes UTMStack clients rely on
(../shared/reference/utmstack-contract.md), checked field by field."""

from __future__ import annotations

import re

import jwt

from tests.conftest import USER_PASSWORD, Harness

SPRING_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


async def test_reference_flow_login_use_token_and_no_authorization(harness: Harness) -> None:
    """The reference's Method 1, step by step, as a UTMStack script does it."""
    await harness.create_user("analyst")

    login = await harness.client.post(
        "/api/authenticate",
        json={"username": "analyst", "password": USER_PASSWORD, "rememberMe": None},
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert login.status_code == 200
    token = login.json()["id_token"]  # "usually under the key id_token"
    assert login.json()["authenticated"] is True

    me = await harness.client.get("/api/account", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["login"] == "analyst"

    anonymous = await harness.client.get("/api/account")
    assert anonymous.status_code == 401
    body = anonymous.json()
    # {"timestamp":"2025-04-16T16:26:35.664+00:00","status":401,"error":"Unauthorized","path":...}
    assert SPRING_TIMESTAMP.match(body["timestamp"])
    assert body["status"] == 401
    assert body["error"] == "Unauthorized"
    assert body["path"] == "/api/account"


async def test_v11_client_reads_token_and_success(harness: Harness) -> None:
    """v11 clients read {"success": true, "token": ...}."""
    await harness.create_user("analyst")
    body = (
        await harness.client.post(
            "/api/authenticate", json={"username": "analyst", "password": USER_PASSWORD}
        )
    ).json()
    assert body["success"] is True
    assert isinstance(body["token"], str)


async def test_jwt_carries_utmstack_claims(harness: Harness) -> None:
    """sub, auth (comma-joined roles), authenticated and exp, as UTMStack's tokens."""
    await harness.create_user("root", admin=True)
    token = await harness.login("root", USER_PASSWORD)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "root"
    assert claims["auth"] == "ROLE_ADMIN,ROLE_USER"
    assert claims["authenticated"] is True
    assert isinstance(claims["exp"], int)


async def test_login_failure_carries_x_utmstack_error(harness: Harness) -> None:
    """UTMStack scripts read the failure message from X-UtmStack-error."""
    response = await harness.client.post(
        "/api/authenticate", json={"username": "x", "password": "yyyy"}
    )
    assert response.status_code == 401
    assert response.headers["X-UtmStack-error"] == "Bad credentials"


async def test_login_field_limits_match_utmstack_usernames(harness: Harness) -> None:
    """A 50-character login (UTMStack's maximum) logs in."""
    login = "u" * 50
    await harness.create_user(login, email="long@example.com")
    assert await harness.login(login, USER_PASSWORD)


async def test_account_shape_is_jhipster(harness: Harness) -> None:
    """GET /api/account carries JHipster's field names."""
    await harness.create_user("analyst", first_name="Ana", last_name="Lyst")
    token = await harness.login("analyst", USER_PASSWORD)
    body = (
        await harness.client.get("/api/account", headers={"Authorization": f"Bearer {token}"})
    ).json()
    for field in (
        "id",
        "login",
        "firstName",
        "lastName",
        "email",
        "activated",
        "langKey",
        "authorities",
    ):
        assert field in body
    assert (body["firstName"], body["lastName"]) == ("Ana", "Lyst")


async def test_openapi_and_swagger_live_at_utmstack_paths(harness: Harness) -> None:
    """Spec at /v3/api-docs, Swagger UI at /swagger-ui/index.html."""
    spec = await harness.client.get("/v3/api-docs")
    assert spec.status_code == 200
    assert spec.json()["openapi"].startswith("3.")
    ui = await harness.client.get("/swagger-ui/index.html")
    assert ui.status_code == 200
    assert "text/html" in ui.headers["content-type"]
