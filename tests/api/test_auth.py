"""Login, bearer authentication, logout and revocation through the HTTP API."""

from __future__ import annotations

import jwt
import pytest

from authgate.app import create_app
from authgate.exceptions import TokenRevoked
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.settings import Settings
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, FakeClock, Harness, bearer


async def test_login_returns_both_utmstack_token_shapes(harness: Harness) -> None:
    """200 carries id_token (v10), token + success (v11), authenticated, and the header."""
    await harness.create_user("alice")
    response = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id_token"] == body["token"]
    assert body["authenticated"] is True
    assert body["success"] is True
    assert response.headers["Authorization"] == f"Bearer {body['id_token']}"
    assert response.headers["Cache-Control"] == "no-store"
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["sub"] == "alice"
    assert claims["auth"] == "ROLE_USER"
    assert body["expires_in"] == harness.services.settings.tokens.ttl_seconds


async def test_expires_in_is_the_lifetime_at_any_fraction_of_a_second(harness: Harness) -> None:
    """``exp`` is whole seconds and ``iat`` has milliseconds: rounding their difference
    answered 3599 for a 3600 s token about half the time (the README-driven review)."""
    await harness.create_user("alice")
    harness.clock.advance(seconds=0.7)
    token = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert token.json()["expires_in"] == harness.services.settings.tokens.ttl_seconds


async def test_login_accepts_email_and_any_case(harness: Harness) -> None:
    """The username may be the e-mail address, matched case-insensitively."""
    await harness.create_user("alice", email="Alice@Example.com")
    for username in ("ALICE", "alice@example.com", "ALICE@EXAMPLE.COM"):
        token = await harness.login(username, USER_PASSWORD)
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == "alice"


async def test_remember_me_issues_a_longer_token(harness: Harness) -> None:
    """rememberMe=true uses the remember-me lifetime."""
    await harness.create_user("alice")
    short = await harness.login("alice", USER_PASSWORD)
    long = await harness.login("alice", USER_PASSWORD, rememberMe=True)
    lifetime = {
        name: claims["exp"] - int(claims["iat"])
        for name, claims in (
            ("short", jwt.decode(short, options={"verify_signature": False})),
            ("long", jwt.decode(long, options={"verify_signature": False})),
        )
    }
    settings = harness.services.settings
    assert lifetime == {
        "short": settings.tokens.ttl_seconds,
        "long": settings.tokens.remember_me_ttl_seconds,
    }


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong-password-123"), ("nobody", USER_PASSWORD), ("bob", USER_PASSWORD)],
    ids=["wrong-password", "unknown-user", "deactivated-user"],
)
async def test_failed_logins_look_identical(harness: Harness, username: str, password: str) -> None:
    """Wrong password, unknown user and deactivated user get the same 401 answer."""
    await harness.create_user("alice")
    await harness.create_user("bob", activated=False)
    response = await harness.client.post(
        "/api/authenticate", json={"username": username, "password": password}
    )
    assert response.status_code == 401
    body = response.json()
    assert {k: body[k] for k in ("status", "error", "code", "message", "path")} == {
        "status": 401,
        "error": "Unauthorized",
        "code": "bad_credentials",
        "message": "Bad credentials",
        "path": "/api/authenticate",
    }
    assert response.headers["X-UtmStack-error"] == "Bad credentials"
    assert "Authorization" not in response.headers


async def test_unknown_user_costs_a_password_verification(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown user still runs one Argon2 verification, so timing reveals nothing."""
    calls: list[str] = []
    original = AsyncPasswordHasher.spend_equal_time

    async def spy(self: AsyncPasswordHasher, password: str, *, known_address: bool = False) -> None:
        calls.append(password)
        await original(self, password, known_address=known_address)

    monkeypatch.setattr(AsyncPasswordHasher, "spend_equal_time", spy)
    response = await harness.client.post(
        "/api/authenticate", json={"username": "ghost", "password": "whatever-password"}
    )
    assert response.status_code == 401
    assert calls == ["whatever-password"]


@pytest.mark.parametrize(
    "body",
    [
        {"username": "alice"},
        {"password": "x"},
        {"username": "", "password": "x"},
        {"username": "a" * 255, "password": "x"},
        {"username": "a" * 51, "password": "whatever-password"},
        {"username": "alice", "password": "x" * 1025},
        {"username": 5, "password": []},
        [],
    ],
    ids=[
        "no-password",
        "no-username",
        "empty-username",
        "long-username",
        "username-over-loginvm-50",
        "long-pw",
        "types",
        "list",
    ],
)
async def test_invalid_login_bodies_are_400_with_field_errors(
    harness: Harness, body: object
) -> None:
    """Body validation failures answer 400 with JHipster-like fieldErrors, never 500."""
    response = await harness.client.post("/api/authenticate", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "validation_failed"
    assert payload["fieldErrors"]
    assert all({"objectName", "field", "message"} <= set(e) for e in payload["fieldErrors"])


async def test_a_long_e_mail_address_is_a_login_attempt(harness: Harness) -> None:
    """Over LoginVM's 50 characters only an e-mail address can name a user: it is checked
    (401 when unknown), not refused as malformed; 50 characters exactly is a login."""
    for username in ("a" * 50, f"{'a' * 60}@example.com"):
        response = await harness.client.post(
            "/api/authenticate", json={"username": username, "password": "whatever-password"}
        )
        assert response.status_code == 401, (username, response.text)


async def test_malformed_json_is_400(harness: Harness) -> None:
    """A body that is not JSON is a 400, not a 500."""
    response = await harness.client.post(
        "/api/authenticate",
        content=b'{"username": "alice", "password":',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "validation_failed"


async def test_validation_errors_never_echo_the_password(harness: Harness) -> None:
    """A rejected body's error text does not contain the submitted password."""
    secret = "s3cret-" + "p" * 1100
    response = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": secret}
    )
    assert response.status_code == 400
    assert "s3cret" not in response.text


async def test_get_authenticate_returns_the_login_as_json_string(
    harness: Harness, user_token: str
) -> None:
    """GET /api/authenticate answers the caller's login as raw text/plain (issue 13:
    UTMStack's AccountResource.isAuthenticated returns a ResponseEntity<String>, which
    Spring writes as is)."""
    response = await harness.client.get("/api/authenticate", headers=bearer(user_token))
    assert response.status_code == 200
    assert response.text == "alice"
    assert response.headers["content-type"].startswith("text/plain")


async def test_request_without_authorization_gets_spring_401(harness: Harness) -> None:
    """No credentials: Spring Boot's 401 body from the reference, plus a message and header."""
    response = await harness.client.get("/api/account")
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == 401
    assert body["error"] == "Unauthorized"
    assert body["path"] == "/api/account"
    assert body["code"] == "credentials_missing"
    assert body["message"]
    assert body["timestamp"].endswith("+00:00")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authgate"'


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_bearer_scheme_is_case_insensitive(
    harness: Harness, user_token: str, scheme: str
) -> None:
    """The Authorization scheme word is matched without regard to case."""
    response = await harness.client.get(
        "/api/account", headers={"Authorization": f"{scheme} {user_token}"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "authorization", ["Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Bearer not-a-jwt"]
)
async def test_bad_authorization_headers_are_401(harness: Harness, authorization: str) -> None:
    """Empty bearer, other schemes and garbage all answer 401 with WWW-Authenticate."""
    response = await harness.client.get("/api/account", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="authgate"')


@pytest.mark.parametrize("header", ["Authorization", "Utm-Api-Key"])
async def test_two_credential_headers_are_refused(
    harness: Harness, user_token: str, admin_token: str, header: str
) -> None:
    """Two Authorization (or Utm-Api-Key) headers, even both valid, even the same one
    twice: 401. The first was believed, while a proxy or upstream reading the last one
    would see another caller."""
    if header == "Authorization":
        first, second = f"Bearer {user_token}", f"Bearer {admin_token}"
    else:
        first = (await harness.create_key(user_token))["key"]
        second = (await harness.create_key(admin_token))["key"]
    for pair in ((first, second), (second, first), (first, first)):
        response = await harness.client.get(
            "/api/account", headers=[(header, pair[0]), (header, pair[1])]
        )
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "invalid_token"
        assert "two Authorization or Utm-Api-Key headers" in response.json()["message"]
    one = await harness.client.get("/api/account", headers=[(header, second)])
    assert one.status_code == 200, one.text
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("TOKEN_REJECTED",)), PageRequest(size=50)
    )
    assert [event.reason for event in page.items].count("duplicate_credentials") == 3


async def test_expired_token_is_refused_with_reason(harness: Harness, user_token: str) -> None:
    """After its lifetime (plus leeway) a token gets 401 token_expired."""
    settings = harness.services.settings
    harness.clock.advance(seconds=settings.tokens.ttl_seconds + settings.tokens.leeway_seconds + 1)
    response = await harness.client.get("/api/account", headers=bearer(user_token))
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_cached_token_still_expires(harness: Harness, user_token: str) -> None:
    """A token verified (and cached) before its expiry is refused after it."""
    assert (await harness.client.get("/api/account", headers=bearer(user_token))).status_code == 200
    harness.clock.advance(seconds=harness.services.settings.tokens.ttl_seconds + 60)
    response = await harness.client.get("/api/account", headers=bearer(user_token))
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"


async def test_logout_revokes_the_presented_token_only(harness: Harness) -> None:
    """POST /api/logout: that token is refused at once; another session stays valid."""
    await harness.create_user("alice")
    first = await harness.login("alice", USER_PASSWORD)
    second = await harness.login("alice", USER_PASSWORD)
    assert (await harness.client.get("/api/account", headers=bearer(first))).status_code == 200

    response = await harness.client.post("/api/logout", headers=bearer(first))
    assert response.status_code == 204

    refused = await harness.client.get("/api/account", headers=bearer(first))
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"
    assert (await harness.client.get("/api/account", headers=bearer(second))).status_code == 200


async def test_a_logged_out_token_stays_refused_through_the_leeway_after_housekeeping(
    harness: Harness,
) -> None:
    """The time review: a token is accepted until its expiry plus the leeway (clock
    skew), but housekeeping forgot its revocation at the bare expiry: a logged-out token
    came back for the rest of the leeway, on a worker that ran housekeeping or started
    then. Revocations are kept, and loaded, until the codec refuses the token anyway."""
    await harness.create_user("alice")
    token = await harness.login("alice", USER_PASSWORD)
    assert (await harness.client.post("/api/logout", headers=bearer(token))).status_code == 204
    lifetime = harness.services.settings.tokens.ttl_seconds
    leeway = harness.services.settings.tokens.leeway_seconds
    assert leeway > 0
    harness.clock.advance(seconds=lifetime + 1)  # expired, inside the leeway
    await harness.services.tokens.delete_expired_revocations()
    await harness.services.tokens.load_revocations()  # as a worker starting now
    refused = await harness.client.get("/api/account", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"
    harness.clock.advance(seconds=leeway)  # past the leeway: expired, whatever the list
    assert await harness.services.tokens.delete_expired_revocations() == 1
    refused = await harness.client.get("/api/account", headers=bearer(token))
    assert refused.json()["code"] == "token_expired"


async def test_logout_all_revokes_every_token_of_the_caller(harness: Harness) -> None:
    """log out everywhere: all earlier tokens refused, a new login works again."""
    await harness.create_user("alice")
    await harness.create_user("bob")
    tokens = [await harness.login("alice", USER_PASSWORD) for _ in range(3)]
    bob = await harness.login("bob", USER_PASSWORD)

    response = await harness.client.post("/api/account/logout-all", headers=bearer(tokens[0]))
    assert response.status_code == 204

    for token in tokens:
        refused = await harness.client.get("/api/account", headers=bearer(token))
        assert refused.status_code == 401
        assert refused.json()["code"] == "token_revoked"
    assert (await harness.client.get("/api/account", headers=bearer(bob))).status_code == 200
    harness.clock.advance(milliseconds=1)
    fresh = await harness.login("alice", USER_PASSWORD)
    assert (await harness.client.get("/api/account", headers=bearer(fresh))).status_code == 200


async def test_revocation_survives_a_restart(
    harness: Harness, settings: Settings, clock: FakeClock
) -> None:
    """A logged-out token stays refused by a freshly started app on the same database."""
    await harness.create_user("alice")
    token = await harness.login("alice", USER_PASSWORD)
    assert (await harness.client.post("/api/logout", headers=bearer(token))).status_code == 204

    other = create_app(settings, clock=clock)
    async with other.router.lifespan_context(other):
        services = other.state.services
        with pytest.raises(TokenRevoked):
            await services.tokens.authenticate(token)


async def test_access_token_query_parameter_is_off_by_default(
    harness: Harness, user_token: str
) -> None:
    """?access_token= is ignored unless enabled (it leaks tokens into logs)."""
    response = await harness.client.get("/api/account", params={"access_token": user_token})
    assert response.status_code == 401


async def test_admin_endpoint_refuses_ordinary_user_with_403(
    harness: Harness, user_token: str
) -> None:
    """A valid token without ROLE_ADMIN gets 403 Forbidden in the same error shape."""
    response = await harness.client.get("/api/users", headers=bearer(user_token))
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "Forbidden"
    assert body["status"] == 403
    assert body["path"] == "/api/users"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


async def test_removed_role_takes_effect_on_existing_tokens(
    harness: Harness, admin_token: str
) -> None:
    """Taking ROLE_ADMIN away from a user makes their existing token lose admin rights."""
    await harness.create_user("carol", admin=True)
    carol = await harness.login("carol", USER_PASSWORD)
    assert (await harness.client.get("/api/users", headers=bearer(carol))).status_code == 200

    response = await harness.client.put(
        "/api/users/carol", json={"authorities": ["ROLE_USER"]}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert (await harness.client.get("/api/users", headers=bearer(carol))).status_code == 403
    assert (await harness.client.get("/api/account", headers=bearer(carol))).status_code == 200


async def test_admin_login_works_with_fixture_password(harness: Harness, admin_token: str) -> None:
    """The admin fixture's token carries both roles."""
    claims = jwt.decode(admin_token, options={"verify_signature": False})
    assert set(claims["auth"].split(",")) == {"ROLE_ADMIN", "ROLE_USER"}
    assert ADMIN_PASSWORD not in admin_token


async def test_jwks_publishes_the_verifying_key(harness: Harness, user_token: str) -> None:
    """The token verifies with the JWKS key named by its kid."""
    response = await harness.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = {key["kid"]: key for key in response.json()["keys"]}
    kid = jwt.get_unverified_header(user_token)["kid"]
    assert "d" not in keys[kid]
    public_key = jwt.PyJWK(keys[kid]).key
    claims = jwt.decode(user_token, public_key, algorithms=["ES256"], audience="authgate")
    assert claims["sub"] == "alice"
