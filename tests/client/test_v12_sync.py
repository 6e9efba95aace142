"""The blocking SDK's v12 token pairs (issue 17) and password reset (issue 13) against
``authgate serve`` on loopback."""

from __future__ import annotations

import threading
import time

import httpx2
import pytest

from authgate.client import (
    Client,
    ClientConfig,
    PasswordCredentials,
    TokenPair,
    V12Credentials,
    ValidationError,
)
from tests.client.servers import ADMIN_PASSWORD, AuthgateServer
from tests.client.support import USER_PASSWORD, unique

pytestmark = pytest.mark.slow


class Clock:
    """The client's clock, moved ahead to make its access token look old."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


def refresh_status(server: AuthgateServer, refresh_token: str) -> int:
    response = httpx2.post(
        f"{server.url}/api/v1/auth/refresh", json={"refresh_token": refresh_token}
    )
    return response.status_code


def test_v12_flow_with_the_blocking_client(
    authgate_server: AuthgateServer, fresh_user: str
) -> None:
    """login → call → refresh before expiry → sessions → revoke another → logout."""
    clock = Clock()
    pairs: list[TokenPair] = []
    config = ClientConfig(authgate_server.url, V12Credentials(fresh_user, USER_PASSWORD))
    other_pairs: list[TokenPair] = []
    with (
        Client(config, clock=clock, on_tokens=pairs.append) as client,
        Client(config, on_tokens=other_pairs.append) as other,
    ):
        token = client.login()
        assert token.expires_at is not None
        assert client.me().email == f"{fresh_user}@example.com"
        other.me()

        clock.ahead = 3600.0  # past the access token's exp for the client
        client.me()
        assert len(pairs) == 2
        assert pairs[1].refresh_token != pairs[0].refresh_token

        sessions = client.sessions()
        assert sorted(s.current for s in sessions) == [False, True]
        (theirs,) = [s for s in sessions if not s.current]
        client.revoke_session(theirs.id)
        assert refresh_status(authgate_server, other_pairs[-1].refresh_token) == 401

        client.logout()
    me = httpx2.get(
        f"{authgate_server.url}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {pairs[-1].access.value}"},
    )
    assert me.status_code == 401
    assert refresh_status(authgate_server, pairs[-1].refresh_token) == 401


def test_threads_share_one_refresh(authgate_server: AuthgateServer, fresh_user: str) -> None:
    """Threads that find the token old together refresh once (a second refresh with the
    same token is reuse past the server's reuse interval, and ends the session)."""
    clock = Clock()
    pairs: list[TokenPair] = []
    config = ClientConfig(authgate_server.url, V12Credentials(fresh_user, USER_PASSWORD))
    with Client(config, clock=clock, on_tokens=pairs.append) as client:
        client.login()
        clock.ahead = 3600.0
        errors: list[BaseException] = []

        def call() -> None:
            try:
                client.me()
            except BaseException as error:  # noqa: BLE001 - reported by the assertion
                errors.append(error)

        threads = [threading.Thread(target=call) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(pairs) == 2  # the login and one refresh
        assert len(client.sessions()) == 1


def test_password_reset_with_the_blocking_client(authgate_server: AuthgateServer) -> None:
    """An admin creates a user without a password (no SMTP: the link comes back); the
    user sets one with the key, which then no longer works."""
    admin = ClientConfig(authgate_server.url, PasswordCredentials("admin", ADMIN_PASSWORD))
    login = unique("reset")
    with Client(admin) as client:
        created = client.create_user(login, email=f"{login}@example.com")
        client.request_password_reset(f"{login}@example.com")
    assert created.reset_link is not None
    key = httpx2.URL(created.reset_link).params["key"]
    nobody = ClientConfig(authgate_server.url, PasswordCredentials("nobody", "not-a-password"))
    with Client(nobody) as client:
        client.finish_password_reset(key, "a-password-of-their-own")
        with pytest.raises(ValidationError):
            client.finish_password_reset(key, "a-password-of-their-own")
    mine = ClientConfig(authgate_server.url, V12Credentials(login, "a-password-of-their-own"))
    with Client(mine) as client:
        assert client.me().email == f"{login}@example.com"
