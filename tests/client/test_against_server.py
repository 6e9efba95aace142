"""The blocking SDK against real servers on loopback: ``authgate serve``, and TLS."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from authgate.client import (
    ApiKeyCredentials,
    AuthenticationError,
    Client,
    ClientConfig,
    PasswordCredentials,
    TransportError,
)
from tests.certificates import write_certificates
from tests.client import utmstack_fake as utm
from tests.client.servers import AuthgateServer, clean_environment, serve_asgi
from tests.client.support import USER_PASSWORD, unique
from tests.processes import free_port

pytestmark = pytest.mark.slow

FIVE_LINES = textwrap.dedent(
    """\
    from authgate.client import Client

    with Client() as client:
        account = client.account()
        print(account.login, ",".join(account.authorities))
    """
)


def user_client(server: AuthgateServer, login: str, **options: object) -> Client:
    config = ClientConfig(server.url, PasswordCredentials(login, USER_PASSWORD))
    return Client(config, **options)  # type: ignore[arg-type]


def test_five_line_script_works_from_the_environment(
    authgate_server: AuthgateServer, fresh_user: str, tmp_path: Path
) -> None:
    """With AUTHGATE_URL and AUTHGATE_API_KEY exported, a five-line script runs as is."""
    with user_client(authgate_server, fresh_user) as client:
        created = client.create_api_key(
            unique("script"), expires_at=datetime.now(UTC) + timedelta(days=1)
        )
    script = tmp_path / "whoami.py"
    script.write_text(FIVE_LINES, encoding="utf-8")
    assert len(FIVE_LINES.strip().splitlines()) == 5
    env = clean_environment()
    env.update({"AUTHGATE_URL": authgate_server.url, "AUTHGATE_API_KEY": created.key})
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{fresh_user} ROLE_USER"


def test_password_client_survives_revocation(
    authgate_server: AuthgateServer, fresh_user: str
) -> None:
    """After 'log out everywhere' the next call logs in again, transparently."""
    with user_client(authgate_server, fresh_user) as client:
        client.account()
        first = client.token
        client.request("POST", "/api/account/logout-all")
        time.sleep(0.01)  # tokens issued after the revocation instant are valid
        assert client.account().login == fresh_user
        assert client.token is not None
        assert first is not None
        assert client.token.value != first.value


def test_password_client_renews_before_expiry(
    authgate_server: AuthgateServer, fresh_user: str
) -> None:
    """With the client's clock near the token's exp, it logs in again before calling."""
    offset = [0.0]
    with user_client(authgate_server, fresh_user, clock=lambda: time.time() + offset[0]) as client:
        client.account()
        first = client.token
        assert first is not None
        assert first.expires_at is not None
        offset[0] = first.expires_at.timestamp() - time.time() - 5  # 5 s before exp
        assert client.account().login == fresh_user
        assert client.token is not None
        assert client.token.value != first.value


def test_revoked_key_is_refused_with_the_servers_message(
    authgate_server: AuthgateServer, fresh_user: str
) -> None:
    """A revoked key raises AuthenticationError carrying authgate's code and message."""
    with user_client(authgate_server, fresh_user) as client:
        created = client.create_api_key(
            unique("rev"), expires_at=datetime.now(UTC) + timedelta(days=1)
        )
        client.revoke_api_key(created.id)
    keyed = Client(ClientConfig(authgate_server.url, ApiKeyCredentials(created.key)))
    with keyed, pytest.raises(AuthenticationError) as raised:
        keyed.account()
    assert raised.value.code == "invalid_api_key"
    assert raised.value.message == "Invalid API key"


def test_unreachable_server_raises_transport_error() -> None:
    """Nothing listening: TransportError within the configured timeout."""
    config = ClientConfig(f"http://127.0.0.1:{free_port()}", ApiKeyCredentials("k"), timeout=2)
    with Client(config) as client, pytest.raises(TransportError):
        client.account()


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The fake UTMStack over HTTPS with a certificate from a private CA."""
    ca_file, cert_file, key_file = write_certificates(tmp_path)
    fake = utm.FakeUtmStack(version="v10")
    with serve_asgi(fake.app(), ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as url:
        yield url, ca_file


def tls_client(url: str, **config: object) -> Client:
    credentials = PasswordCredentials(utm.USER, utm.PASSWORD)
    return Client(ClientConfig(url, credentials, timeout=5, **config))  # type: ignore[arg-type]


def test_tls_certificates_are_verified_by_default(tls_server: tuple[str, Path]) -> None:
    """A certificate from an unknown CA is refused: TransportError, nothing sent."""
    url, _ = tls_server
    with tls_client(url) as client, pytest.raises(TransportError, match=r"(?i)certificate"):
        client.account()


def test_custom_ca_bundle_is_trusted(tls_server: tuple[str, Path]) -> None:
    """With ca_bundle naming the private CA, the same server is accepted."""
    url, ca_file = tls_server
    with tls_client(url, ca_bundle=ca_file) as client:
        assert client.account().login == utm.USER


def test_verification_can_be_switched_off(tls_server: tuple[str, Path]) -> None:
    """verify=False (tests only) accepts the unknown certificate."""
    url, _ = tls_server
    with tls_client(url, verify=False) as client:
        assert client.account().login == utm.USER
