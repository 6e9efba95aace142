"""Fixtures for the SDK and CLI tests: a real ``authgate serve`` on loopback (one per
session: tests use their own names), clients of it, and the CLI's files in a temp dir."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest

from authgate.client import AsyncClient, Client, ClientConfig, PasswordCredentials
from tests.client.servers import ADMIN_PASSWORD, AuthgateServer
from tests.client.support import USER_PASSWORD, asgi_client, unique
from tests.conftest import Harness


@pytest.fixture(autouse=True)
def _no_utmstack_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's UTMSTACK_* variables must not leak into tests (AUTHGATE_* never do)."""
    for name in list(os.environ):
        if name.startswith("UTMSTACK_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def authgate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthgateServer]:
    """``authgate serve`` on a loopback port, shared by the tests of the session."""
    server = AuthgateServer(tmp_path_factory.mktemp("authgate-server"))
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin_client(authgate_server: AuthgateServer) -> Iterator[Client]:
    """A sync client of the real server, logged in (lazily) as its admin."""
    config = ClientConfig(authgate_server.url, PasswordCredentials("admin", ADMIN_PASSWORD))
    with Client(config) as client:
        yield client


@pytest.fixture
def fresh_user(admin_client: Client) -> str:
    """A new ROLE_USER on the real server (password USER_PASSWORD); returns its login."""
    login = unique("user")
    admin_client.create_user(login, email=f"{login}@example.com", password=USER_PASSWORD)
    return login


@pytest.fixture
async def alice(harness: Harness) -> AsyncIterator[AsyncClient]:
    """An async client of the in-process app, logged in (lazily) as the ROLE_USER alice."""
    await harness.create_user("alice", USER_PASSWORD)
    async with asgi_client(harness, PasswordCredentials("alice", USER_PASSWORD)) as client:
        yield client


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI keeps its files in a temporary dir, and finds no OS keyring."""
    directory = tmp_path / "client-config"
    monkeypatch.setenv("AUTHGATE_CLIENT_CONFIG_DIR", str(directory))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())  # type: ignore[no-untyped-call]
    yield directory
    keyring.set_keyring(previous)
