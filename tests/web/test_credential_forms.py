"""The Settings UI's credential-setting forms need a password session, like the REST
routes (issue 10, item 3): an API key, even one with every scope, never gets a form
through, whether it is put in the session cookie or sent as a bearer token."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

import httpx2
import pytest

from authgate.security.principal import Principal
from authgate.services.api_key_views import KeySpec
from authgate.services.key_refs import key_ref
from authgate.storage.paging import PageRequest
from authgate.web.session import CSRF_FIELD, SECURE_COOKIES, csrf_secret, session_csrf_token
from tests.api.test_credential_routes import CREDENTIAL_ROUTES
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness
from tests.web.conftest import LOGIN, redirect_target

NEW_PASSWORD = "chosen-by-whoever-holds-the-key"
SERVICE_CREDENTIAL_ID = "Zx81QmT0aB3c"


def forms(key_id: str) -> list[tuple[str, dict[str, str | list[str]]]]:
    """Every credential-setting form, filled in as an attacker would."""
    return [
        (
            "/settings/account/password",
            {
                "current_password": ADMIN_PASSWORD,
                "new_password": NEW_PASSWORD,
                "confirm_password": NEW_PASSWORD,
            },
        ),
        (
            "/settings/users",
            {
                "login": "mallory",
                "email": "mallory@example.com",
                "password": NEW_PASSWORD,
                "roles": ["ROLE_ADMIN", "ROLE_USER"],
            },
        ),
        ("/settings/users/alice/edit", {"roles": ["ROLE_ADMIN", "ROLE_USER"], "activated": "on"}),
        (
            "/settings/users/admin/password",
            {"new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
        ),
        ("/settings/users/alice/reset-link", {}),
        ("/settings/api-keys", {"name": "minted", "expires_on": "", "allowed_ips": ""}),
        (f"/settings/api-keys/{key_id}/edit", {"name": "renamed", "allowed_ips": ""}),
        (f"/settings/api-keys/{key_id}/regenerate", {"grace_seconds": "0"}),
        (f"/settings/api-keys/{key_id}/resume", {}),
        ("/settings/account/tfa/start", {}),
        ("/settings/account/tfa/confirm", {"code": "123456"}),
        ("/settings/account/tfa/recovery-codes", {}),
        ("/settings/account/tfa/disable", {"password": ADMIN_PASSWORD, "code": "123456"}),
        ("/settings/users/alice/tfa/reset", {}),
        ("/settings/service-credentials", {"name": "minted", "endpoints": "api-keys.authenticate"}),
        (f"/settings/service-credentials/{SERVICE_CREDENTIAL_ID}/rotate", {"grace_seconds": "0"}),
        ("/settings/account/sessions/revoke-others", {}),
        ("/settings/account/logout-all", {"revoke_api_keys": "on"}),
    ]


def test_every_marked_form_is_attacked_here() -> None:
    paths = {path.replace("{key_id}", "1") for _, path in CREDENTIAL_ROUTES}
    attacked = {path.replace("/7/", "/1/") for path, _ in forms("7")}
    attacked = {p.replace("alice", "{login}").replace("admin/", "{login}/") for p in attacked}
    attacked = {p.replace(SERVICE_CREDENTIAL_ID, "{credential_id}") for p in attacked}
    expected = {p for p in paths if p.startswith("/settings/")}
    assert attacked == expected


@pytest.fixture
async def admin_key(harness: Harness) -> tuple[str, str]:
    """A key with every scope owned by ``admin``, and its id; ``alice`` exists too."""
    admin_id = await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    await harness.create_user("alice", USER_PASSWORD)
    expires = harness.clock() + timedelta(days=30)
    created = await harness.services.api_keys.create(
        admin_id,
        KeySpec(
            name="all-scopes", expires_at=expires, scopes=frozenset({"read", "write", "admin"})
        ),
    )
    return created.plaintext, created.view.public_id


async def unchanged(harness: Harness, generated_at: datetime) -> None:
    """No password, user, role or key changed."""
    login = await harness.client.post(
        "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert login.status_code == 200
    alice = await harness.services.users.get_user("alice")
    assert alice.authorities == frozenset({"ROLE_USER"})
    keys = await harness.services.api_keys.list_keys(None, PageRequest(size=50))
    assert [(k.name, k.generated_at) for k in keys.items] == [("all-scopes", generated_at)]
    page = await harness.services.users.list_users(PageRequest(size=50))
    assert sorted(user.login for user in page.items) == ["admin", "alice"]
    assert await harness.services.service_credentials.list_all(include_revoked=True) == []


async def test_a_key_in_the_session_cookie_or_header_gets_no_form_through(
    harness: Harness, admin_key: tuple[str, str]
) -> None:
    key, key_id = admin_key
    before = (await harness.services.api_keys.get(None, key_ref(key_id))).generated_at
    transport = httpx2.ASGITransport(app=harness.app, raise_app_exceptions=False)
    async with (
        httpx2.AsyncClient(
            transport=transport,
            base_url="https://testserver",
            cookies={SECURE_COOKIES.session: key},
        ) as with_cookie,
        httpx2.AsyncClient(
            transport=transport,
            base_url="https://testserver",
            headers={"Authorization": f"Bearer {key}"},
        ) as with_header,
    ):
        for path, data in forms(key_id):
            for client in (with_cookie, with_header):
                response = await client.post(path, data={**data, CSRF_FIELD: "x"})
                assert redirect_target(response).startswith(LOGIN), path
    await unchanged(harness, before)


async def test_a_page_refuses_a_key_principal_should_one_ever_reach_it(
    harness: Harness, admin_key: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should another kind of credential ever reach the pages (here: the key's principal
    handed over by a patched session check), the marked forms still refuse it (403),
    while unmarked ones (revoking a key) still work."""
    key, key_id = admin_key
    before = (await harness.services.api_keys.get(None, key_ref(key_id))).generated_at
    principal: Principal = await harness.services.key_auth.authenticate(
        key, ipaddress.ip_address("127.0.0.1")
    )
    assert not principal.is_password_session

    async def as_the_key(token: str) -> Principal:
        return principal

    monkeypatch.setattr(harness.services.tokens, "authenticate", as_the_key)
    csrf = session_csrf_token(csrf_secret(harness.services.server_secret), principal.credential_id)
    transport = httpx2.ASGITransport(app=harness.app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(
        transport=transport, base_url="https://testserver", cookies={SECURE_COOKIES.session: "x"}
    ) as client:
        for path, data in forms(key_id):
            response = await client.post(path, data={**data, CSRF_FIELD: csrf})
            assert response.status_code == 403, (path, response.text)
            assert "user session" in response.text
        await unchanged(harness, before)
        revoked = await client.post(f"/settings/api-keys/{key_id}/revoke", data={CSRF_FIELD: csrf})
        assert redirect_target(revoked).startswith("/settings/api-keys")
    assert (await harness.services.api_keys.get(None, key_ref(key_id))).status == "revoked"
