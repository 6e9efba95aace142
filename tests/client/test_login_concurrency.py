"""With a password, concurrent requests share one login: the first needs a token and
logs in, the others wait for it (a thread lock for ``Client``, an anyio lock for
``AsyncClient``), and a 401 that several requests get at once leads to one new login.
A login each would trip the server's login limits (429 "Too many logins from this
address at once") for a busy client."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import anyio
import httpx2

from authgate.client import AsyncClient, Client, ClientConfig, PasswordCredentials

BASE = "https://auth.example.com"
CONFIG = ClientConfig(BASE, PasswordCredentials("alice", "correct horse battery"))
LOGIN_DELAY = 0.05  # long enough for every request to find no token yet


def jwt(number: int) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"sub": "alice", "n": number, "exp": time.time() + 3600}
    return f"{part({'alg': 'ES256'})}.{part(claims)}.c2lnbmF0dXJl"


class RecordingServer:
    """Counts logins; accepts only the newest token (``revoke()`` retires it)."""

    def __init__(self) -> None:
        self.logins = 0
        self.live: str | None = None
        self._lock = threading.Lock()

    def login(self) -> httpx2.Response:
        with self._lock:
            self.logins += 1
            self.live = jwt(self.logins)
            return httpx2.Response(200, json={"id_token": self.live})

    def revoke(self) -> None:
        self.live = None

    def api(self, request: httpx2.Request) -> httpx2.Response:
        if request.headers.get("Authorization") != f"Bearer {self.live}":
            return httpx2.Response(401, json={"message": "Unauthorized"})
        return httpx2.Response(200, json={"login": "alice", "authorities": ["ROLE_USER"]})

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        """A login (slow enough for every request to find no token yet), or the API."""
        if request.url.path == "/api/authenticate":
            time.sleep(LOGIN_DELAY)
            return self.login()
        return self.api(request)

    async def handle_async(
        self, request: httpx2.Request, *, api_delay: float = 0.0
    ) -> httpx2.Response:
        """:meth:`handle` for the asynchronous client; ``api_delay`` holds API answers."""
        if request.url.path == "/api/authenticate":
            await anyio.sleep(LOGIN_DELAY)
            return self.login()
        response = self.api(request)
        await anyio.sleep(api_delay)
        return response


def test_threads_of_a_cold_client_log_in_once() -> None:
    """Eight threads' first requests: one login, every request answered."""
    server = RecordingServer()
    with Client(CONFIG, transport=httpx2.MockTransport(server.handle)) as client:
        results: list[str] = []
        barrier = threading.Barrier(8)

        def call() -> None:
            barrier.wait()
            results.append(client.account().login)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert results == ["alice"] * 8
    assert server.logins == 1


def test_threads_share_the_login_after_a_401() -> None:
    """The token is revoked: the threads that get 401 at once log in again once."""
    server = RecordingServer()
    revoked = threading.Event()
    refused = threading.Barrier(8, timeout=5)

    def handle(request: httpx2.Request) -> httpx2.Response:
        response = server.handle(request)
        if revoked.is_set() and response.status_code == 401:
            refused.wait()  # every thread has its 401 before any logs in again
        return response

    with Client(CONFIG, transport=httpx2.MockTransport(handle)) as client:
        client.login()
        server.revoke()
        revoked.set()
        results: list[str] = []

        def call() -> None:
            results.append(client.account().login)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert results == ["alice"] * 8
    assert server.logins == 2


async def test_tasks_of_a_cold_client_log_in_once() -> None:
    """A hundred gathered first requests: one login, every request answered."""
    server = RecordingServer()
    results: list[str] = []
    async with AsyncClient(CONFIG, transport=httpx2.MockTransport(server.handle_async)) as client:

        async def call() -> None:
            results.append((await client.account()).login)

        async with anyio.create_task_group() as tasks:
            for _ in range(100):
                tasks.start_soon(call)
    assert results == ["alice"] * 100
    assert server.logins == 1


async def test_tasks_share_the_login_after_a_401() -> None:
    """The token is revoked: twenty tasks that get 401 at once log in again once."""
    server = RecordingServer()

    async def handle(request: httpx2.Request) -> httpx2.Response:
        # Every task's request is out before any 401 is read.
        return await server.handle_async(request, api_delay=0.01)

    results: list[str] = []
    async with AsyncClient(CONFIG, transport=httpx2.MockTransport(handle)) as client:
        await client.login()
        server.revoke()

        async def call() -> None:
            results.append((await client.account()).login)

        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(call)
    assert results == ["alice"] * 20
    assert server.logins == 2
