"""``/api/service-credentials``: administrators manage the credentials other services
present in ``X-Internal-Key`` (issue 17): shown once, hashed at rest, allowed named
internal endpoints, rotated, revoked, every change audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import ServiceCredential
from authgate.storage.paging import PageRequest
from tests.conftest import Harness, bearer

BASE = "/api/service-credentials"
BODY = {"name": "utmstack-log-input", "endpoints": ["api-keys.authenticate"]}


async def create(harness: Harness, token: str, **fields: Any) -> dict[str, Any]:
    response = await harness.client.post(BASE, json={**BODY, **fields}, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def events(harness: Harness, *types: str) -> list[Any]:
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=types), PageRequest(size=100)
    )
    return list(page.items)


async def test_create_shows_the_credential_once_and_stores_its_hash(
    harness: Harness, admin_token: str
) -> None:
    created = await create(harness, admin_token, id="chosen", status="revoked")
    credential = created["credential"]
    assert credential.startswith(f"ags_{created['id']}_")
    assert len(credential) == 60
    assert created["id"] != "chosen"  # read-only fields are not written
    assert created["status"] == "active"
    assert created["endpoints"] == ["api-keys.authenticate"]
    async with harness.services.db.session() as session:
        row = await session.scalar(select(ServiceCredential))
    assert row is not None
    assert credential not in (row.secret_hash, row.credential_id)
    assert len(row.secret_hash) == 64
    listed = await harness.client.get(BASE, headers=bearer(admin_token))
    assert listed.status_code == 200
    assert credential not in listed.text
    assert [c["name"] for c in listed.json()] == ["utmstack-log-input"]
    one = await harness.client.get(f"{BASE}/{created['id']}", headers=bearer(admin_token))
    assert one.json()["name"] == "utmstack-log-input"
    assert "credential" not in one.json()
    created_events = await events(harness, "SERVICE_CREDENTIAL_CREATED")
    assert [e.actor_login for e in created_events] == ["admin"]
    assert credential not in str(created_events[0].details)


async def test_names_are_unique_and_endpoints_come_from_the_registry(
    harness: Harness, admin_token: str
) -> None:
    await create(harness, admin_token)
    duplicate = await harness.client.post(BASE, json=BODY, headers=bearer(admin_token))
    assert duplicate.status_code == 409
    for endpoints in ([], ["api-keys.delete"], ["*"]):
        response = await harness.client.post(
            BASE, json={"name": "other", "endpoints": endpoints}, headers=bearer(admin_token)
        )
        assert response.status_code == 422, endpoints
        assert response.json()["fieldErrors"][0]["field"].startswith("endpoints")
    blank = await harness.client.post(
        BASE, json={**BODY, "name": "  "}, headers=bearer(admin_token)
    )
    assert blank.status_code == 422


async def test_only_admins_with_a_password_session_manage_them(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    assert (await harness.client.get(BASE)).status_code == 401
    assert (await harness.client.get(BASE, headers=bearer(user_token))).status_code == 403
    refused = await harness.client.post(BASE, json=BODY, headers=bearer(user_token))
    assert refused.status_code == 403
    key = (await harness.create_key(admin_token, scopes=["read", "write", "admin"]))["key"]
    by_key = await harness.client.post(BASE, json=BODY, headers={"Utm-Api-Key": key})
    assert by_key.status_code == 403
    assert by_key.json()["code"] == "session_required"


async def test_update_rotate_and_revoke_are_audited(harness: Harness, admin_token: str) -> None:
    created = await create(harness, admin_token)
    path = f"{BASE}/{created['id']}"
    renamed = await harness.client.put(
        path,
        json={"name": "log-input", "endpoints": ["api-keys.authenticate"]},
        headers=bearer(admin_token),
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "log-input"
    rotated = await harness.client.post(
        f"{path}/rotate", params={"graceSeconds": 3600}, headers=bearer(admin_token)
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["credential"] != created["credential"]
    assert rotated.json()["previousValidUntil"] is not None
    too_long = await harness.client.post(
        f"{path}/rotate", params={"graceSeconds": 8 * 86400}, headers=bearer(admin_token)
    )
    assert too_long.status_code == 422
    revoked = await harness.client.delete(path, headers=bearer(admin_token))
    assert revoked.status_code == 204
    assert (await harness.client.delete(path, headers=bearer(admin_token))).status_code == 204
    assert (await harness.client.get(BASE, headers=bearer(admin_token))).json() == []
    everything = await harness.client.get(
        BASE, params={"includeRevoked": "true"}, headers=bearer(admin_token)
    )
    assert everything.json()[0]["status"] == "revoked"
    again = await harness.client.post(f"{path}/rotate", headers=bearer(admin_token))
    assert again.status_code == 409
    unknown = await harness.client.get(f"{BASE}/nosuchid", headers=bearer(admin_token))
    assert unknown.status_code == 404
    audited = await events(
        harness,
        "SERVICE_CREDENTIAL_UPDATED",
        "SERVICE_CREDENTIAL_ROTATED",
        "SERVICE_CREDENTIAL_REVOKED",
    )
    assert sorted(e.event_type for e in audited) == [
        "SERVICE_CREDENTIAL_REVOKED",
        "SERVICE_CREDENTIAL_ROTATED",
        "SERVICE_CREDENTIAL_UPDATED",
    ]
    # A revoked credential's name may be used again.
    await create(harness, admin_token, name="log-input")
