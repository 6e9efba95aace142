"""The guard's permissions: read from the token's ``permissions`` claim (JWT checked
locally) or authgate's ``X-Auth-Permissions`` (keys and remote checks), and required
with ``guard.require_permission``.

No ``from __future__ import annotations``: FastAPI resolves the handlers' annotations."""

from typing import Annotated, Any

from fastapi import Depends, FastAPI

from authgate.guard import Guard, GuardPrincipal
from authgate.services.user_fields import NewUser
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness, bearer
from tests.guard.conftest import CALLER_NETWORK, GuardFactory, service_client


def _service(guard: Guard) -> FastAPI:
    app = FastAPI()
    guard.install(app)
    reader = Annotated[GuardPrincipal, Depends(guard.require_permission("users.read"))]
    writer = Annotated[GuardPrincipal, Depends(guard.require(permissions=["users.write"]))]

    @app.get("/users")
    async def read(caller: reader) -> dict[str, Any]:
        return {"permissions": sorted(caller.permissions)}

    @app.post("/users")
    async def write(caller: writer) -> dict[str, Any]:
        return {"login": caller.login}

    return app


async def _viewer(harness: Harness) -> str:
    await harness.services.users.create_user(
        NewUser(
            login="vera",
            email="vera@example.com",
            password=USER_PASSWORD,
            authorities=frozenset({"ROLE_USER", "ROLE_VIEWER"}),
        )
    )
    return await harness.login("vera", USER_PASSWORD)


async def test_a_viewer_reads_and_cannot_write_locally_and_remotely(
    harness: Harness, make_guard: GuardFactory
) -> None:
    token = await _viewer(harness)
    for local in (True, False):
        app = _service(make_guard(verify_jwt_locally=local))
        async with service_client(app) as client:
            read = await client.get("/users", headers=bearer(token))
            assert read.status_code == 200, (local, read.text)
            assert "users.read" in read.json()["permissions"]
            assert "users.write" not in read.json()["permissions"]
            write = await client.post("/users", headers=bearer(token))
            assert write.status_code == 403, local
            assert write.json()["code"] == "permission_required"


async def test_a_plain_users_token_has_no_permission(
    harness: Harness, make_guard: GuardFactory
) -> None:
    await harness.create_user("ursula", USER_PASSWORD)
    token = await harness.login("ursula", USER_PASSWORD)
    async with service_client(_service(make_guard())) as client:
        assert (await client.get("/users", headers=bearer(token))).status_code == 403


async def test_an_admin_key_has_permissions_only_with_the_admin_scope(
    harness: Harness, make_guard: GuardFactory
) -> None:
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    admin = await harness.login("admin", ADMIN_PASSWORD)
    scoped = await harness.create_key(
        admin, "scoped", scopes=["read", "admin"], allowedIp=CALLER_NETWORK
    )
    plain = await harness.create_key(admin, "plain", scopes=["read"], allowedIp=CALLER_NETWORK)
    async with service_client(_service(make_guard())) as client:
        ok = await client.get("/users", headers={"Utm-Api-Key": scoped["key"]})
        assert ok.status_code == 200, ok.text
        assert "users.write" in ok.json()["permissions"]
        refused = await client.get("/users", headers={"Utm-Api-Key": plain["key"]})
        assert refused.status_code == 403
