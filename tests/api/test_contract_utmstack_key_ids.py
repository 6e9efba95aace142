"""Contract tests for issue 13, section 6: an API key's id is a UUID, as in UTMStack v11
(``ApiKeyResponseDTO.java``: ``private UUID id``; the frontend's ``api-key.model.ts``:
``id: string``; ``api_keys.id UUID``). Numeric ids in paths still work for one release.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from authgate.storage.models import ApiKey
from tests.api.test_api_keys import KEYS, expiry, key_header
from tests.conftest import Harness, bearer


def is_uuid(value: object) -> bool:
    """A string holding a UUID in its canonical (lower-case, hyphenated) form."""
    return isinstance(value, str) and str(uuid.UUID(value)) == value


async def key_pk(harness: Harness, public_id: str) -> int:
    async with harness.services.db.session() as session:
        found = await session.scalar(select(ApiKey.id).where(ApiKey.public_id == public_id))
    assert found is not None
    return found


async def test_key_dtos_carry_a_uuid_id(harness: Harness, user_token: str) -> None:
    """ApiKeyResponseDTO.java / api-key.model.ts: ``id`` is a UUID string in the created
    DTO, the list, one key, an edit, and the ``Location`` of the new key."""
    response = await harness.client.post(
        KEYS,
        json={"name": "ci", "allowedIp": [], "expiresAt": expiry(harness.clock)},
        headers=bearer(user_token),
    )
    assert response.status_code == 201
    key_id = response.json()["id"]
    assert is_uuid(key_id)
    assert response.headers["Location"] == f"{KEYS}/{key_id}"
    listed = (await harness.client.get(KEYS, headers=bearer(user_token))).json()
    assert [k["id"] for k in listed] == [key_id]
    one = await harness.client.get(f"{KEYS}/{key_id}", headers=bearer(user_token))
    assert one.json()["id"] == key_id
    edited = await harness.client.put(
        f"{KEYS}/{key_id}",
        json={**one.json(), "name": "renamed"},  # UTMStack's UI sends the DTO back
        headers=bearer(user_token),
    )
    assert (edited.status_code, edited.json()["id"]) == (200, key_id)


async def test_every_key_path_takes_the_uuid(harness: Harness, user_token: str) -> None:
    """api-key.service.ts builds ``/api/api-keys/{id}`` (get, update, generate, delete)
    from the DTO's UUID; an upper-case UUID names the same key."""
    created = await harness.create_key(user_token)
    url = f"{KEYS}/{created['id']}"
    upper = await harness.client.get(f"{KEYS}/{created['id'].upper()}", headers=bearer(user_token))
    assert upper.json()["id"] == created["id"]
    generated = await harness.client.post(f"{url}/generate", headers=bearer(user_token))
    assert generated.status_code == 200
    used = await harness.client.get("/api/account", headers=key_header(generated.text))
    assert used.status_code == 200
    assert (await harness.client.delete(url, headers=bearer(user_token))).status_code == 204
    refused = await harness.client.get("/api/account", headers=key_header(generated.text))
    assert refused.status_code == 401


async def test_numeric_ids_in_paths_still_work_for_one_release(
    harness: Harness, user_token: str
) -> None:
    """Deprecated: a path with the key's former numeric id reaches the same key, and
    answers with its UUID."""
    created = await harness.create_key(user_token)
    number = await key_pk(harness, created["id"])
    one = await harness.client.get(f"{KEYS}/{number}", headers=bearer(user_token))
    assert (one.status_code, one.json()["id"]) == (200, created["id"])
    assert (
        await harness.client.delete(f"{KEYS}/{number}", headers=bearer(user_token))
    ).status_code == 204
    revoked = await harness.client.get(f"{KEYS}/{created['id']}", headers=bearer(user_token))
    assert revoked.json()["status"] == "revoked"


async def test_a_uuid_and_a_number_never_name_each_other(harness: Harness, user_token: str) -> None:
    """A number made of a UUID's digits, or a UUID without its hyphens, names no key;
    malformed ids are a JSON 404, never a 500."""
    created = await harness.create_key(user_token)
    hex_only = created["id"].replace("-", "")
    for key_id in (hex_only, "1" * 32, "9" * 19, "9" * 40, "{" + created["id"] + "}", "%00"):
        response = await harness.client.get(f"{KEYS}/{key_id}", headers=bearer(user_token))
        assert response.status_code == 404, key_id
        assert response.headers["content-type"].startswith("application/json")


async def test_usage_and_audit_records_name_the_key_by_uuid(
    harness: Harness, admin_token: str
) -> None:
    """The key's records carry its UUID as ``apiKeyId`` and are filtered by it."""
    created = await harness.create_key(admin_token)
    assert (
        await harness.client.get("/api/account", headers=key_header(created["key"]))
    ).status_code == 200
    await harness.services.usage.flush()
    await harness.services.audit.flush()
    usage = await harness.client.get(
        f"{KEYS}/usage", params={"apiKeyId": created["id"]}, headers=bearer(admin_token)
    )
    assert {record["apiKeyId"] for record in usage.json()} == {created["id"]}
    audit = await harness.client.get(
        "/api/audit-events", params={"apiKeyId": created["id"]}, headers=bearer(admin_token)
    )
    assert audit.json()
    assert {event["apiKeyId"] for event in audit.json()} == {created["id"]}
    bad = await harness.client.get(
        "/api/audit-events", params={"apiKeyId": "not-a-key"}, headers=bearer(admin_token)
    )
    assert bad.status_code == 400
