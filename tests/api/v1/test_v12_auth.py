"""UTMStack v12's ``/api/v1/auth`` contract (login, refresh, logout, the caller, sessions).

Each test names the v12 source it follows: ``backend/modules/iam/routes.go``,
``dto/auth.go``, ``handler/auth.go`` and ``usecase/auth.go`` as issue 17 describes them
(the project's UTMStack snapshot has no v12 branch). The attacks (refresh-token reuse,
session revocation, logout) have their own tests below.
"""

from __future__ import annotations

from typing import Any

import jwt

from authgate.settings import UTMSTACK_DEFAULT_TENANT
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.api.test_second_factor import enrol_totp
from tests.api.v1.v12_ui import ui_request
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness, bearer

NEW_PASSWORD = "a-brand-new-password"


async def _login(harness: Harness, login: str = "alice@example.com", **headers: str) -> Any:
    response = await harness.client.post(
        "/api/v1/auth/login", json={"login": login, "password": USER_PASSWORD}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_login_returns_the_v12_pair(harness: Harness) -> None:
    """dto/auth.go LoginResponse: access and refresh token, Bearer, both expiries, the
    user as UserResponse with a UUID id; the access token carries v12's claims."""
    await harness.create_user("alice", USER_PASSWORD, first_name="Alice", last_name="Liddell")
    body = await _login(harness)
    assert body["token_type"] == "Bearer"
    assert {"access_token", "refresh_token", "expires_at", "refresh_expires_at"} <= set(body)
    user = body["user"]
    assert user["email"] == "alice@example.com"
    assert user["name"] == "Alice Liddell"
    assert user["status"] == "active"
    assert user["lang_key"] == "en"
    assert user["federated"] is False
    assert user["tfa_enabled"] is False
    assert len(user["id"]) == 36
    assert user["id"].count("-") == 4
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "ES256"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["email"] == "alice@example.com"
    assert claims["roles"] == ["ROLE_USER"]
    assert claims["sub"] == "alice"
    assert claims["sid"]
    assert claims["exp"]
    assert claims["iss"]
    assert claims["aud"]
    # What v12's UI reads besides the roles (shared/lib/jwt.ts): the tenant, and whether
    # the caller is the instance operator (an admin of the default tenant).
    assert claims["tid"] == UTMSTACK_DEFAULT_TENANT
    assert claims["platform"] is False


async def test_an_admin_s_v12_token_says_platform_operator(harness: Harness) -> None:
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    response = await harness.client.post(
        "/api/v1/auth/login", json={"login": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert (claims["platform"], claims["tid"]) == (True, UTMSTACK_DEFAULT_TENANT)


async def test_login_and_refresh_show_the_user_as_me_does(harness: Harness) -> None:
    """The ``user`` of a login and of a refresh is v12's UserResponse with every field,
    ``image_url: null`` included, as ``/auth/me`` and ``/users`` show it; only the
    answer's own omitempty fields (``tfa_*``, ``pre_auth_token``) are left out."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    me = await harness.client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.json()["image_url"] is None
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    for answer in (body, refreshed.json()):
        assert answer["user"] == me.json()
        assert set(answer) == {
            "access_token",
            "refresh_token",
            "token_type",
            "expires_at",
            "refresh_expires_at",
            "user",
        }


async def test_login_accepts_the_login_name_and_tokens_work_on_v11_routes(
    harness: Harness,
) -> None:
    """handler/auth.go Login: ``login`` is the e-mail; authgate accepts the login name
    too, and the access token works on the v10/v11 API as well."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness, "alice")
    account = await harness.client.get("/api/account", headers=bearer(body["access_token"]))
    assert account.status_code == 200


async def test_login_errors_are_v12_shaped(harness: Harness) -> None:
    """handler/auth.go Login: 400 missing fields, 401 bad credentials, 403 deactivated;
    every error is {"error": message} and nothing else."""
    await harness.create_user("alice", USER_PASSWORD)
    missing = await harness.client.post("/api/v1/auth/login", json={"login": "alice"})
    assert missing.status_code == 400
    assert list(missing.json()) == ["error"]
    wrong = await harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": "not-the-password-1"}
    )
    assert wrong.status_code == 401
    assert list(wrong.json()) == ["error"]
    unknown = await harness.client.post(
        "/api/v1/auth/login", json={"login": "nobody", "password": "not-the-password-1"}
    )
    assert unknown.status_code == 401
    assert unknown.json() == wrong.json()
    from authgate.services.user_fields import UserChanges

    await harness.services.users.update_user(
        "alice", UserChanges(activated=False), acting_user_id=None
    )
    deactivated = await harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
    )
    assert deactivated.status_code == 403
    assert list(deactivated.json()) == ["error"]
    not_found = await harness.client.get("/api/v1/no-such-route")
    assert not_found.status_code == 404
    assert list(not_found.json()) == ["error"]


async def test_v12_s_own_prefix_answers_its_errors_in_its_shape(harness: Harness) -> None:
    """``/api/v1`` itself, as every path under it, answers v12's ``{"error": …}`` (it was
    the Spring-shaped 404 without the final slash: fuzz review); ``/api/v10`` is not v12."""
    for path in ("/api/v1", "/api/v1/", "/api/v1/nowhere"):
        response = await harness.client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"error"}, path
    other = await harness.client.get("/api/v10")
    assert other.status_code == 404
    assert {"error", "status"} <= set(other.json())


async def test_login_is_throttled_with_429(harness: Harness) -> None:
    """usecase/auth.go: too many attempts is 429 (authgate's login protection)."""
    await harness.create_user("alice", USER_PASSWORD)
    statuses = []
    for _ in range(harness.services.settings.login.pair_max_failures + 3):
        response = await harness.client.post(
            "/api/v1/auth/login", json={"login": "alice", "password": "not-the-password-1"}
        )
        statuses.append(response.status_code)
    assert statuses[0] == 401
    assert statuses[-1] == 429
    assert list(response.json()) == ["error"]


async def test_refresh_rotates_the_refresh_token(harness: Harness) -> None:
    """handler/auth.go Refresh: a new pair; the new refresh token refreshes again."""
    await harness.create_user("alice", USER_PASSWORD)
    first = await _login(harness)
    second = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    me = await harness.client.get("/api/v1/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    third = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert third.status_code == 200


async def test_refresh_refuses_unknown_and_expired_tokens(harness: Harness) -> None:
    """handler/auth.go Refresh: 401 for an invalid or expired refresh token."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    unknown = await harness.client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43})
    assert unknown.status_code == 401
    assert list(unknown.json()) == ["error"]
    harness.clock.advance(seconds=harness.services.settings.tokens.remember_me_ttl_seconds + 1)
    expired = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert expired.status_code == 401


async def test_attack_reused_refresh_token_revokes_the_whole_family(harness: Harness) -> None:
    """Attack: a stolen refresh token is used after its owner already rotated it. The
    reuse is refused, the whole session (the thief's and the victim's newest tokens,
    refresh and access) is revoked, and the event is audited. v12 only answered 401.
    (Within the reuse interval it would be taken for another tab's refresh:
    ``test_v12_refresh_reuse.py``.)"""
    await harness.create_user("alice", USER_PASSWORD)
    stolen = await _login(harness)
    rotated = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]}
    )
    newest = rotated.json()
    harness.clock.advance(seconds=harness.services.settings.tokens.refresh_reuse_interval_seconds)
    reuse = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]}
    )
    assert reuse.status_code == 401
    # The legitimate newest refresh token is dead too, and so is its access token.
    after = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": newest["refresh_token"]}
    )
    assert after.status_code == 401
    me = await harness.client.get("/api/v1/auth/me", headers=bearer(newest["access_token"]))
    assert me.status_code == 401
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("REFRESH_TOKEN_REUSED",)), PageRequest(size=10)
    )
    assert len(page.items) == 1
    assert page.items[0].actor_login == "alice"


async def test_attack_logout_revokes_the_access_token(harness: Harness) -> None:
    """Attack: an access token copied before logout is refused after it (v12's JWTs
    outlived logout). handler/auth.go Logout: 204, also for an unknown token."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    token = body["access_token"]
    assert (await harness.client.get("/api/v1/auth/me", headers=bearer(token))).status_code == 200
    logout = await harness.client.post(
        "/api/v1/auth/logout", json={"refresh_token": body["refresh_token"]}
    )
    assert logout.status_code == 204
    assert logout.content == b""
    for path in ("/api/v1/auth/me", "/api/account"):
        assert (await harness.client.get(path, headers=bearer(token))).status_code == 401
    again = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert again.status_code == 401
    unknown = await harness.client.post("/api/v1/auth/logout", json={"refresh_token": "nope"})
    assert unknown.status_code == 204
    assert unknown.content == b""


async def test_v11_logout_of_a_v12_token_ends_its_session(harness: Harness) -> None:
    """``POST /api/logout`` with a v12 access token ends its session as v12's logout
    does: the refresh token no longer refreshes and the session is no longer listed."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    other = await _login(harness)
    out = await harness.client.post("/api/logout", headers=bearer(body["access_token"]))
    assert out.status_code == 204
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 401
    listed = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(other["access_token"])
    )
    assert [s["current"] for s in listed.json()] == [True]


async def test_logout_without_a_refresh_token_is_400(harness: Harness) -> None:
    """dto/auth.go LogoutRequest: refresh_token binding:"required" (an empty one too);
    handler/auth.go Logout: 400 "refresh_token is required"."""
    for body in ({}, {"refresh_token": ""}):
        response = await harness.client.post("/api/v1/auth/logout", json=body)
        assert response.status_code == 400, body
        assert response.json() == {"error": "refresh_token is required"}


async def test_me_and_authenticate(harness: Harness) -> None:
    """handler/auth.go Me / Authenticate: UserResponse; the identity as text/plain."""
    await harness.create_user("alice", USER_PASSWORD)
    token = (await _login(harness))["access_token"]
    me = await harness.client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert set(me.json()) == {
        "id", "email", "name", "status", "lang_key", "image_url", "federated", "tfa_enabled"
    }  # fmt: skip
    who = await harness.client.get("/api/v1/auth/authenticate", headers=bearer(token))
    assert who.status_code == 200
    assert who.headers["content-type"].startswith("text/plain")
    assert who.text == "alice"
    anonymous = await harness.client.get("/api/v1/auth/me")
    assert anonymous.status_code == 401
    assert list(anonymous.json()) == ["error"]


async def test_update_me(harness: Harness) -> None:
    """handler/auth.go UpdateMe: e-mail, name and language change; 409 for an e-mail
    another user has; unknown fields (``status``) are ignored, never assigned."""
    await harness.create_user("alice", USER_PASSWORD)
    await harness.create_user("bob", USER_PASSWORD)
    token = (await _login(harness))["access_token"]
    changed = await harness.client.put(
        "/api/v1/auth/me",
        json={"name": "Alice Cooper", "lang_key": "es", "status": "suspended"},
        headers=bearer(token),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Alice Cooper"
    assert changed.json()["lang_key"] == "es"
    assert changed.json()["status"] == "active"
    taken = await harness.client.put(
        "/api/v1/auth/me", json={"email": "bob@example.com"}, headers=bearer(token)
    )
    assert taken.status_code == 409
    assert list(taken.json()) == ["error"]


async def test_update_me_leaves_empty_fields_as_they_are(harness: Harness) -> None:
    """usecase/auth.go UpdateMe sets only the fields that are not ``""`` (dto/auth.go:
    omitempty): an empty name, e-mail or language changes nothing (the review: an empty
    name erased it, an empty e-mail was 400)."""
    await harness.create_user("alice", USER_PASSWORD, first_name="Alice", last_name="Liddell")
    token = (await _login(harness))["access_token"]
    before = (await harness.client.get("/api/v1/auth/me", headers=bearer(token))).json()
    unchanged = await harness.client.put(
        "/api/v1/auth/me", json={"name": "", "email": "", "lang_key": ""}, headers=bearer(token)
    )
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json() == before
    assert (before["name"], before["email"]) == ("Alice Liddell", "alice@example.com")


async def test_change_password(harness: Harness) -> None:
    """handler/auth.go ChangePassword: 204; a wrong current password is 400 (v12: 401,
    see below); the new password logs in and the old sessions end."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    headers = bearer(body["access_token"])
    wrong = await harness.client.post(
        "/api/v1/auth/change-password",
        json={"current_password": "not-the-password-1", "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "current password is incorrect"}
    harness.clock.advance(seconds=1)
    done = await harness.client.post(
        "/api/v1/auth/change-password",
        json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert done.status_code == 204
    assert done.content == b""
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 401
    # The refused refresh (v12's UI sends one after any 401) does not end the access
    # token that made the change: kept until it expires, as v12 keeps it.
    me = await harness.client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200, me.text
    relogin = await harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": NEW_PASSWORD}
    )
    assert relogin.status_code == 200


async def test_a_wrong_current_password_counts_once_from_v12s_ui(harness: Harness) -> None:
    """A wrong current password is 400 in v12's words, not v12's 401: v12's client
    answers a 401 by refreshing and sending the request again, so each wrong password
    typed counted twice against the login throttle (black-box review)."""
    await harness.create_user("alice", USER_PASSWORD)
    pair = await _login(harness)
    body = {"current_password": "not-the-password-1", "new_password": NEW_PASSWORD}
    for _ in range(3):
        wrong = await ui_request(harness, "POST", "/api/v1/auth/change-password", pair, json=body)
        assert wrong.status_code == 400
        assert wrong.json() == {"error": "current password is incorrect"}
    await harness.services.audit.flush()
    failures = await harness.services.audit.search(
        AuditFilter(event_types=("PASSWORD_CHANGED",)), PageRequest(size=10)
    )
    assert [entry.reason for entry in failures.items] == ["wrong_current_password"] * 3


async def test_change_password_keeps_the_access_token_used(harness: Harness) -> None:
    """usecase/auth.go ChangePassword: every refresh token is revoked (this session's
    too) but the access token used goes on until it expires (v12's UI stays signed in);
    better than v12, every other access token of the user stops at once."""
    await harness.create_user("alice", USER_PASSWORD)
    other = await _login(harness)
    body = await _login(harness)
    headers = bearer(body["access_token"])
    harness.clock.advance(seconds=1)
    done = await harness.client.post(
        "/api/v1/auth/change-password",
        json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert done.status_code == 204
    assert (await harness.client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    stale = await harness.client.get("/api/v1/auth/me", headers=bearer(other["access_token"]))
    assert stale.status_code == 401
    for refresh_token in (body["refresh_token"], other["refresh_token"]):
        refreshed = await harness.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": refresh_token}
        )
        assert refreshed.status_code == 401


async def test_sessions_ended_by_a_password_change_are_not_listed(harness: Harness) -> None:
    """A password change ends every session before their refresh tokens are tried; the
    list shows only sessions that can still refresh: not the two old ones (that changed
    the password and the other), but a fresh login's."""
    await harness.create_user("alice", USER_PASSWORD)
    await _login(harness, **{"User-Agent": "phone"})
    laptop = await _login(harness, **{"User-Agent": "laptop"})
    harness.clock.advance(seconds=1)
    done = await harness.client.post(
        "/api/v1/auth/change-password",
        json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(laptop["access_token"]),
    )
    assert done.status_code == 204
    listed = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(laptop["access_token"])
    )
    assert (listed.status_code, listed.json()) == (200, [])
    harness.clock.advance(seconds=1)
    fresh = await harness.client.post(
        "/api/v1/auth/login",
        json={"login": "alice", "password": NEW_PASSWORD},
        headers={"User-Agent": "desktop"},
    )
    listed = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(fresh.json()["access_token"])
    )
    assert [(s["user_agent"], s["current"]) for s in listed.json()] == [("desktop", True)]


async def test_identity_providers_are_an_empty_list(harness: Harness) -> None:
    """routes.go GET /idp-providers (public; handler/idp.go PublicList): the array of
    v12's login page "Login with ..." buttons, empty (authgate has no identity
    providers)."""
    response = await harness.client.get("/api/v1/idp-providers")
    assert response.status_code == 200
    assert response.json() == []


async def test_sessions_list_and_revoke(harness: Harness) -> None:
    """handler/auth.go Sessions: the list marks the current one; DELETE one revokes it
    (its access token too); DELETE all keeps only the current one."""
    await harness.create_user("alice", USER_PASSWORD)
    phone = await _login(harness, **{"User-Agent": "phone"})
    laptop = await _login(harness, **{"User-Agent": "laptop"})
    tablet = await _login(harness, **{"User-Agent": "tablet"})
    headers = bearer(laptop["access_token"])
    listed = (await harness.client.get("/api/v1/auth/sessions", headers=headers)).json()
    assert len(listed) == 3
    current = [s for s in listed if s["current"]]
    assert len(current) == 1
    assert current[0]["user_agent"] == "laptop"
    assert {"id", "ip", "user_agent", "created_at", "expires_at"} <= set(current[0])
    phone_id = next(s["id"] for s in listed if s["user_agent"] == "phone")
    revoked = await harness.client.delete(f"/api/v1/auth/sessions/{phone_id}", headers=headers)
    assert revoked.status_code == 204
    phone_me = await harness.client.get("/api/v1/auth/me", headers=bearer(phone["access_token"]))
    assert phone_me.status_code == 401
    others = await harness.client.delete("/api/v1/auth/sessions", headers=headers)
    assert others.status_code == 204
    tablet_me = await harness.client.get("/api/v1/auth/me", headers=bearer(tablet["access_token"]))
    assert tablet_me.status_code == 401
    left = (await harness.client.get("/api/v1/auth/sessions", headers=headers)).json()
    assert [s["user_agent"] for s in left] == ["laptop"]


async def test_attack_revoking_another_users_session_is_404(harness: Harness) -> None:
    """Attack: Bob tries to revoke Alice's session by id. 404, as for a session that
    does not exist, and Alice's session keeps working."""
    await harness.create_user("alice", USER_PASSWORD)
    await harness.create_user("bob", USER_PASSWORD)
    alice = await _login(harness)
    bob = await _login(harness, "bob")
    alice_sessions = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(alice["access_token"])
    )
    alice_id = alice_sessions.json()[0]["id"]
    attempt = await harness.client.delete(
        f"/api/v1/auth/sessions/{alice_id}", headers=bearer(bob["access_token"])
    )
    assert attempt.status_code == 404
    assert list(attempt.json()) == ["error"]
    still = await harness.client.get("/api/v1/auth/me", headers=bearer(alice["access_token"]))
    assert still.status_code == 200


async def test_a_session_id_that_is_no_uuid_is_400(harness: Harness) -> None:
    """handler/auth.go RevokeSession parses the id first (uuid.Parse): 400 "invalid
    session id" for text that is none (404 before, as for a session not found); the
    forms uuid.Parse reads name the session (here the caller's own, in braces)."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    headers = bearer(body["access_token"])
    for text in ("not-a-uuid", "12345"):
        bad = await harness.client.delete(f"/api/v1/auth/sessions/{text}", headers=headers)
        assert (bad.status_code, bad.json()) == (400, {"error": "invalid session id"}), text
    own = (await harness.client.get("/api/v1/auth/sessions", headers=headers)).json()[0]["id"]
    ended = await harness.client.delete(f"/api/v1/auth/sessions/{{{own.upper()}}}", headers=headers)
    assert ended.status_code == 204
    assert (await harness.client.get("/api/v1/auth/me", headers=headers)).status_code == 401


async def test_sessions_per_user_are_capped(harness: Harness) -> None:
    """Better than v12: past the cap, the oldest session is revoked (refresh fails)."""
    await harness.create_user("alice", USER_PASSWORD)
    cap = 10
    first = await _login(harness)
    for _ in range(cap):
        harness.clock.advance(seconds=1)
        last = await _login(harness)
    listed = await harness.client.get("/api/v1/auth/sessions", headers=bearer(last["access_token"]))
    assert len(listed.json()) == cap
    oldest = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert oldest.status_code == 401


async def test_health(harness: Harness) -> None:
    """routes.go: GET /api/v1/health answers without credentials."""
    response = await harness.client.get("/api/v1/health")
    assert response.status_code == 200


async def test_log_out_everywhere_ends_refresh_sessions(harness: Harness) -> None:
    """Better than v12: v10/v11's "log out everywhere" ends v12 sessions too (their
    refresh tokens no longer refresh); the session remembers the client's address."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    listed = await harness.client.get("/api/v1/auth/sessions", headers=bearer(body["access_token"]))
    assert listed.json()[0]["ip"] == "127.0.0.1"
    harness.clock.advance(seconds=1)
    out = await harness.client.post("/api/account/logout-all", headers=bearer(body["access_token"]))
    assert out.status_code == 204
    harness.clock.advance(seconds=1)
    fresh = await _login(harness)
    listed = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(fresh["access_token"])
    )
    assert [s["current"] for s in listed.json()] == [True]  # the ended one is not listed
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_attack_v12_login_cannot_skip_the_second_factor(
    harness: Harness, user_token: str
) -> None:
    """Attack: someone who knows only the password of an account with a second factor
    tries the v12 login: no token (v12's empty strings), only the user and the pre-auth
    token of the second step (tests/api/v1/test_v12_second_factor.py); and a v12
    session started before the factor was enabled stops refreshing."""
    earlier = await _login(harness)
    await enrol_totp(harness, user_token)
    login = await harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
    )
    assert login.status_code == 200
    body = login.json()
    assert body["tfa_required"] is True
    assert body["access_token"] == ""
    assert body["refresh_token"] == ""
    assert body["user"]["tfa_enabled"] is True
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": earlier["refresh_token"]}
    )
    assert refreshed.status_code == 401
    again = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": earlier["refresh_token"]}
    )
    assert again.status_code == 401
