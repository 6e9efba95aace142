"""The client's timeout bounds the requests its auth flows send themselves (logins,
v12 refreshes, second-factor steps), not only the request asked for: httpx gives its
timeout to that one alone, and a server that accepts and never answers would
otherwise hold a login, and the client's lock, forever."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from authgate.client import (
    AsyncClient,
    Client,
    ClientConfig,
    Credentials,
    PasswordCredentials,
    RefreshTokenCredentials,
    TransportError,
    V12Credentials,
)
from tests.client.stalling_server import StallingServer

TIMEOUT = 0.3
# Far above TIMEOUT, far below forever: a client still waiting by then ignores it.
BOUND = 5.0

PASSWORD = PasswordCredentials("alice", "correct horse battery")
V12 = V12Credentials("alice", "correct horse battery")

# name: (credentials, what the server answers, the path it never answers)
SCENARIOS: dict[str, tuple[Credentials, dict[str, tuple[int, dict[str, Any]]], str]] = {
    "password login": (PASSWORD, {}, "/api/authenticate"),
    "second factor": (
        PASSWORD,
        {"/api/authenticate": (200, {"id_token": "pre-verification", "authenticated": False})},
        "/api/tfa/verify-code",
    ),
    "v12 login": (V12, {}, "/api/v1/auth/login"),
    "v12 second factor": (
        V12,
        {
            "/api/v1/auth/login": (
                200,
                {"tfa_required": True, "pre_auth_token": "pre-auth", "tfa_type": "totp"},
            )
        },
        "/api/v1/auth/tfa/verify-code",
    ),
    "v12 refresh": (RefreshTokenCredentials("refresh-0"), {}, "/api/v1/auth/refresh"),
}


def code() -> str:
    return "123456"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_hanging_auth_step_times_out(scenario: str) -> None:
    """Client: the step the server never answers fails with TransportError after the
    client's timeout, instead of blocking the calling thread for good."""
    credentials, answers, hanging_path = SCENARIOS[scenario]
    outcome: list[BaseException | None] = []
    with StallingServer(answers) as server:
        config = ClientConfig(server.url, credentials, timeout=TIMEOUT)

        def call() -> None:
            with Client(config, second_factor=code) as client:
                try:
                    client.account()
                except BaseException as error:  # noqa: BLE001 - handed to the test thread
                    outcome.append(error)
                else:
                    outcome.append(None)

        started = time.monotonic()
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(timeout=BOUND)
        hung = thread.is_alive()
        elapsed = time.monotonic() - started
    thread.join(timeout=5)  # released by the server's closing, if it hung
    assert not hung, f"{scenario}: still waiting after {BOUND} s"
    assert server.requests[-1][1] == hanging_path
    assert len(outcome) == 1
    assert isinstance(outcome[0], TransportError)
    assert "Timeout" in str(outcome[0])
    assert elapsed < BOUND


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_a_hanging_auth_step_times_out_async(scenario: str) -> None:
    """AsyncClient: the same, awaited."""
    credentials, answers, hanging_path = SCENARIOS[scenario]
    with StallingServer(answers) as server:
        config = ClientConfig(server.url, credentials, timeout=TIMEOUT)
        async with AsyncClient(config, second_factor=code) as client:
            with anyio.fail_after(BOUND), pytest.raises(TransportError, match="Timeout"):
                await client.account()
    assert server.requests[-1][1] == hanging_path
