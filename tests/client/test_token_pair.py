"""v12 token pairs against a scripted server: no network, an injected clock.

The server refuses a retired refresh token (as the real one does, ending the session),
so two refreshes with one token show up as a second refresh request.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import anyio
import httpx2
import pytest

from authgate import __version__
from authgate.client import (
    APIError,
    AsyncClient,
    Client,
    ClientConfig,
    Credentials,
    PasswordCredentials,
    RefreshTokenCredentials,
    SessionEndedError,
    V12Credentials,
)

BASE = "https://auth.example.com"
NOW = 1_900_000_000.0
REFRESH = "/api/v1/auth/refresh"
LOGIN = "/api/v1/auth/login"
V10_LOGIN = "/api/authenticate"


def jwt(exp: float) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256'})}.{part({'sub': 'alice', 'exp': exp})}.c2ln"


class SteppingClock:
    """Reads ``now``; once armed, the next read returns ``now`` and moves it to ``then``:
    the renewal time passes right after whoever reads first."""

    def __init__(self) -> None:
        self.now = NOW
        self.then: float | None = None

    def __call__(self) -> float:
        now = self.now
        if self.then is not None:
            self.now, self.then = self.then, None
        return now


class FakeServer:
    """Refreshes rotate the refresh token; a retired one is refused (reuse)."""

    def __init__(self) -> None:
        self.live = "refresh-0"
        self.refreshes: list[str] = []
        self.requests: list[httpx2.Request] = []

    def answer(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if request.url.path == V10_LOGIN:
            return httpx2.Response(200, json={"id_token": jwt(NOW + 1000)})
        if request.url.path in (REFRESH, LOGIN):
            if request.url.path == REFRESH:
                presented = json.loads(request.content)["refresh_token"]
                self.refreshes.append(presented)
                if presented != self.live:
                    return httpx2.Response(401, json={"error": "invalid refresh token"})
            self.live = f"refresh-{len(self.refreshes) + 1}"
            return httpx2.Response(
                200, json={"access_token": jwt(NOW + 1000), "refresh_token": self.live}
            )
        return httpx2.Response(200, json={"ok": True})


def resumed_config() -> ClientConfig:
    # The access token is due for renewal at NOW + 70 (30 s margin before its exp).
    return ClientConfig(BASE, RefreshTokenCredentials("refresh-0", jwt(NOW + 100)))


class HoldFirst:
    """Holds the first request in the transport until released."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        self._held = False

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        if not self._held:
            self._held = True
            self.first_arrived.set()
            self.release.wait(timeout=5)
        return self.server.answer(request)


def test_threads_refresh_once_when_the_renewal_time_passes_between_them() -> None:
    """A request that found its token fresh must not refresh without the lock when the
    renewal time passes a moment later, while another takes the lock and refreshes."""
    server, clock = FakeServer(), SteppingClock()
    hold = HoldFirst(server)
    transport = httpx2.MockTransport(hold.handle)
    errors: list[BaseException] = []

    with Client(resumed_config(), transport=transport, clock=clock) as client:

        def call() -> None:
            try:
                client.request("GET", "/api/v1/auth/me")
            except BaseException as error:  # noqa: BLE001 - reported by the assertion
                errors.append(error)

        clock.then = NOW + 80
        first = threading.Thread(target=call)
        first.start()
        assert hold.first_arrived.wait(timeout=5)
        second = threading.Thread(target=call)
        second.start()
        second.join(timeout=5)
        hold.release.set()
        first.join(timeout=5)

    assert errors == []
    assert server.refreshes == ["refresh-0"]


async def test_tasks_refresh_once_when_the_renewal_time_passes_between_them() -> None:
    server, clock = FakeServer(), SteppingClock()
    first_arrived, release = anyio.Event(), anyio.Event()
    held = False

    async def handle(request: httpx2.Request) -> httpx2.Response:
        nonlocal held
        if not held:
            held = True
            first_arrived.set()
            with anyio.move_on_after(5):
                await release.wait()
        return server.answer(request)

    transport = httpx2.MockTransport(handle)
    async with AsyncClient(resumed_config(), transport=transport, clock=clock) as client:
        clock.then = NOW + 80
        async with anyio.create_task_group() as group:
            group.start_soon(client.request, "GET", "/api/v1/auth/me")
            with anyio.fail_after(5):
                await first_arrived.wait()
            await client.request("GET", "/api/v1/auth/me")
            release.set()

    assert server.refreshes == ["refresh-0"]


def test_a_refused_refresh_of_a_resumed_session_raises_session_ended() -> None:
    """The first failure after the session ended already says so, not only the next."""
    server = FakeServer()
    server.live = "someone-else-rotated-it"
    transport = httpx2.MockTransport(server.answer)
    config = ClientConfig(BASE, RefreshTokenCredentials("refresh-0"))
    with Client(config, transport=transport, clock=SteppingClock()) as client:
        with pytest.raises(SessionEndedError):
            client.request("GET", "/api/v1/auth/me")
        with pytest.raises(SessionEndedError):
            client.request("GET", "/api/v1/auth/me")


def test_a_passing_refresh_failure_keeps_the_session() -> None:
    """A 503 (or 429) to a refresh is the server's moment, not the session's end: the
    call fails, and the next one refreshes with the same refresh token."""
    server = FakeServer()
    outage = [True]

    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == REFRESH and outage.pop() if outage else False:
            return httpx2.Response(503, json={"error": "unavailable"})
        return server.answer(request)

    config = ClientConfig(BASE, RefreshTokenCredentials("refresh-0"))
    with Client(config, transport=httpx2.MockTransport(answer), clock=SteppingClock()) as client:
        with pytest.raises(APIError) as failed:
            client.request("GET", "/api/v1/auth/me")
        assert not isinstance(failed.value, SessionEndedError)
        assert client.request("GET", "/api/v1/auth/me").status_code == 200
    assert server.refreshes == ["refresh-0"]


@pytest.mark.parametrize(
    ("credentials", "first"),
    [
        (RefreshTokenCredentials("refresh-0"), REFRESH),
        (V12Credentials("alice", "correct horse battery"), LOGIN),
        (PasswordCredentials("alice", "correct horse battery"), V10_LOGIN),
    ],
)
def test_logins_and_refreshes_send_the_clients_user_agent(
    credentials: Credentials, first: str
) -> None:
    """The server lists a session's User-Agent from its login (or refresh)."""
    server = FakeServer()
    transport = httpx2.MockTransport(server.answer)
    config = ClientConfig(BASE, credentials)
    with Client(config, transport=transport, clock=SteppingClock()) as client:
        client.request("GET", "/api/v1/auth/me")
    assert [request.url.path for request in server.requests] == [first, "/api/v1/auth/me"]
    agents = {request.headers.get("User-Agent") for request in server.requests}
    assert agents == {f"authgate-client/{__version__}"}
