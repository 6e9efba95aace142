"""UTMStack v12's ``/api/v1/api-keys`` contract (snake_case keys, ``page_info``).

Each test names the v12 source it follows: ``backend/modules/apikeys`` (routes, DTOs
and handler) as issue 17 describes them (the project's UTMStack snapshot has no v12
branch). The keys are the very keys of ``/api/api-keys``: one service, one store.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from starlette.routing import Match, Route

from tests.api.test_api_keys import KEYS, key_header
from tests.api.test_key_remediation import audited
from tests.conftest import USER_PASSWORD, Harness, bearer, format_instant

V12_KEYS = "/api/v1/api-keys"
ALLOWED = ["127.0.0.1", "::1"]
RESPONSE_FIELDS = {"id", "name", "allowed_ip", "created_at", "generated_at", "expires_at"}


async def v12_token(harness: Harness, email: str = "alice@example.com") -> str:
    response = await harness.client.post(
        "/api/v1/auth/login", json={"login": email, "password": USER_PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def alice(harness: Harness) -> str:
    await harness.create_user("alice")
    return await v12_token(harness)


def body(harness: Harness, name: str = "log-shipper", **fields: Any) -> dict[str, Any]:
    expires_at = format_instant(harness.clock() + timedelta(days=30))
    return {"name": name, "allowed_ip": ALLOWED, "expires_at": expires_at, **fields}


async def create(harness: Harness, token: str, name: str = "log-shipper") -> dict[str, Any]:
    response = await harness.client.post(V12_KEYS, json=body(harness, name), headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_answers_201_without_the_key(harness: Harness) -> None:
    """apikeys handler Create: 201 with ``{id (UUID), name, allowed_ip, created_at,
    generated_at, expires_at}`` and no key; unknown fields are ignored."""
    token = await alice(harness)
    response = await harness.client.post(
        V12_KEYS, json=body(harness, tenant_id="t1", id="mine"), headers=bearer(token)
    )
    assert response.status_code == 201
    created = response.json()
    assert set(created) == RESPONSE_FIELDS
    assert str(uuid.UUID(created["id"])) == created["id"]
    assert created["allowed_ip"] == ALLOWED
    assert response.headers["Location"] == f"{V12_KEYS}/{created['id']}"
    assert "agk_" not in response.text


async def test_generate_returns_the_key_that_works_in_both_headers(harness: Harness) -> None:
    """apikeys handler Generate: ``{"api_key": "<key>"}``; the key is sent in
    ``Utm-Api-Key`` (and works as a Bearer credential too); generating again ends the
    previous key at once."""
    token = await alice(harness)
    created = await create(harness, token)
    response = await harness.client.post(
        f"{V12_KEYS}/{created['id']}/generate", headers=bearer(token)
    )
    assert response.status_code == 200
    assert set(response.json()) == {"api_key"}
    assert response.headers["Cache-Control"] == "no-store"
    key = response.json()["api_key"]
    for headers in (key_header(key), bearer(key)):
        me = await harness.client.get("/api/v1/auth/me", headers=headers)
        assert (me.status_code, me.json()["email"]) == (200, "alice@example.com")
    again = await harness.client.post(f"{V12_KEYS}/{created['id']}/generate", headers=bearer(token))
    assert again.json()["api_key"] != key
    assert (await harness.client.get("/api/v1/auth/me", headers=key_header(key))).status_code == 401


async def test_list_pages_with_page_info(harness: Harness) -> None:
    """apikeys handler List: ``?page&page_size`` (one-based) → ``{data, page_info: {page,
    page_size, total_items, total_pages, has_next, has_prev}}``; only the caller's keys."""
    token = await alice(harness)
    for name in ("a", "b", "c"):
        await create(harness, token, name)
    await harness.create_user("bob")
    await create(harness, await v12_token(harness, "bob@example.com"), "bobs")

    first = await harness.client.get(
        V12_KEYS, params={"page": 1, "page_size": 2}, headers=bearer(token)
    )
    assert first.status_code == 200
    assert len(first.json()["data"]) == 2
    assert first.json()["page_info"] == {
        "page": 1,
        "page_size": 2,
        "total_items": 3,
        "total_pages": 2,
        "has_next": True,
        "has_prev": False,
    }
    second = (
        await harness.client.get(
            V12_KEYS, params={"page": 2, "page_size": 2}, headers=bearer(token)
        )
    ).json()
    assert [k["name"] for k in first.json()["data"] + second["data"]] == ["a", "b", "c"]
    assert (second["page_info"]["has_next"], second["page_info"]["has_prev"]) == (False, True)
    bob = await v12_token(harness, "bob@example.com")
    bobs = (await harness.client.get(V12_KEYS, headers=bearer(bob))).json()
    assert [k["name"] for k in bobs["data"]] == ["bobs"]
    bad = await harness.client.get(V12_KEYS, params={"page": 0}, headers=bearer(token))
    assert bad.status_code == 400
    assert set(bad.json()) == {"error"}


async def test_get_put_delete_one_key(harness: Harness) -> None:
    """apikeys routes: GET, PUT (the create body) and DELETE ``/api-keys/{id}``; a
    revoked key stops working at once; DELETE answers 204 without a body."""
    token = await alice(harness)
    created = await create(harness, token)
    url = f"{V12_KEYS}/{created['id']}"
    assert (await harness.client.get(url, headers=bearer(token))).json() == created
    key = (await harness.client.post(f"{url}/generate", headers=bearer(token))).json()["api_key"]
    edited = await harness.client.put(
        url, json=body(harness, "renamed", allowed_ip="10.0.0.5/24"), headers=bearer(token)
    )
    assert edited.status_code == 200
    assert (edited.json()["name"], edited.json()["allowed_ip"]) == ("renamed", ["10.0.0.0/24"])
    deleted = await harness.client.delete(url, headers=bearer(token))
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (await harness.client.get("/api/v1/auth/me", headers=key_header(key))).status_code == 401


async def test_a_deleted_key_is_not_found(harness: Harness) -> None:
    """usecase/api_key.go Delete removes the key's row: afterwards GET, PUT, generate and
    DELETE of its id are 404 and the list leaves it out (the review: 200, 204 and 409
    "The API key is revoked.", which v12's key page shows as "name already taken"); its
    name is free again. The v10/v11 routes keep showing the revoked key (409 to a
    change), and a key revoked there is not found here either."""
    token = await alice(harness)
    created = await create(harness, token)
    url = f"{V12_KEYS}/{created['id']}"
    deleted = await harness.client.delete(url, headers=bearer(token))
    assert deleted.status_code == 204
    for method, path, json in (
        ("GET", url, None),
        ("PUT", url, body(harness, "renamed")),
        ("POST", f"{url}/generate", None),
        ("DELETE", url, None),
    ):
        gone = await harness.client.request(method, path, json=json, headers=bearer(token))
        assert (gone.status_code, gone.json()) == (404, {"error": "API key not found"}), method
    listed = await harness.client.get(V12_KEYS, headers=bearer(token))
    assert listed.json()["data"] == []
    assert (await harness.client.get(f"{KEYS}/{created['id']}", headers=bearer(token))).is_success
    kept = await harness.client.post(f"{KEYS}/{created['id']}/generate", headers=bearer(token))
    assert kept.status_code == 409
    again = await create(harness, token)
    revoked = await harness.client.delete(f"{KEYS}/{again['id']}", headers=bearer(token))
    assert revoked.status_code == 204
    other = await harness.client.get(f"{V12_KEYS}/{again['id']}", headers=bearer(token))
    assert other.status_code == 404


async def test_errors_are_v12_json(harness: Harness) -> None:
    """v12's errors are ``{"error": "<message>"}``: 409 for a duplicate name, 400 for an
    invalid body, 404 for an unknown id, 401 without credentials."""
    token = await alice(harness)
    await create(harness, token)
    duplicate = await harness.client.post(V12_KEYS, json=body(harness), headers=bearer(token))
    assert (duplicate.status_code, set(duplicate.json())) == (409, {"error"})
    invalid = await harness.client.post(
        V12_KEYS, json=body(harness, allowed_ip=["not-an-address"]), headers=bearer(token)
    )
    assert (invalid.status_code, set(invalid.json())) == (400, {"error"})
    for key_id in (str(uuid.uuid4()), "12345", "99999999999999999999"):
        missing = await harness.client.get(f"{V12_KEYS}/{key_id}", headers=bearer(token))
        assert (missing.status_code, set(missing.json())) == (404, {"error"}), key_id
    anonymous = await harness.client.get(V12_KEYS)
    assert (anonymous.status_code, set(anonymous.json())) == (401, {"error"})


async def test_expiry_is_required_and_capped(harness: Harness) -> None:
    """v12 accepts ``expires_at: null`` (a key that never expires); authgate requires an
    expiry and caps it (a deliberate divergence, AUTHGATE_API_KEY_REQUIRE_EXPIRY)."""
    token = await alice(harness)
    never = await harness.client.post(
        V12_KEYS, json=body(harness, expires_at=None), headers=bearer(token)
    )
    assert never.status_code == 400
    assert "Expiration date is required" in never.json()["error"]
    too_far = format_instant(harness.clock() + timedelta(days=400))
    capped = await harness.client.post(
        V12_KEYS, json=body(harness, expires_at=too_far), headers=bearer(token)
    )
    assert capped.status_code == 400
    assert "within 365 days" in capped.json()["error"]


async def test_other_users_keys_are_not_found(harness: Harness) -> None:
    """Owner-scoped like v12: another user's key is 404 for reading, editing, generating
    and deleting."""
    bobs = await create(harness, await alice(harness))
    await harness.create_user("bob")
    bob = await v12_token(harness, "bob@example.com")
    url = f"{V12_KEYS}/{bobs['id']}"
    for method, path, json in (
        ("GET", url, None),
        ("PUT", url, body(harness)),
        ("POST", f"{url}/generate", None),
        ("DELETE", url, None),
    ):
        response = await harness.client.request(method, path, json=json, headers=bearer(bob))
        assert response.status_code == 404, method


async def test_api_keys_read_does_not_open_others_keys_on_v12(harness: Harness) -> None:
    """v12's Get looks among the caller's own keys only: an administrator (api_keys.read)
    gets 404 for another user's key here, and reads it on /api/api-keys, where
    api_keys.read is documented to reach everyone's keys."""
    alices = await create(harness, await alice(harness))
    await harness.create_user("carol", admin=True)
    carol = await v12_token(harness, "carol@example.com")
    hidden = await harness.client.get(f"{V12_KEYS}/{alices['id']}", headers=bearer(carol))
    assert hidden.status_code == 404, hidden.text
    assert hidden.json() == {"error": "API key not found"}
    shown = await harness.client.get(f"{KEYS}/{alices['id']}", headers=bearer(carol))
    assert shown.status_code == 200, shown.text
    assert shown.json()["name"] == alices["name"]


async def test_api_keys_write_does_not_revoke_others_keys_on_v12(harness: Harness) -> None:
    """v12's Delete looks among the caller's own keys only, like its Get: an
    administrator (api_keys.write) gets 404 for another user's key here, the key keeps
    working and no revocation is audited; /api/api-keys revokes it as documented."""
    token = await alice(harness)
    alices = await create(harness, token)
    generated = await harness.client.post(
        f"{V12_KEYS}/{alices['id']}/generate", headers=bearer(token)
    )
    key = generated.json()["api_key"]
    await harness.create_user("carol", admin=True)
    carol = await v12_token(harness, "carol@example.com")
    hidden = await harness.client.delete(f"{V12_KEYS}/{alices['id']}", headers=bearer(carol))
    assert hidden.status_code == 404, hidden.text
    assert hidden.json() == {"error": "API key not found"}
    assert (await harness.client.get("/api/v1/auth/me", headers=key_header(key))).status_code == 200
    assert await audited(harness, "API_KEY_REVOKED") == []
    revoked = await harness.client.delete(f"{KEYS}/{alices['id']}", headers=bearer(carol))
    assert revoked.status_code == 204, revoked.text
    assert (await harness.client.get("/api/v1/auth/me", headers=key_header(key))).status_code == 401


async def test_v12_and_v11_routes_share_the_keys(harness: Harness, user_token: str) -> None:
    """One store: a key made through ``/api/v1`` is listed by ``/api/api-keys`` under
    the same UUID, and the other way round; a v10/v11 token works on the v12 routes."""
    v12 = await create(harness, user_token)
    v11 = await harness.create_key(user_token, "made-by-v11")
    assert {
        k["id"] for k in (await harness.client.get(KEYS, headers=bearer(user_token))).json()
    } == {
        v12["id"],
        v11["id"],
    }
    listed = (await harness.client.get(V12_KEYS, headers=bearer(user_token))).json()["data"]
    assert {k["id"] for k in listed} == {v12["id"], v11["id"]}


async def test_an_api_key_may_read_but_not_manage_keys(harness: Harness) -> None:
    """A key reads its owner's keys; creating, generating and deleting need a session."""
    token = await alice(harness)
    created = await create(harness, token)
    key = (
        await harness.client.post(f"{V12_KEYS}/{created['id']}/generate", headers=bearer(token))
    ).json()["api_key"]
    assert (await harness.client.get(V12_KEYS, headers=key_header(key))).status_code == 200
    for method, path in (
        ("POST", V12_KEYS),
        ("POST", f"{V12_KEYS}/{created['id']}/generate"),
        ("DELETE", f"{V12_KEYS}/{created['id']}"),
    ):
        response = await harness.client.request(
            method, path, json=body(harness, "other"), headers=key_header(key)
        )
        assert (response.status_code, set(response.json())) == (403, {"error"}), (method, path)


async def test_no_key_route_takes_the_internal_key_check(harness: Harness) -> None:
    """``POST /api/v1/api-keys/authenticate`` (v12's internal key check, served by its own
    module) is never taken for a key id: no route of this module matches that path."""
    scope = {"type": "http", "method": "POST", "path": f"{V12_KEYS}/authenticate"}
    key_routes = [
        route
        for route in harness.app.router.routes
        if isinstance(route, Route) and route.path.startswith(V12_KEYS + "/{key_id")
    ]
    assert len(key_routes) == 4  # GET, PUT, DELETE /{key_id} and POST /{key_id}/generate
    for route in key_routes:
        assert route.matches(scope)[0] is Match.NONE, route.path
    checked = await harness.client.post(
        f"{V12_KEYS}/authenticate", json={"apiKey": "x", "clientIp": "127.0.0.1"}
    )
    assert (checked.status_code, set(checked.json())) == (401, {"error"})  # no X-Internal-Key


async def test_a_malformed_id_is_400_a_numeric_one_still_names_the_key(harness: Harness) -> None:
    """handler/api_key.go apiKeyID: a path id that is no UUID is 400 "invalid id" (and any
    spelling ``uuid.Parse`` reads names the key). authgate's deprecated numeric id still
    names the key this release; a number too large for any key is 404."""
    token = await alice(harness)
    created = await create(harness, token)
    for method, suffix in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/generate")):
        for invalid in (
            "not-a-key",
            "12ab",
            "-1",
            # Python's UUID() reads these; Go's uuid.Parse does not.
            created["id"][:-2] + "-" + created["id"][-2:],
            "uuid:" + created["id"],
            "{{" + created["id"] + "}}",
        ):
            response = await harness.client.request(
                method, f"{V12_KEYS}/{invalid}{suffix}", json=body(harness), headers=bearer(token)
            )
            assert (response.status_code, response.json()) == (400, {"error": "invalid id"}), (
                method,
                invalid,
            )
    view = await harness.services.api_keys.get(None, uuid.UUID(created["id"]))
    for spelling in (
        str(view.key_pk),
        created["id"].replace("-", ""),
        created["id"].upper(),
        "{" + created["id"] + "}",
        "urn:uuid:" + created["id"],
        "URN:UUID:" + created["id"],
    ):
        shown = await harness.client.get(f"{V12_KEYS}/{spelling}", headers=bearer(token))
        assert (shown.status_code, shown.json()["id"]) == (200, created["id"]), spelling
    # The internal key check's path stays its own: another method there is 405.
    other = await harness.client.get(f"{V12_KEYS}/authenticate", headers=bearer(token))
    assert other.status_code == 405


async def test_a_null_allowed_ip_means_any_address(harness: Harness) -> None:
    """dto/api_key.go ``AllowedIP []string``: JSON null is an empty list, a key usable
    from any address (201, ``allowed_ip: []``)."""
    token = await alice(harness)
    response = await harness.client.post(
        V12_KEYS, json=body(harness, allowed_ip=None), headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    assert response.json()["allowed_ip"] == []
    key_id = response.json()["id"]
    replaced = await harness.client.put(
        f"{V12_KEYS}/{key_id}", json=body(harness, allowed_ip=None), headers=bearer(token)
    )
    assert (replaced.status_code, replaced.json()["allowed_ip"]) == (200, [])
    generated = await harness.client.post(f"{V12_KEYS}/{key_id}/generate", headers=bearer(token))
    me = await harness.client.get(
        "/api/v1/auth/me", headers=key_header(generated.json()["api_key"])
    )
    assert me.status_code == 200


async def test_generate_keeps_the_lifetime_within_the_maximum(harness: Harness) -> None:
    """usecase/api_key.go Generate: the key expires as long after the new generation as
    it did after the previous one, capped by authgate's maximum lifetime (365 days by
    default). The v11 route keeps the expiry (tests/api/test_api_keys.py)."""
    token = await alice(harness)
    created = await create(harness, token)  # expires 30 days after its generation

    harness.clock.advance(days=10)
    token = await v12_token(harness)  # the earlier session has expired
    await harness.client.post(f"{V12_KEYS}/{created['id']}/generate", headers=bearer(token))
    shown = (await harness.client.get(f"{V12_KEYS}/{created['id']}", headers=bearer(token))).json()
    assert shown["expires_at"] == format_instant(harness.clock() + timedelta(days=30))

    # Moved to 365 days from a later day, the key's lifetime exceeds the maximum.
    harness.clock.advance(days=100)
    token = await v12_token(harness)
    far = format_instant(harness.clock() + timedelta(days=365))
    replaced = await harness.client.put(
        f"{V12_KEYS}/{created['id']}", json=body(harness, expires_at=far), headers=bearer(token)
    )
    assert replaced.status_code == 200, replaced.text
    harness.clock.advance(days=1)
    token = await v12_token(harness)
    await harness.client.post(f"{V12_KEYS}/{created['id']}/generate", headers=bearer(token))
    shown = (await harness.client.get(f"{V12_KEYS}/{created['id']}", headers=bearer(token))).json()
    assert shown["expires_at"] == format_instant(harness.clock() + timedelta(days=365))


async def test_an_empty_page_counts_no_page(harness: Harness) -> None:
    """usecase/api_key.go List: ``total_pages`` is 0 when the caller has no key (v12's
    users list says 1: tests/api/v1/test_v12_users.py)."""
    token = await alice(harness)
    listed = await harness.client.get(V12_KEYS, headers=bearer(token))
    assert listed.json()["page_info"]["total_pages"] == 0
