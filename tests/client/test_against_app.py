"""The async SDK against the real authgate app, in-process (httpx2.ASGITransport)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from authgate.client import (
    Account,
    ApiKeyCredentials,
    AsyncClient,
    AuthenticationError,
    ClientConfig,
    ConflictError,
    CreatedApiKey,
    NotFoundError,
    PasswordCredentials,
    PermissionDeniedError,
    ValidationError,
)
from tests.client.support import USER_PASSWORD, asgi_client
from tests.conftest import ADMIN_PASSWORD, Harness


class CountingTransport(httpx2.AsyncBaseTransport):
    """ASGITransport that counts the requests per path."""

    def __init__(self, harness: Harness) -> None:
        self._inner = httpx2.ASGITransport(app=harness.app, raise_app_exceptions=False)
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        return await self._inner.handle_async_request(request)

    def logins(self) -> int:
        return self.paths.count("/api/authenticate")


def counting_client(
    harness: Harness, clock: Callable[[], float] = time.time
) -> tuple[AsyncClient, CountingTransport]:
    transport = CountingTransport(harness)
    config = ClientConfig("http://testserver", PasswordCredentials("alice", USER_PASSWORD))
    return AsyncClient(config, transport=transport, clock=clock), transport


def in_days(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


# -- method 1: password, token renewal -------------------------------------------------------


async def test_password_client_logs_in_lazily_and_reads_the_account(
    harness: Harness, alice: AsyncClient
) -> None:
    """The first call logs in; the account comes back as an Account dataclass."""
    assert alice.token is None
    account = await alice.account()
    assert isinstance(account, Account)
    assert account.login == "alice"
    assert account.authorities == ("ROLE_USER",)
    assert not account.is_admin
    assert alice.token is not None
    assert alice.token.expires_at is not None


async def test_token_is_reused_across_calls(harness: Harness) -> None:
    """Several calls with a valid token need one login."""
    await harness.create_user("alice", USER_PASSWORD)
    client, transport = counting_client(harness)
    async with client:
        for _ in range(3):
            await client.account()
    assert transport.logins() == 1


async def test_expired_token_is_renewed_transparently_after_a_401(harness: Harness) -> None:
    """When the server's clock passes exp, the 401 leads to one login and a success."""
    await harness.create_user("alice", USER_PASSWORD)
    client, transport = counting_client(harness)
    async with client:
        first = await client.account()
        settings = harness.services.settings
        harness.clock.advance(seconds=settings.tokens.ttl_seconds + 120)
        second = await client.account()
    assert first.login == second.login == "alice"
    assert transport.logins() == 2
    assert transport.paths.count("/api/account") == 3  # refused once, then accepted


async def test_token_near_exp_is_renewed_before_the_request(harness: Harness) -> None:
    """With the client's clock near exp, it logs in first: no refused request."""
    await harness.create_user("alice", USER_PASSWORD)
    client, transport = counting_client(harness, clock=lambda: harness.clock().timestamp())
    async with client:
        await client.account()
        harness.clock.advance(seconds=harness.services.settings.tokens.ttl_seconds - 10)
        await client.account()
    assert transport.logins() == 2
    assert transport.paths.count("/api/account") == 2


async def test_revoked_token_is_replaced_by_a_new_login(harness: Harness) -> None:
    """After 'log out everywhere', the next call logs in again and succeeds."""
    await harness.create_user("alice", USER_PASSWORD)
    client, transport = counting_client(harness)
    async with client:
        await client.request("POST", "/api/account/logout-all")
        harness.clock.advance(milliseconds=5)  # tokens issued after the revocation are valid
        account = await client.account()
    assert account.login == "alice"
    assert transport.logins() == 2


async def test_a_server_that_keeps_refusing_causes_one_extra_login_only(
    harness: Harness,
) -> None:
    """Tokens issued at the revocation instant stay refused: one retry, then the 401."""
    await harness.create_user("alice", USER_PASSWORD)
    client, transport = counting_client(harness)
    async with client:
        await client.request("POST", "/api/account/logout-all")
        with pytest.raises(AuthenticationError):
            await client.account()  # the fake clock stands still: the new token is refused
    assert transport.logins() == 2


async def test_wrong_password_raises_authentication_error(harness: Harness) -> None:
    """A bad password raises AuthenticationError with the server's message and code."""
    await harness.create_user("alice", USER_PASSWORD)
    async with asgi_client(harness, PasswordCredentials("alice", "not-the-password")) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.account()
    assert raised.value.code == "bad_credentials"
    assert "not-the-password" not in str(raised.value)


# -- method 2: API keys ----------------------------------------------------------------------


async def test_created_key_authenticates_with_both_headers(
    harness: Harness, alice: AsyncClient
) -> None:
    """A key created through the SDK works as Bearer and in Utm-Api-Key."""
    created = await alice.create_api_key(
        "ci-deploy", expires_at=in_days(30), allowed_ips=["127.0.0.1", "::1"], scopes=["read"]
    )
    assert isinstance(created, CreatedApiKey)
    assert created.key.startswith("agk_")
    assert created.allowed_ips == ("127.0.0.1", "::1")
    assert created.scopes == ("read",)
    assert created.status == "active"
    for header in ("authorization", "utm-api-key"):
        credentials = ApiKeyCredentials(created.key, header=header)
        async with asgi_client(harness, credentials) as keyed:
            assert (await keyed.account()).login == "alice"


async def test_key_lifecycle_list_show_update_rotate_revoke(
    harness: Harness, alice: AsyncClient
) -> None:
    """The typed helpers cover the key's life: list, get, update, regenerate, revoke."""
    created = await alice.create_api_key("build", expires_at=in_days(30))
    page = await alice.list_api_keys()
    assert [key.name for key in page] == ["build"]
    assert page.total == 1
    assert not page.has_next

    shown = await alice.get_api_key(created.id)
    assert shown.prefix == created.prefix
    updated = await alice.update_api_key(
        created.id, name="build-2", expires_at=in_days(10), allowed_ips=["10.0.0.0/8"]
    )
    assert (updated.name, updated.allowed_ips) == ("build-2", ("10.0.0.0/8",))

    rotated = await alice.regenerate_api_key(created.id, grace=timedelta(hours=1))
    assert rotated.key.startswith("agk_")
    assert rotated.key != created.key
    assert (await alice.get_api_key(created.id)).status == "rotating"

    await alice.revoke_api_key(created.id)
    async with asgi_client(harness, ApiKeyCredentials(rotated.key)) as keyed:
        with pytest.raises(AuthenticationError) as raised:
            await keyed.account()
    assert raised.value.code == "invalid_api_key"
    with pytest.raises(NotFoundError):
        await alice.get_api_key(str(uuid.uuid4()))


async def test_key_usage_lists_the_calls_made_with_it(harness: Harness, alice: AsyncClient) -> None:
    """api_key_usage returns UsageRecord entries for the key's requests."""
    created = await alice.create_api_key("usage", expires_at=in_days(30))
    async with asgi_client(harness, ApiKeyCredentials(created.key)) as keyed:
        await keyed.account()
    await harness.services.usage.flush()
    records = await alice.api_key_usage(created.id)
    assert [(r.method, r.endpoint, r.status) for r in records] == [("GET", "/api/account", 200)]
    assert records.items[0].api_key_name == "usage"
    assert records.total == 1


async def test_duplicate_and_invalid_keys_raise_conflict_and_validation(
    alice: AsyncClient,
) -> None:
    """409 for a duplicate name; 422 with field errors for a bad address."""
    await alice.create_api_key("dup", expires_at=in_days(30))
    with pytest.raises(ConflictError, match="already exists"):
        await alice.create_api_key("dup", expires_at=in_days(30))
    with pytest.raises(ValidationError) as raised:
        await alice.create_api_key("bad", expires_at=in_days(30), allowed_ips=["10.0.0.1/33"])
    assert raised.value.status_code == 422
    assert [error.field for error in raised.value.field_errors] == ["allowedIp[0]"]
    assert "Invalid CIDR format" in raised.value.field_errors[0].message


async def test_read_scoped_key_cannot_write(harness: Harness, alice: AsyncClient) -> None:
    """A read-only key gets PermissionDeniedError for a write."""
    created = await alice.create_api_key("ro", expires_at=in_days(30), scopes=["read"])
    async with asgi_client(harness, ApiKeyCredentials(created.key)) as keyed:
        with pytest.raises(PermissionDeniedError):
            await keyed.request("PUT", f"/api/api-keys/{created.id}", json={"name": "x"})


# -- users and audit (admins) ----------------------------------------------------------------


async def test_admin_helpers_for_users_and_audit(harness: Harness) -> None:
    """An admin lists, creates, updates and deletes users and reads the audit trail."""
    await harness.create_user("root", ADMIN_PASSWORD, admin=True)
    async with asgi_client(harness, PasswordCredentials("root", ADMIN_PASSWORD)) as admin:
        bob = await admin.create_user("bob", email="bob@example.com", password=USER_PASSWORD)
        assert bob.authorities == ("ROLE_USER",)
        updated = await admin.update_user("bob", first_name="Bob", activated=False)
        assert (updated.first_name, updated.activated) == ("Bob", False)
        assert (await admin.get_user("bob")).email == "bob@example.com"
        logins = [user.login for user in await admin.list_users(size=100)]
        assert sorted(logins) == ["bob", "root"]
        await admin.delete_user("bob")
        with pytest.raises(NotFoundError):
            await admin.get_user("bob")

        await harness.services.audit.flush()
        events = await admin.audit_events(types=["USER_CREATED", "USER_DELETED"], actor="root")
        assert sorted(event.type for event in events) == ["USER_CREATED", "USER_DELETED"]
        assert {event.actor for event in events} == {"root"}
        assert events.items[0].type == "USER_DELETED"  # newest first


async def test_sdk_creates_a_user_without_password(harness: Harness) -> None:
    """The SDK follows issue 13's user shapes: ``create_user`` without a password answers
    the inactive user and, without SMTP, its single-use ``reset_link``; users carry
    ``created_by``/``last_modified_by``."""
    await harness.create_user("root", ADMIN_PASSWORD, admin=True)
    async with asgi_client(harness, PasswordCredentials("root", ADMIN_PASSWORD)) as admin:
        ivan = await admin.create_user("ivan", email="ivan@example.com")
        assert ivan.activated is False
        assert ivan.reset_link is not None
        assert "/settings/reset?key=" in ivan.reset_link
        again = await admin.get_user("ivan")
        assert again.reset_link is None
        assert (again.created_by, again.last_modified_by) == ("root", "root")


async def test_ordinary_user_cannot_use_admin_helpers(alice: AsyncClient) -> None:
    """ROLE_USER gets PermissionDeniedError from users and audit."""
    with pytest.raises(PermissionDeniedError):
        await alice.list_users()
    with pytest.raises(PermissionDeniedError):
        await alice.audit_events()


async def test_generic_request_reaches_any_endpoint(alice: AsyncClient) -> None:
    """request() calls endpoints without a typed helper and returns the response."""
    response = await alice.request("GET", "/api/authenticate")
    assert response.text == "alice"
    ping = await alice.request("GET", "api/ping")
    assert ping.status_code == 200


async def test_logout_revokes_the_token_in_use(harness: Harness, alice: AsyncClient) -> None:
    """logout() revokes the session's token; the client logs in anew afterwards."""
    await alice.account()
    old = alice.token
    assert old is not None
    await alice.logout()
    harness.clock.advance(milliseconds=5)
    await alice.account()
    assert alice.token is not None
    assert alice.token.value != old.value
