"""The same SDK against a fake UTMStack speaking the v10 and v11 shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest

from authgate.client import (
    ApiKeyCredentials,
    AsyncClient,
    AuthenticationError,
    Client,
    ClientConfig,
    ConflictError,
    Credentials,
    PasswordCredentials,
    SecondFactorRejected,
    SecondFactorRequired,
    ServerError,
)
from tests.client import utmstack_fake as utm
from tests.client.servers import serve_asgi


def fake_client(fake: utm.FakeUtmStack, credentials: Credentials, **options: object) -> AsyncClient:
    transport = httpx2.ASGITransport(app=fake.app())
    config = ClientConfig("http://utmstack.test", credentials)
    return AsyncClient(config, transport=transport, **options)  # type: ignore[arg-type]


@pytest.fixture(params=["v10", "v11"])
def fake(request: pytest.FixtureRequest) -> utm.FakeUtmStack:
    return utm.FakeUtmStack(version=request.param)


@pytest.fixture
async def admin(fake: utm.FakeUtmStack) -> AsyncIterator[AsyncClient]:
    credentials = PasswordCredentials(utm.USER, utm.PASSWORD)
    async with fake_client(fake, credentials) as client:
        yield client


async def test_password_login_works_with_either_token_field(
    fake: utm.FakeUtmStack, admin: AsyncClient
) -> None:
    """v10's id_token and v11's token both give a working bearer token."""
    account = await admin.account()
    assert account.login == utm.USER
    assert account.created_at is None  # UTMStack sends fewer fields: parsed as None
    assert fake.logins == 1
    assert fake.seen_headers[-1]["authorization"].startswith("Bearer ")


async def test_expired_utmstack_token_is_renewed(
    fake: utm.FakeUtmStack, admin: AsyncClient
) -> None:
    """Once the server's clock passes exp, its 401 leads to one new login and a success."""
    await admin.account()
    fake.now += utm.TOKEN_TTL + 1  # the server now refuses the old token
    assert (await admin.account()).login == utm.USER
    assert fake.logins == 2
    assert len(fake.seen_headers) == 3  # accepted, refused, accepted


async def test_bad_password_message_comes_from_the_header(fake: utm.FakeUtmStack) -> None:
    """UTMStack's header-only 401 gives AuthenticationError('Bad credentials')."""
    async with fake_client(fake, PasswordCredentials(utm.USER, "wrong-password")) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.account()
    assert raised.value.message == "Bad credentials"


async def test_header_only_conflict_and_server_error(
    fake: utm.FakeUtmStack, admin: AsyncClient
) -> None:
    """409 and UTMStack's 500-for-not-found carry the X-UtmStack-error message."""
    fake.add_key("ci")
    with pytest.raises(ConflictError, match="already exists"):
        await admin.create_api_key("ci", expires_at=None)
    with pytest.raises(ServerError) as raised:
        await admin.get_api_key("6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f")
    assert raised.value.message == "ApiKey not found"


async def test_key_dtos_without_authgate_fields_parse(
    fake: utm.FakeUtmStack, admin: AsyncClient
) -> None:
    """UTMStack's DTO (no prefix, status, scopes) parses; regenerate reads text/plain."""
    key_id, _ = fake.add_key("ci")
    page = await admin.list_api_keys()
    assert [(key.id, key.name, key.prefix, key.status) for key in page] == [
        (key_id, "ci", None, None)
    ]
    assert page.total == 1
    rotated = await admin.regenerate_api_key(key_id)
    assert rotated.key == fake.api_keys[key_id]["key"]
    await admin.revoke_api_key(key_id)
    assert fake.api_keys == {}


async def test_v10_reads_keys_from_authorization_bearer() -> None:
    """v10 (the documentation): the default Bearer header authenticates a key."""
    fake = utm.FakeUtmStack(version="v10")
    _, key = fake.add_key("ci")
    async with fake_client(fake, ApiKeyCredentials(key)) as client:
        assert (await client.account()).login == utm.USER


async def test_v11_reads_keys_only_from_utm_api_key() -> None:
    """v11: Bearer <key> is refused; header='utm-api-key' works."""
    fake = utm.FakeUtmStack(version="v11")
    _, key = fake.add_key("ci")
    async with fake_client(fake, ApiKeyCredentials(key)) as bearer_client:
        with pytest.raises(AuthenticationError):
            await bearer_client.account()
    async with fake_client(fake, ApiKeyCredentials(key, header="utm-api-key")) as client:
        assert (await client.account()).login == utm.USER
    assert fake.seen_headers[-1]["utm-api-key"] == key
    assert "authorization" not in fake.seen_headers[-1]


# -- second factor (v11) ---------------------------------------------------------------------


def tfa_credentials() -> PasswordCredentials:
    return PasswordCredentials(utm.TFA_USER, utm.TFA_PASSWORD)


async def test_second_factor_without_hook_raises_second_factor_required() -> None:
    """authenticated:false and no hook: SecondFactorRequired, no request to the API."""
    fake = utm.FakeUtmStack(version="v11")
    async with fake_client(fake, tfa_credentials()) as client:
        with pytest.raises(SecondFactorRequired):
            await client.account()
    assert fake.seen_headers == []


async def test_second_factor_hook_completes_the_login() -> None:
    """The hook's code is verified and the final token reaches the API."""
    fake = utm.FakeUtmStack(version="v11")
    asked: list[str] = []

    def code() -> str:
        asked.append("code")
        return utm.TFA_CODE

    async with fake_client(fake, tfa_credentials(), second_factor=code) as client:
        assert (await client.account()).login == utm.TFA_USER
    assert asked == ["code"]


async def test_wrong_second_factor_code_is_rejected_with_412() -> None:
    """A wrong code: SecondFactorRejected with UTMStack's header message."""
    fake = utm.FakeUtmStack(version="v11")
    async with fake_client(fake, tfa_credentials(), second_factor=lambda: "000000") as client:
        with pytest.raises(SecondFactorRejected) as raised:
            await client.account()
    assert raised.value.status_code == 412
    assert raised.value.message == "Invalid verification code"


async def test_second_factor_against_v10_uses_verify_code_with_a_query() -> None:
    """UTMStack v10 has no /api/tfa/verify-code: the client falls back to
    GET /api/tfa/verifyCode?code= (UserJWTController.verifyCode); a wrong code there is
    its 401 with X-UtmStack-error, reported as SecondFactorRejected."""
    fake = utm.FakeUtmStack(version="v10")
    async with fake_client(fake, tfa_credentials(), second_factor=lambda: utm.TFA_CODE) as client:
        assert (await client.account()).login == utm.TFA_USER
    fake = utm.FakeUtmStack(version="v10")
    async with fake_client(fake, tfa_credentials(), second_factor=lambda: "000000") as client:
        with pytest.raises(SecondFactorRejected) as raised:
            await client.account()
    assert raised.value.message == "Your secret code is invalid"


# -- the blocking client over a real socket ----------------------------------------------------


@pytest.fixture
def served_v11() -> Iterator[tuple[utm.FakeUtmStack, str]]:
    fake = utm.FakeUtmStack(version="v11")
    with serve_asgi(fake.app()) as url:
        yield fake, url


def test_sync_client_speaks_v11_over_loopback(served_v11: tuple[utm.FakeUtmStack, str]) -> None:
    """Client logs in (v11 token), and uses a key in Utm-Api-Key, over a real socket."""
    fake, url = served_v11
    with Client(ClientConfig(url, PasswordCredentials(utm.USER, utm.PASSWORD))) as client:
        assert client.account().login == utm.USER
    _, key = fake.add_key("ci")
    with Client(ClientConfig(url, ApiKeyCredentials(key, header="utm-api-key"))) as client:
        assert client.account().login == utm.USER
