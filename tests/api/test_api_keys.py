"""Managed API keys through the HTTP API: lifecycle, validation, authentication with
both headers, IP allow lists, expiry, rotation, revocation, scopes and the usage log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sqlalchemy import text

from authgate.app import create_app
from authgate.settings import Settings
from tests.conftest import (
    USER_PASSWORD,
    FakeClock,
    Harness,
    bearer,
    format_instant,
    test_settings,
)

KEYS = "/api/api-keys"


def expiry(clock: FakeClock, days: int = 30) -> str:
    return (clock() + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def key_header(key: str) -> dict[str, str]:
    return {"Utm-Api-Key": key}


# -- lifecycle --------------------------------------------------------------------------------


async def test_create_returns_the_key_once_and_the_utmstack_dto(
    harness: Harness, user_token: str
) -> None:
    """201 with UTMStack's DTO fields plus the plaintext key; later reads never show it."""
    created = await harness.create_key(user_token, allowedIp=["10.0.0.0/8", "2001:db8::/32"])
    for field in ("id", "name", "allowedIp", "createdAt", "expiresAt", "generatedAt"):
        assert field in created
    assert created["allowedIp"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert created["status"] == "active"
    assert created["scopes"] == ["read", "write"]
    assert created["lastUsedAt"] is None
    key = created["key"]
    assert key.startswith("agk_")
    assert created["prefix"].startswith(key[:17])
    assert key[17:-4] not in created["prefix"]

    again = await harness.client.get(f"{KEYS}/{created['id']}", headers=bearer(user_token))
    assert again.status_code == 200
    assert "key" not in again.json()
    assert key not in again.text
    listed = await harness.client.get(KEYS, headers=bearer(user_token))
    assert key not in listed.text


async def test_database_holds_no_usable_secret(
    harness: Harness, user_token: str, settings: Settings
) -> None:
    """Only a keyed hash is stored: no column of the table contains the key or its secret."""
    created = await harness.create_key(user_token)
    key = created["key"]
    async with harness.services.db.session() as session:
        rows = (await session.execute(text("SELECT * FROM api_keys"))).all()
    stored = " ".join(str(value) for row in rows for value in row)
    assert key not in stored
    assert key[17:60] not in stored  # the secret part


async def test_key_authenticates_like_a_jwt_with_both_headers(
    harness: Harness, user_token: str
) -> None:
    """Bearer <key> and Utm-Api-Key give the same answer as the JWT."""
    key = (await harness.create_key(user_token))["key"]
    with_jwt = await harness.client.get("/api/account", headers=bearer(user_token))
    with_bearer_key = await harness.client.get("/api/account", headers=bearer(key))
    with_utm_header = await harness.client.get("/api/account", headers=key_header(key))
    assert with_jwt.status_code == with_bearer_key.status_code == with_utm_header.status_code == 200
    assert with_jwt.json() == with_bearer_key.json() == with_utm_header.json()


async def test_list_is_paged_and_owner_scoped(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """A user lists only their keys, with X-Total-Count and Link; admins can list all."""
    for index in range(3):
        await harness.create_key(user_token, name=f"key-{index}")
    await harness.create_key(admin_token, name="admin-key")

    page = await harness.client.get(
        KEYS, params={"page": 0, "size": 2, "sort": "name,desc"}, headers=bearer(user_token)
    )
    assert page.status_code == 200
    assert page.headers["X-Total-Count"] == "3"
    assert [key["name"] for key in page.json()] == ["key-2", "key-1"]
    assert 'rel="next"' in page.headers["Link"]

    mine = await harness.client.get(KEYS, params={"all": "true"}, headers=bearer(user_token))
    assert {key["name"] for key in mine.json()} == {"key-0", "key-1", "key-2"}
    everyone = await harness.client.get(KEYS, params={"all": "true"}, headers=bearer(admin_token))
    assert everyone.headers["X-Total-Count"] == "4"


async def test_list_sorts_by_allowed_ip(harness: Harness, user_token: str) -> None:
    """sort=allowedIp,asc|desc (UTMStack's API Keys page sorts its table so) orders by
    the allow list; an empty one (any address) comes first ascending."""
    allow_lists = {
        "any": [],
        "ten": ["10.0.0.0/8"],
        "lan": ["192.168.1.0/24"],
        "v6": ["2001:db8::/32"],
    }
    for name, allowed in allow_lists.items():
        await harness.create_key(user_token, name=name, allowedIp=allowed)

    names: dict[str, list[str]] = {}
    for direction in ("asc", "desc"):
        response = await harness.client.get(
            KEYS, params={"sort": f"allowedIp,{direction}"}, headers=bearer(user_token)
        )
        assert response.status_code == 200, response.text
        names[direction] = [key["name"] for key in response.json()]
    assert names["asc"] == ["any", "ten", "lan", "v6"]
    assert names["desc"] == ["v6", "lan", "ten", "any"]


async def test_list_sorts_by_the_id_the_dto_shows(harness: Harness, user_token: str) -> None:
    """sort=id orders by the public UUID each DTO carries as ``id``, not by the internal
    bigint (creation order): here the later keys have the smaller UUIDs (black-box
    review, item 9)."""
    uuids = ["f" * 8 + "-0000-4000-8000-000000000000", "8" * 8 + "-0000-4000-8000-000000000000"]
    uuids.append("0" * 8 + "-0000-4000-8000-000000000000")
    for name, public_id in zip(("first", "second", "third"), uuids, strict=True):
        created = await harness.create_key(user_token, name=name)
        async with harness.services.db.transaction() as session:
            await session.execute(
                text("UPDATE api_keys SET public_id = :new WHERE public_id = :old"),
                {"new": public_id, "old": created["id"]},
            )

    ids: dict[str, list[str]] = {}
    for direction in ("asc", "desc"):
        response = await harness.client.get(
            KEYS, params={"sort": f"id,{direction}"}, headers=bearer(user_token)
        )
        assert response.status_code == 200, response.text
        ids[direction] = [key["id"] for key in response.json()]
    assert ids["asc"] == sorted(uuids)
    assert ids["desc"] == uuids


async def test_another_users_key_is_not_found(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """An ordinary user gets 404 (not 403) for someone else's key, for every operation."""
    other = await harness.create_key(admin_token, name="admin-only")
    url = f"{KEYS}/{other['id']}"
    body = {"name": "x", "allowedIp": [], "expiresAt": expiry(harness.clock)}
    for method, path, payload in (
        ("GET", url, None),
        ("PUT", url, body),
        ("DELETE", url, None),
        ("POST", f"{url}/generate", None),
    ):
        response = await harness.client.request(
            method, path, json=payload, headers=bearer(user_token)
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["message"] == "API key not found"


async def test_missing_key_id_is_404_never_500(harness: Harness, user_token: str) -> None:
    """Unknown ids answer 404 "API key not found" (0 and a number beyond a bigint
    included); a segment that is neither a UUID nor a number is no key route at all."""
    unknown = ("999999", "0", "9" * 30, "6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f")
    for key_id in unknown:
        for method in ("GET", "DELETE"):
            response = await harness.client.request(
                method, f"{KEYS}/{key_id}", headers=bearer(user_token)
            )
            assert response.status_code == 404, (method, key_id)
            assert response.json()["message"] == "API key not found"
    for key_id in ("nope", "%00", "6f1c3e0a2b4d4c8e9a7f0d5b1e2c3a4f", "-1", "1.5"):
        response = await harness.client.get(f"{KEYS}/{key_id}", headers=bearer(user_token))
        assert response.status_code == 404, key_id
        assert response.json()["status"] == 404


async def test_admin_may_read_and_revoke_but_not_edit_anyones_key(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """Admins read and revoke any key; editing stays with the owner."""
    created = await harness.create_key(user_token)
    url = f"{KEYS}/{created['id']}"
    assert (await harness.client.get(url, headers=bearer(admin_token))).status_code == 200
    edit = await harness.client.put(
        url,
        json={"name": "renamed", "allowedIp": [], "expiresAt": expiry(harness.clock)},
        headers=bearer(admin_token),
    )
    assert edit.status_code == 404
    assert (await harness.client.delete(url, headers=bearer(admin_token))).status_code == 204
    revoked = await harness.client.get(url, headers=bearer(user_token))
    assert revoked.json()["status"] == "revoked"


async def test_update_replaces_name_allow_list_and_expiry(
    harness: Harness, user_token: str
) -> None:
    """PUT takes the create body; the key keeps working under the new rules."""
    created = await harness.create_key(user_token)
    new_expiry = expiry(harness.clock, days=60)
    response = await harness.client.put(
        f"{KEYS}/{created['id']}",
        json={"name": "renamed", "allowedIp": ["127.0.0.0/8"], "expiresAt": new_expiry},
        headers=bearer(user_token),
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["allowedIp"]) == ("renamed", ["127.0.0.0/8"])
    assert body["expiresAt"].startswith(new_expiry[:19])
    assert (
        await harness.client.get("/api/account", headers=key_header(created["key"]))
    ).status_code == 200


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": ""}, "name", "Name is required."),
        ({"name": "   "}, "name", "Name is required."),
        ({"name": "x" * 101}, "name", "at most 100"),
        ({"expiresAt": None}, "expiresAt", "required"),
        ({"expiresAt": "2020-01-01T00:00:00.000Z"}, "expiresAt", "future"),
        ({"expiresAt": "2999-01-01T00:00:00.000Z"}, "expiresAt", "within 365 days"),
        ({"allowedIp": ["300.1.2.3"]}, "allowedIp[0]", "Invalid IP address format"),
        ({"allowedIp": ["10.0.0.0/33"]}, "allowedIp[0]", "Invalid CIDR format"),
        ({"allowedIp": ["1.2.3.4", "1.2.3.4"]}, "allowedIp[1]", "This IP is already added"),
        ({"allowedIp": ["1.2.3.4", "::ffff:1.2.3.4"]}, "allowedIp[1]", "already added"),
        ({"allowedIp": [f"10.0.{i}.0/24" for i in range(101)]}, "allowedIp", "at most 100"),
        ({"scopes": []}, "scopes", "At least one scope"),
        ({"scopes": ["root"]}, "scopes", "Unknown scope root (allowed: admin, read, write)"),
        ({"scopes": ["Root!"]}, "scopes[0]", "String should match pattern"),
        ({"scopes": ["admin"]}, "scopes", "admin scope needs an owner with ROLE_ADMIN"),
    ],
)
async def test_invalid_create_bodies_are_422_with_field_messages(
    harness: Harness, user_token: str, change: dict[str, Any], field: str, message: str
) -> None:
    """Each rule answers 422 with a per-field message (UTMStack's wording where it has one)."""
    body = {"name": "ci", "allowedIp": [], "expiresAt": expiry(harness.clock), **change}
    response = await harness.client.post(KEYS, json=body, headers=bearer(user_token))
    assert response.status_code == 422, response.text
    errors = {error["field"]: error["message"] for error in response.json()["fieldErrors"]}
    assert field in errors, errors
    assert message in errors[field]


async def test_missing_name_uses_utmstack_wording(harness: Harness, user_token: str) -> None:
    """A body without a name: 422 "Name is required."."""
    response = await harness.client.post(
        KEYS, json={"allowedIp": [], "expiresAt": expiry(harness.clock)}, headers=bearer(user_token)
    )
    assert response.status_code == 422
    assert response.json()["fieldErrors"][0] == {
        "objectName": "body",
        "field": "name",
        "message": "Name is required.",
    }


async def test_duplicate_name_is_409_per_owner_and_reusable_after_revocation(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """Names are unique among an owner's live keys: 409 with UTMStack's message."""
    first = await harness.create_key(user_token, name="shared")
    duplicate = await harness.client.post(
        KEYS,
        json={"name": "shared", "allowedIp": [], "expiresAt": expiry(harness.clock)},
        headers=bearer(user_token),
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["message"] == "An API key with this name already exists."
    await harness.create_key(admin_token, name="shared")  # another owner: fine
    await harness.client.delete(f"{KEYS}/{first['id']}", headers=bearer(user_token))
    await harness.create_key(user_token, name="shared")  # the revoked one freed the name


# -- authentication outcomes ------------------------------------------------------------------


async def test_malformed_unknown_and_wrong_secret_keys_get_the_same_answer(
    harness: Harness, user_token: str
) -> None:
    """Bad checksum, unknown id and wrong secret: identical 401 "Invalid API key"."""
    key = (await harness.create_key(user_token))["key"]
    flipped = key[:30] + ("A" if key[30] != "A" else "B") + key[31:]
    unknown_id = "agk_" + "Z" * 12 + key[16:]
    from authgate.security import keys as keyformat

    wrong_secret = keyformat.generate_secret_for(keyformat.key_id_of(key)).plaintext
    answers = []
    for candidate in (flipped, unknown_id, wrong_secret, "agk_short", "not-a-key"):
        response = await harness.client.get("/api/account", headers=key_header(candidate))
        assert response.status_code == 401, candidate
        answers.append((response.json()["code"], response.json()["message"]))
    assert set(answers) == {("invalid_api_key", "Invalid API key")}


async def test_key_from_a_disallowed_ip_is_403_with_utmstack_message(
    harness: Harness, user_token: str
) -> None:
    """A real key from outside its allow list: 403 naming the address (IPv4 and IPv6)."""
    key = (await harness.create_key(user_token, allowedIp=["203.0.113.0/24", "2001:db8::/32"]))[
        "key"
    ]
    for allowed in ("203.0.113.9", "2001:db8::7", "::ffff:203.0.113.9"):
        async with harness.client_from(allowed) as client:
            assert (await client.get("/api/account", headers=bearer(key))).status_code == 200
    for refused in ("198.51.100.1", "2001:db9::1"):
        async with harness.client_from(refused) as client:
            response = await client.get("/api/account", headers=bearer(key))
        assert response.status_code == 403
        assert response.json()["message"] == (
            f"Invalid IP address: {refused}. If you recognize this IP, add it to allowed IP list."
        )
        assert response.json()["code"] == "ip_not_allowed"


async def test_an_address_admitted_before_is_refused_once_the_allow_list_drops_it(
    harness: Harness, user_token: str
) -> None:
    """The verification cache remembers the address object an allow list last admitted
    (one object per client): another address is still matched, and a narrowed allow
    list applies from the next request."""
    created = await harness.create_key(user_token, allowedIp=["203.0.113.0/24"])
    key = created["key"]
    statuses = []
    for address in ("203.0.113.9", "203.0.113.9", "198.51.100.1", "203.0.113.9"):
        async with harness.client_from(address) as client:
            statuses.append((await client.get("/api/account", headers=bearer(key))).status_code)
    assert statuses == [200, 200, 403, 200]
    narrowed = await harness.client.put(
        f"{KEYS}/{created['id']}",
        json={"name": "k", "allowedIp": ["198.51.100.0/24"], "expiresAt": expiry(harness.clock)},
        headers=bearer(user_token),
    )
    assert narrowed.status_code == 200
    async with harness.client_from("203.0.113.9") as client:
        assert (await client.get("/api/account", headers=bearer(key))).status_code == 403
    async with harness.client_from("198.51.100.1") as client:
        assert (await client.get("/api/account", headers=bearer(key))).status_code == 200


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    tmp_path: Any, database_url: str, clock: FakeClock
) -> None:
    """A spoofed X-Forwarded-For from an untrusted peer changes nothing; behind a
    trusted proxy the forwarded client address is the one checked."""
    settings = test_settings(
        tmp_path / "data", database_url=database_url, trusted_proxies=["10.0.0.0/8"]
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        await services.users.ensure_initial_admin("proxy-operator-password")
        user = await services.accounts.authenticate("admin", "proxy-operator-password")
        from authgate.services.api_key_views import KeySpec

        created = await services.api_keys.create(
            user.id,
            KeySpec(
                name="proxied",
                allowed_networks=["198.51.100.7"],
                expires_at=clock() + timedelta(days=1),
            ),
        )

        async def call(peer: str, *forwarded_for: str) -> int:
            transport = httpx2.ASGITransport(app=app, client=(peer, 1))
            headers = [("Utm-Api-Key", created.plaintext)]
            headers += [("X-Forwarded-For", line) for line in forwarded_for]
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/api/account", headers=headers)
                return response.status_code

        assert await call("10.1.1.1", "198.51.100.7") == 200  # trusted proxy: client honoured
        assert await call("10.1.1.1", "198.51.100.7, 10.2.2.2") == 200  # through two proxies
        assert await call("10.1.1.1", "198.51.100.7, 203.0.113.5") == 403  # rightmost untrusted
        assert await call("203.0.113.5", "198.51.100.7") == 403  # untrusted peer: spoof ignored
        # A proxy that adds its own header line: both lines count, the client's first one
        # cannot win ("198.51.100.7" was written by the client, "203.0.113.5" by the proxy).
        assert await call("10.1.1.1", "198.51.100.7", "203.0.113.5") == 403
        assert await call("10.1.1.1", "203.0.113.5", "198.51.100.7") == 200


async def test_expired_key_is_refused_with_its_expiry(harness: Harness, user_token: str) -> None:
    """Past expiresAt: 401 "API key expired at <instant>"."""
    created = await harness.create_key(user_token, days=1)
    harness.clock.advance(days=1, seconds=1)
    response = await harness.client.get("/api/account", headers=key_header(created["key"]))
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "api_key_expired"
    assert body["message"].startswith("API key expired at ")
    assert body["message"].endswith("Z")
    fresh_token = await harness.login("alice", USER_PASSWORD)  # the first one expired too
    status = await harness.client.get(f"{KEYS}/{created['id']}", headers=bearer(fresh_token))
    assert status.json()["status"] == "expired"


async def test_revocation_takes_effect_at_once(harness: Harness, user_token: str) -> None:
    """DELETE → 204, and the very next request with the key is refused."""
    created = await harness.create_key(user_token)
    headers = key_header(created["key"])
    assert (await harness.client.get("/api/account", headers=headers)).status_code == 200
    deleted = await harness.client.delete(f"{KEYS}/{created['id']}", headers=bearer(user_token))
    assert deleted.status_code == 204
    refused = await harness.client.get("/api/account", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["message"] == "Invalid API key"


async def test_regenerate_without_grace_replaces_the_key(harness: Harness, user_token: str) -> None:
    """/generate returns the new key as text/plain; the old one stops at once."""
    created = await harness.create_key(user_token)
    response = await harness.client.post(
        f"{KEYS}/{created['id']}/generate", headers=bearer(user_token)
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    new_key = response.text
    assert new_key != created["key"]
    assert new_key[:17] == created["key"][:17]  # same public id
    assert (
        await harness.client.get("/api/account", headers=key_header(created["key"]))
    ).status_code == 401
    assert (
        await harness.client.get("/api/account", headers=key_header(new_key))
    ).status_code == 200


async def test_regenerate_with_grace_keeps_the_old_key_until_it_ends(
    harness: Harness, user_token: str
) -> None:
    """During the grace period both keys work (status rotating, rotationGraceUntil its
    end); after it only the new one (status active, rotationGraceUntil null)."""
    created = await harness.create_key(user_token)
    grace_ends = format_instant(harness.clock() + timedelta(hours=1))
    response = await harness.client.post(
        f"{KEYS}/{created['id']}/generate",
        params={"graceSeconds": 3600},
        headers=bearer(user_token),
    )
    new_key = response.text
    for key in (created["key"], new_key):
        assert (
            await harness.client.get("/api/account", headers=key_header(key))
        ).status_code == 200
    status = await harness.client.get(f"{KEYS}/{created['id']}", headers=bearer(user_token))
    assert status.json()["status"] == "rotating"
    assert status.json()["rotationGraceUntil"] == grace_ends

    harness.clock.advance(seconds=3601)
    old = await harness.client.get("/api/account", headers=key_header(created["key"]))
    assert old.status_code == 401
    assert (
        await harness.client.get("/api/account", headers=key_header(new_key))
    ).status_code == 200
    status = await harness.client.get(f"{KEYS}/{created['id']}", headers=bearer(user_token))
    assert status.json()["status"] == "active"
    assert status.json()["rotationGraceUntil"] is None
    listed = await harness.client.get(KEYS, headers=bearer(user_token))
    assert [key["rotationGraceUntil"] for key in listed.json()] == [None]


@pytest.mark.parametrize("grace", [-1, 7 * 86400 + 1])
async def test_grace_period_is_bounded(harness: Harness, user_token: str, grace: int) -> None:
    """Grace periods outside 0 s .. 7 days are 422."""
    created = await harness.create_key(user_token)
    response = await harness.client.post(
        f"{KEYS}/{created['id']}/generate",
        params={"graceSeconds": grace},
        headers=bearer(user_token),
    )
    assert response.status_code == 422


async def test_revoked_key_cannot_be_regenerated_or_edited(
    harness: Harness, user_token: str
) -> None:
    """Revocation is final: generate and PUT answer 409."""
    created = await harness.create_key(user_token)
    url = f"{KEYS}/{created['id']}"
    await harness.client.delete(url, headers=bearer(user_token))
    assert (
        await harness.client.post(f"{url}/generate", headers=bearer(user_token))
    ).status_code == 409
    edit = await harness.client.put(
        url,
        json={"name": "again", "allowedIp": [], "expiresAt": expiry(harness.clock)},
        headers=bearer(user_token),
    )
    assert edit.status_code == 409


async def test_deactivated_owner_disables_the_key(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """Deactivating the owner refuses their keys (401) at once."""
    key = (await harness.create_key(user_token))["key"]
    assert (await harness.client.get("/api/account", headers=key_header(key))).status_code == 200
    await harness.client.put(
        "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
    )
    refused = await harness.client.get("/api/account", headers=key_header(key))
    assert refused.status_code == 401
    assert refused.json()["code"] == "api_key_owner_inactive"


# -- scopes -----------------------------------------------------------------------------------


async def test_read_scope_allows_only_safe_methods(harness: Harness, admin_token: str) -> None:
    """A read-only key reads; any unsafe method is 403 insufficient_scope."""
    key = (await harness.create_key(admin_token, scopes=["read", "admin"]))["key"]
    assert (await harness.client.get("/api/users", headers=key_header(key))).status_code == 200
    response = await harness.client.post(
        "/api/users",
        json={"login": "eve", "email": "eve@example.com", "password": USER_PASSWORD},
        headers=key_header(key),
    )
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"


async def test_a_key_reads_only_with_the_read_or_write_scope(
    harness: Harness, admin_token: str
) -> None:
    """Safe methods need ``read`` or ``write``: a key made only for an upstream's scope,
    or with only ``admin``, reads nothing of authgate's own API (the account, the keys,
    their usage, the audit trail)."""
    admin_only = (await harness.create_key(admin_token, name="admin", scopes=["admin"]))["key"]
    write_only = (await harness.create_key(admin_token, name="write", scopes=["write"]))["key"]
    for path in ("/api/account", KEYS, "/api/api-keys/usage", "/api/audit-events"):
        response = await harness.client.get(path, headers=key_header(admin_only))
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "insufficient_scope"
        assert "neither the read nor the write scope" in response.json()["detail"]
        if path != "/api/audit-events":  # an admin endpoint: write is not admin
            assert (await harness.client.get(path, headers=key_header(write_only))).is_success
    v12 = await harness.client.get("/api/v1/api-keys", headers=key_header(admin_only))
    assert v12.status_code == 403
    metrics = await harness.client.get("/management/prometheus", headers=key_header(admin_only))
    assert metrics.status_code == 403
    assert metrics.json()["code"] == "insufficient_scope"


async def test_admin_endpoints_need_the_admin_scope(harness: Harness, admin_token: str) -> None:
    """An admin's key reaches admin endpoints only with the admin scope."""
    plain = (await harness.create_key(admin_token, name="plain"))["key"]
    admin_scoped = (
        await harness.create_key(admin_token, name="admin", scopes=["read", "write", "admin"])
    )["key"]
    denied = await harness.client.get("/api/users", headers=key_header(plain))
    assert denied.status_code == 403
    assert denied.json()["code"] == "insufficient_scope"
    listed = await harness.client.get("/api/users", headers=key_header(admin_scoped))
    assert listed.status_code == 200
    # Reaching admin endpoints is not setting credentials: that needs a password session.
    created = await harness.client.post(
        "/api/users",
        json={"login": "eve", "email": "eve@example.com", "password": USER_PASSWORD},
        headers=key_header(admin_scoped),
    )
    assert created.status_code == 403
    assert created.json()["code"] == "session_required"


async def test_api_keys_cannot_manage_credentials(harness: Harness, user_token: str) -> None:
    """With a key: reading keys works; creating keys, changing the password and logging
    out need a user session (403)."""
    key = (await harness.create_key(user_token))["key"]
    assert (await harness.client.get(KEYS, headers=key_header(key))).status_code == 200
    for method, path, body in (
        ("POST", KEYS, {"name": "escalate", "allowedIp": [], "expiresAt": expiry(harness.clock)}),
        (
            "POST",
            "/api/account/change-password",
            {"currentPassword": USER_PASSWORD, "newPassword": "hijacked-password"},
        ),
        ("POST", "/api/account/logout-all", None),
        ("POST", "/api/logout", None),
    ):
        response = await harness.client.request(method, path, json=body, headers=key_header(key))
        assert response.status_code == 403, path
        assert "user session" in response.json()["message"]


async def test_a_key_may_revoke_keys_and_query_usage(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """Taking access away is open to keys: a key with ``write`` revokes its owner's keys
    (``read`` may not: 403 insufficient_scope), an admin-scoped key anyone's; and
    ``POST /usage``, a read in UTMStack's verb, answers keys too. Someone else's key
    stays 404 without the admin scope."""
    writer = (await harness.create_key(user_token, name="writer"))["key"]
    reader = (await harness.create_key(user_token, name="reader", scopes=["read"]))["key"]
    other = await harness.create_key(user_token, name="other")
    admins = await harness.create_key(admin_token, name="admins-own")
    refused = await harness.client.delete(f"{KEYS}/{other['id']}", headers=key_header(reader))
    assert (refused.status_code, refused.json()["code"]) == (403, "insufficient_scope")
    hidden = await harness.client.delete(f"{KEYS}/{admins['id']}", headers=key_header(writer))
    assert hidden.status_code == 404
    revoked = await harness.client.delete(f"{KEYS}/{other['id']}", headers=key_header(writer))
    assert revoked.status_code == 204, revoked.text
    assert (
        await harness.client.get("/api/account", headers=key_header(other["key"]))
    ).status_code == 401
    admin_scoped = (
        await harness.create_key(admin_token, name="admin", scopes=["read", "write", "admin"])
    )["key"]
    listed = await harness.client.get(KEYS, params={"all": "true"}, headers=bearer(admin_token))
    writer_id = next(k["id"] for k in listed.json() if k["name"] == "writer")
    stopped = await harness.client.delete(f"{KEYS}/{writer_id}", headers=key_header(admin_scoped))
    assert stopped.status_code == 204, stopped.text
    usage = await harness.client.post(f"{KEYS}/usage", json={}, headers=key_header(admin_scoped))
    assert usage.status_code == 200, usage.text


# -- usage log and last use -------------------------------------------------------------------


async def test_usage_log_and_last_used_record_calls_without_secrets(
    harness: Harness, user_token: str
) -> None:
    """Each call with a key is one usage record (time, IP, method, path, status, user
    agent, latency, failure reason); last-used time and IP follow; no secret anywhere."""
    created = await harness.create_key(user_token)
    key = created["key"]
    await harness.client.get(
        "/api/account?access_token=should-not-be-logged",
        headers={**key_header(key), "User-Agent": "deploy-bot/1.0"},
    )
    async with harness.client_from("198.51.100.20") as outsider:
        await outsider.get("/api/account", headers=key_header(key))
    await harness.services.usage.flush()

    response = await harness.client.get(
        f"{KEYS}/usage", params={"apiKeyId": created["id"]}, headers=bearer(user_token)
    )
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "2"
    records = sorted(response.json(), key=lambda r: r["id"])
    success, refused = records
    assert success["endpoint"] == "/api/account"
    assert success["requestMethod"] == "GET"
    assert success["responseCode"] == 200
    assert success["ipAddress"] == "127.0.0.1"
    assert success["userAgent"] == "deploy-bot/1.0"
    assert success["errorMessage"] is None
    assert success["apiKeyName"] == "ci-deploy"
    # UTMStack's ApiKeyUsageLog names too; the query string is never recorded.
    assert (success["httpMethod"], success["statusCode"], success["address"]) == (
        "GET",
        200,
        "127.0.0.1",
    )
    assert success["queryParams"] is None
    assert "payload" not in success
    assert (refused["statusCode"], refused["address"]) == (403, "198.51.100.20")
    assert refused["responseCode"] == 403
    assert refused["ipAddress"] == "198.51.100.20"
    assert refused["errorMessage"] == "ip_not_allowed"
    assert key not in response.text
    assert "should-not-be-logged" not in response.text

    shown = await harness.client.get(f"{KEYS}/{created['id']}", headers=bearer(user_token))
    assert shown.json()["lastUsedIp"] == "127.0.0.1"
    assert shown.json()["lastUsedAt"] is not None

    async with harness.services.db.session() as session:
        rows = (await session.execute(text("SELECT * FROM api_key_usage"))).all()
    dumped = " ".join(str(value) for row in rows for value in row)
    assert key not in dumped
    assert "should-not-be-logged" not in dumped


async def test_usage_filters_and_post_variant(harness: Harness, user_token: str) -> None:
    """GET filters by outcome and status; POST /usage takes the same filters as a body."""
    created = await harness.create_key(user_token, allowedIp=["127.0.0.1"])
    for _ in range(3):
        await harness.client.get("/api/account", headers=key_header(created["key"]))
    async with harness.client_from("198.51.100.1") as outsider:
        await outsider.get("/api/account", headers=key_header(created["key"]))
    await harness.services.usage.flush()

    failures = await harness.client.get(
        f"{KEYS}/usage", params={"outcome": "failure"}, headers=bearer(user_token)
    )
    assert [r["responseCode"] for r in failures.json()] == [403]
    ok = await harness.client.get(
        f"{KEYS}/usage", params={"status": 200}, headers=bearer(user_token)
    )
    assert ok.headers["X-Total-Count"] == "3"
    since = (harness.clock() + timedelta(minutes=1)).isoformat()
    none_yet = await harness.client.get(
        f"{KEYS}/usage", params={"from": since}, headers=bearer(user_token)
    )
    assert none_yet.json() == []
    posted = await harness.client.post(
        f"{KEYS}/usage",
        params={"page": 0, "size": 2},
        # A field authgate does not know is ignored, as Spring ignores it.
        json={"apiKeyId": created["id"], "outcome": "success", "clientFilter": {"x": 1}},
        headers=bearer(user_token),
    )
    assert posted.status_code == 200, posted.text
    assert posted.headers["X-Total-Count"] == "3"
    assert len(posted.json()) == 2
    # ``true`` is no key id (pydantic's lax int read it as the key numbered 1).
    boolean = await harness.client.post(
        f"{KEYS}/usage", json={"apiKeyId": True}, headers=bearer(user_token)
    )
    assert boolean.status_code in (400, 422), boolean.text


async def test_usage_post_links_carry_the_body_filters(harness: Harness, user_token: str) -> None:
    """The Link header of ``POST /usage`` names the body's filters as GET's query
    parameters (and drops query parameters the POST did not read): following "next"
    with GET gives the second page of the same search, not of every record
    (black-box review, item 4)."""
    created = await harness.create_key(user_token)
    other = await harness.create_key(user_token, name="other")
    for _ in range(3):
        await harness.client.get("/api/account", headers=key_header(created["key"]))
    await harness.client.get("/api/account", headers=key_header(other["key"]))
    harness.clock.advance(seconds=1)
    await harness.services.usage.flush()
    since = format_instant(harness.clock() - timedelta(hours=1))
    body = {"apiKeyId": created["id"], "status": 200, "outcome": "success", "from": since}

    first = await harness.client.post(
        f"{KEYS}/usage",
        params={"size": 1, "sort": "id,asc", "status": 500},
        json=body,
        headers=bearer(user_token),
    )
    links = {
        rel.split('"')[1]: url.strip()[1:-1]
        for url, rel in (part.split(";") for part in first.headers["Link"].split(","))
    }
    query = parse_qs(urlsplit(links["next"]).query)
    second = await harness.client.get(links["next"], headers=bearer(user_token))
    everything = await harness.client.post(
        f"{KEYS}/usage", params={"sort": "id,asc"}, json=body, headers=bearer(user_token)
    )

    assert first.headers["X-Total-Count"] == "3"
    assert query == {
        "size": ["1"],
        "sort": ["id,asc"],
        "page": ["1"],
        "apiKeyId": [created["id"]],
        "status": ["200"],
        "outcome": ["success"],
        "from": [since],
    }
    assert second.headers["X-Total-Count"] == "3"
    assert second.json() == everything.json()[1:2]


async def test_usage_top_caps_the_records_and_the_count(harness: Harness, user_token: str) -> None:
    """UTMStack's ?top=N (ApiKeyResource.search): X-Total-Count is min(total, N) and no
    page goes past the Nth record; its other parameters (indexPattern,
    includeChildren) are accepted. POST takes top too; a top below 1 is refused."""
    created = await harness.create_key(user_token)
    for _ in range(5):
        await harness.client.get("/api/account", headers=key_header(created["key"]))
    await harness.services.usage.flush()

    async def page(number: int, top: int) -> httpx2.Response:
        params: dict[str, str | int] = {
            "indexPattern": "v11-api-access-logs-*",
            "includeChildren": "false",
            "top": top,
            "page": number,
            "size": 2,
            "sort": "id,asc",
        }
        response = await harness.client.get(
            f"{KEYS}/usage", params=params, headers=bearer(user_token)
        )
        assert response.status_code == 200, response.text
        return response

    everything = await harness.client.get(
        f"{KEYS}/usage", params={"sort": "id,asc"}, headers=bearer(user_token)
    )
    ids = [record["id"] for record in everything.json()]
    assert len(ids) == 5
    pages = [await page(number, top=3) for number in range(3)]
    assert [[r["id"] for r in p.json()] for p in pages] == [ids[:2], ids[2:3], []]
    assert {p.headers["X-Total-Count"] for p in pages} == {"3"}
    links = {
        rel.split('"')[1]: url
        for url, rel in (part.split(";") for part in pages[0].headers["Link"].split(","))
    }
    assert "page=1&" in links["last"]
    assert 'rel="next"' not in pages[1].headers["Link"]
    beyond = await page(0, top=50)
    assert (beyond.headers["X-Total-Count"], len(beyond.json())) == ("5", 2)

    posted = await harness.client.post(
        f"{KEYS}/usage", params={"top": 1}, json={}, headers=bearer(user_token)
    )
    assert (posted.headers["X-Total-Count"], len(posted.json())) == ("1", 1)
    for bad in ("0", "-1", "many"):
        refused = await harness.client.get(
            f"{KEYS}/usage", params={"top": bad}, headers=bearer(user_token)
        )
        assert refused.status_code == 422, bad
        assert refused.json()["code"] == "validation_failed"


async def test_usage_of_other_users_is_invisible(
    harness: Harness, user_token: str, admin_token: str
) -> None:
    """A user sees only the usage of their own keys; an admin sees all."""
    admin_key = (await harness.create_key(admin_token, name="admin-key"))["key"]
    await harness.client.get("/api/account", headers=key_header(admin_key))
    await harness.services.usage.flush()
    mine = await harness.client.get(f"{KEYS}/usage", headers=bearer(user_token))
    assert mine.json() == []
    everyone = await harness.client.get(f"{KEYS}/usage", headers=bearer(admin_token))
    assert len(everyone.json()) == 1


async def test_usage_is_flushed_on_shutdown(
    tmp_path: Any, database_url: str, clock: FakeClock
) -> None:
    """Records still buffered when the app stops are written, not lost."""
    settings = test_settings(
        tmp_path / "data", database_url=database_url, usage_flush_interval_seconds=60
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        await services.users.ensure_initial_admin("shutdown-operator-password")
        user = await services.accounts.authenticate("admin", "shutdown-operator-password")
        from authgate.services.api_key_views import KeySpec

        created = await services.api_keys.create(
            user.id,
            KeySpec(name="k", allowed_networks=[], expires_at=clock() + timedelta(days=1)),
        )
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(25):
                response = await client.get("/api/account", headers=key_header(created.plaintext))
                assert response.status_code == 200
        assert services.usage.pending == 25

    again = create_app(settings, clock=clock)
    async with (
        again.router.lifespan_context(again),
        again.state.services.db.session() as session,
    ):
        count = (await session.execute(text("SELECT COUNT(*) FROM api_key_usage"))).scalar()
    assert count == 25


async def test_usage_retention_deletes_old_records(harness: Harness, user_token: str) -> None:
    """Records older than the retention period are removed by the cleanup job."""
    created = await harness.create_key(user_token)
    await harness.client.get("/api/account", headers=key_header(created["key"]))
    await harness.services.usage.flush()
    harness.clock.advance(days=harness.services.settings.usage.retention_days + 1)
    assert await harness.services.usage.delete_expired() == 1


def test_expiry_helper_is_utc() -> None:
    """The test helper writes instants in UTC with a Z, as UTMStack's UI does."""
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    assert expiry(clock, days=1) == "2026-01-02T00:00:00Z"


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("1/86401 seconds", "A rate limit's window is at most one day (e.g. 10000/day)."),
        ("5/1000000000 days", "A rate limit's window is at most one day (e.g. 10000/day)."),
        ("10/second;1/2 days", "A rate limit's window is at most one day (e.g. 10000/day)."),
        ("1/month", "A rate limit's window is at most one day (e.g. 10000/day)."),
        ("1000000001/second", "A rate limit allows at most 1,000,000,000 requests a window."),
        ("1/0 second", 'A rate limit\'s window is at least one unit ("1/0 second" is none).'),
        (
            "10/second;5 per 00 minutes",
            'A rate limit\'s window is at least one unit ("1/0 second" is none).',
        ),
    ],
)
async def test_rate_limit_beyond_a_day_or_a_billion_is_422(
    harness: Harness, user_token: str, limit: str, message: str
) -> None:
    """A window longer than a day, or more than a billion requests in one, is refused
    with a field error (a Retry-After of millions of years helps no one)."""
    response = await harness.client.post(
        KEYS,
        json={"name": "huge", "expiresAt": expiry(harness.clock), "rateLimit": limit},
        headers=bearer(user_token),
    )

    assert response.status_code == 422, response.text
    assert response.json()["fieldErrors"] == [
        {"objectName": "body", "field": "rateLimit", "message": message}
    ]


async def test_rate_limit_of_one_day_and_a_billion_is_accepted(
    harness: Harness, user_token: str
) -> None:
    """The bounds themselves are allowed, in any notation `limits` reads."""
    for limit in ("10000/day", "1/24 hours", "1/86400 seconds", "1000000000/second"):
        created = await harness.create_key(user_token, f"at-{len(limit)}", rateLimit=limit)
        assert created["rateLimit"] == limit


async def test_rate_limit_is_set_validated_kept_and_removed(
    harness: Harness, user_token: str
) -> None:
    """rateLimit is stored at creation, refused when malformed (422), kept by a PUT that
    omits it, and removed by an explicit null."""
    created = await harness.create_key(user_token, rateLimit="10/second;1000/hour")
    assert created["rateLimit"] == "10/second;1000/hour"
    for bad in ("lots", "0/minute", "100/fortnight", "x" * 65):
        response = await harness.client.post(
            KEYS,
            json={"name": f"bad-{len(bad)}", "expiresAt": expiry(harness.clock), "rateLimit": bad},
            headers=bearer(user_token),
        )
        assert response.status_code == 422, bad
        assert response.json()["fieldErrors"][0]["field"] == "rateLimit"
    url = f"{KEYS}/{created['id']}"
    body = {"name": "renamed", "allowedIp": ["127.0.0.1"], "expiresAt": expiry(harness.clock)}
    kept = await harness.client.put(url, json=body, headers=bearer(user_token))
    assert kept.json()["rateLimit"] == "10/second;1000/hour"
    removed = await harness.client.put(
        url, json={**body, "rateLimit": None}, headers=bearer(user_token)
    )
    assert removed.json()["rateLimit"] is None
