"""The async SDK's v12 token pairs (issue 17) and the public password reset (issue 13)
against the real authgate app, in-process (httpx2.ASGITransport)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlparse

import anyio
import httpx2
import pytest

from authgate.client import (
    AsyncClient,
    ClientConfig,
    Credentials,
    NotFoundError,
    PasswordCredentials,
    RefreshTokenCredentials,
    SecondFactorRejected,
    SecondFactorRequired,
    SessionEndedError,
    TokenPair,
    V12Credentials,
    ValidationError,
)
from tests.api.v1.test_v12_second_factor import alice_with_totp, not_the_code, totp_now
from tests.client.support import USER_PASSWORD
from tests.conftest import ADMIN_PASSWORD, Harness, bearer
from tests.conftest import USER_PASSWORD as HARNESS_USER_PASSWORD

REFRESH = "/api/v1/auth/refresh"
LOGIN = "/api/v1/auth/login"


class CountingTransport(httpx2.AsyncBaseTransport):
    """ASGITransport that records the paths and whether each request carried credentials."""

    def __init__(self, harness: Harness) -> None:
        self._inner = httpx2.ASGITransport(app=harness.app, raise_app_exceptions=False)
        self.paths: list[str] = []
        self.authorized: list[bool] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.paths.append(request.url.path)
        self.authorized.append("authorization" in request.headers)
        return await self._inner.handle_async_request(request)


def v12_client(
    harness: Harness,
    credentials: Credentials,
    *,
    pairs: list[TokenPair] | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[AsyncClient, CountingTransport]:
    transport = CountingTransport(harness)
    options = {"clock": clock} if clock is not None else {}
    client = AsyncClient(
        ClientConfig("http://testserver", credentials),
        transport=transport,
        on_tokens=pairs.append if pairs is not None else None,
        **options,  # type: ignore[arg-type]
    )
    return client, transport


async def refresh_status(harness: Harness, refresh_token: str) -> int:
    response = await harness.client.post(REFRESH, json={"refresh_token": refresh_token})
    return response.status_code


async def test_v12_flow_login_call_refresh_sessions_revoke_logout(harness: Harness) -> None:
    """Issue 17's client flow: login → call → refresh (the retired refresh token is
    refused) → list sessions → revoke another session (its refresh fails) → logout
    (the access token and the refresh token are refused afterwards)."""
    await harness.create_user("alice", USER_PASSWORD)
    pairs: list[TokenPair] = []
    client, transport = v12_client(
        harness, V12Credentials("alice@example.com", USER_PASSWORD), pairs=pairs
    )
    other_pairs: list[TokenPair] = []
    other, other_transport = v12_client(
        harness, V12Credentials("alice", USER_PASSWORD), pairs=other_pairs
    )
    async with client, other:
        me = await client.me()  # logs in first
        assert (me.email, me.status) == ("alice@example.com", "active")
        assert transport.paths[:2] == [LOGIN, "/api/v1/auth/me"]
        await other.me()

        # The server's clock passes the access token's exp: one 401, one refresh.
        harness.clock.advance(seconds=harness.services.settings.tokens.ttl_seconds + 60)
        assert (await client.me()).id == me.id
        assert transport.paths.count(REFRESH) == 1
        assert transport.paths.count(LOGIN) == 1
        assert len(pairs) == 2
        retired, current = pairs[0].refresh_token, pairs[1].refresh_token
        assert retired != current

        sessions = await client.sessions()
        assert len(sessions) == 2
        (mine,) = [s for s in sessions if s.current]
        (theirs,) = [s for s in sessions if not s.current]
        assert mine.created_at is not None
        assert mine.last_used_at is not None

        await client.revoke_session(theirs.id)
        assert await refresh_status(harness, other_pairs[-1].refresh_token) == 401
        with pytest.raises(NotFoundError):
            await client.revoke_session(theirs.id)  # already gone
        # The other client knows the password: its refused refresh leads to a new login.
        await other.me()
        assert other_transport.paths.count(LOGIN) == 2

        access = client.token
        assert access is not None
        await client.logout()
        assert client.token is None
        refused = await harness.client.get("/api/v1/auth/me", headers=bearer(access.value))
        assert refused.status_code == 401
        assert await refresh_status(harness, current) == 401
        assert await refresh_status(harness, retired) == 401


async def test_a_retired_refresh_token_ends_the_session_and_the_client_logs_in_again(
    harness: Harness,
) -> None:
    """Presenting the refresh token a refresh retired is reuse (past the server's reuse
    interval): the server ends the session (its access token too). A client with the
    password logs in again."""
    await harness.create_user("alice", USER_PASSWORD)
    pairs: list[TokenPair] = []
    client, transport = v12_client(harness, V12Credentials("alice", USER_PASSWORD), pairs=pairs)
    async with client:
        await client.me()
        harness.clock.advance(seconds=harness.services.settings.tokens.ttl_seconds + 60)
        await client.me()
        harness.clock.advance(
            seconds=harness.services.settings.tokens.refresh_reuse_interval_seconds
        )
        assert await refresh_status(harness, pairs[0].refresh_token) == 401
        assert (await client.me()).email == "alice@example.com"
        assert transport.paths.count(LOGIN) == 2
        assert len(await client.sessions()) == 1


async def test_token_near_expiry_is_refreshed_before_the_request(harness: Harness) -> None:
    """With the client's clock near exp, it refreshes first: no refused request."""
    await harness.create_user("alice", USER_PASSWORD)
    client, transport = v12_client(
        harness,
        V12Credentials("alice", USER_PASSWORD),
        clock=lambda: harness.clock().timestamp(),
    )
    async with client:
        await client.me()
        harness.clock.advance(seconds=harness.services.settings.tokens.ttl_seconds - 10)
        await client.me()
    assert transport.paths == [LOGIN, "/api/v1/auth/me", REFRESH, "/api/v1/auth/me"]


async def test_concurrent_requests_share_one_refresh(harness: Harness) -> None:
    """Refreshing twice with one refresh token is reuse past the server's reuse
    interval, and ends the session, so requests that find the token expiring together
    wait for one refresh."""
    await harness.create_user("alice", USER_PASSWORD)
    client, transport = v12_client(
        harness,
        V12Credentials("alice", USER_PASSWORD),
        clock=lambda: harness.clock().timestamp(),
    )
    async with client:
        await client.me()
        harness.clock.advance(seconds=harness.services.settings.tokens.ttl_seconds - 10)
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(client.me)
        assert transport.paths.count(REFRESH) == 1
        assert len(await client.sessions()) == 1


async def test_a_stored_refresh_token_resumes_the_session_and_ends_with_it(
    harness: Harness,
) -> None:
    """RefreshTokenCredentials (what authgate-client stores) refresh on first use; once
    the session is logged out there is no password to fall back on."""
    await harness.create_user("alice", USER_PASSWORD)
    pairs: list[TokenPair] = []
    first, _ = v12_client(harness, V12Credentials("alice", USER_PASSWORD), pairs=pairs)
    async with first:
        await first.login()
    resumed_pairs: list[TokenPair] = []
    resumed, transport = v12_client(
        harness, RefreshTokenCredentials(pairs[-1].refresh_token), pairs=resumed_pairs
    )
    async with resumed:
        assert (await resumed.me()).email == "alice@example.com"
        assert transport.paths[0] == REFRESH
        await resumed.logout()
        with pytest.raises(SessionEndedError):
            await resumed.me()
    assert await refresh_status(harness, resumed_pairs[-1].refresh_token) == 401
    assert pairs[-1].refresh_token not in repr(pairs[-1])
    assert pairs[-1].refresh_token not in repr(RefreshTokenCredentials(pairs[-1].refresh_token))


async def test_change_password_through_v12(harness: Harness) -> None:
    """change_password: a wrong current password is a 400 (ValidationError; a 401 would
    make the client refresh and send it again); the new one logs in."""
    await harness.create_user("alice", USER_PASSWORD)
    client, transport = v12_client(harness, V12Credentials("alice", USER_PASSWORD))
    async with client:
        with pytest.raises(ValidationError, match="current password is incorrect"):
            await client.change_password("not-the-password", "a-brand-new-password-42")
        assert transport.paths.count("/api/v1/auth/change-password") == 1
        await client.change_password(USER_PASSWORD, "a-brand-new-password-42")
    response = await harness.client.post(
        LOGIN, json={"login": "alice", "password": "a-brand-new-password-42"}
    )
    assert response.status_code == 200


async def test_a_v12_login_with_a_second_factor_asks_the_hook(harness: Harness) -> None:
    """A user with TOTP gets ``tfa_required`` and a pre-auth token from the v12 login: the
    client asks its ``second_factor`` hook, sends the code to verify-code and goes on with
    the pair it answers. Without a hook, or with a wrong code, the login fails clearly."""
    secret, _ = await alice_with_totp(harness)
    credentials = V12Credentials("alice", HARNESS_USER_PASSWORD)

    def client_with(code: Callable[[], str] | None) -> AsyncClient:
        return AsyncClient(
            ClientConfig("http://testserver", credentials),
            transport=httpx2.ASGITransport(app=harness.app),
            second_factor=code,
        )

    async with client_with(None) as client:
        with pytest.raises(SecondFactorRequired, match="totp"):
            await client.me()
    async with client_with(lambda: not_the_code(totp_now(harness, secret))) as client:
        with pytest.raises(SecondFactorRejected):
            await client.me()
    asked: list[str] = []

    def code() -> str:
        asked.append(totp_now(harness, secret))
        return asked[-1]

    async with client_with(code) as client:
        me = await client.me()
        sessions = await client.sessions()
    assert me.email == "alice@example.com"
    assert len(asked) == 1
    assert [session.current for session in sessions].count(True) == 1


# -- issue 13: the public password reset ------------------------------------------------------


async def test_password_reset_is_sent_without_credentials(harness: Harness) -> None:
    """request_password_reset and finish_password_reset are public: the client neither
    logs in nor sends its credentials. The key comes from a user created without a
    password (the server has no SMTP, so the admin gets the link)."""
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    admin, _ = v12_client(harness, PasswordCredentials("admin", ADMIN_PASSWORD))
    async with admin:
        created = await admin.create_user("bob", email="bob@example.com")
    assert created.reset_link is not None
    (key,) = parse_qs(urlparse(created.reset_link).query)["key"]

    client, transport = v12_client(harness, PasswordCredentials("nobody", "not-a-password"))
    async with client:
        await client.request_password_reset("bob@example.com")
        await client.request_password_reset("unknown@example.com")
        await client.finish_password_reset(key, "bobs-chosen-password-42")
        with pytest.raises(ValidationError):  # single use
            await client.finish_password_reset(key, "another-password-4242")
    assert "/api/authenticate" not in transport.paths
    assert not any(transport.authorized)
    bob = await harness.client.post(
        LOGIN, json={"login": "bob", "password": "bobs-chosen-password-42"}
    )
    assert bob.status_code == 200
