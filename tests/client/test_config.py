"""Settings from the environment, and secrets that never show in reprs or messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from authgate.client import (
    Account,
    ApiKeyCredentials,
    AsyncClient,
    Client,
    ClientConfig,
    ClientConfigError,
    CreatedApiKey,
    PasswordCredentials,
    RefreshTokenCredentials,
    RegeneratedApiKey,
    Token,
    TokenCredentials,
    TokenPair,
    User,
    V12Credentials,
)
from authgate.client._config import client_config_dir
from authgate.client._token_store import StoredPair

KEY = "agk_cIK4tKtaoYB4_n70am5WiZVfTFHrn8XXNU12tDXhGgmqCU1GWVKkqA6D1k5w98"
UTM_KEY = "q3kR2v8x1Qp7sWn0ZbYc4LmTa9HdJf6Ge5Ku2Ro1Pi8"  # 43 characters, no prefix
PASSWORD = "s3cret-password-value"


def test_api_key_from_authgate_variables() -> None:
    """AUTHGATE_URL and AUTHGATE_API_KEY are enough; Bearer is the default header."""
    config = ClientConfig.from_env({"AUTHGATE_URL": "https://a.example", "AUTHGATE_API_KEY": KEY})
    assert config.url == "https://a.example"
    assert config.credentials == ApiKeyCredentials(KEY, header="authorization")


def test_utmstack_variables_are_aliases() -> None:
    """UTMSTACK_URL and UTMSTACK_API_KEY work alike."""
    config = ClientConfig.from_env({"UTMSTACK_URL": "https://u.example", "UTMSTACK_API_KEY": KEY})
    assert config.url == "https://u.example"
    assert config.credentials == ApiKeyCredentials(KEY)


def test_authgate_variable_wins_over_its_alias() -> None:
    """When both names are set, the AUTHGATE_* one is used."""
    config = ClientConfig.from_env(
        {
            "AUTHGATE_URL": "https://a.example",
            "UTMSTACK_URL": "https://u.example",
            "AUTHGATE_API_KEY": KEY,
        }
    )
    assert config.url == "https://a.example"


def test_utm_api_key_header_is_configurable() -> None:
    """AUTHGATE_API_KEY_HEADER=Utm-Api-Key selects UTMStack v11's header."""
    env = {"AUTHGATE_URL": "https://a", "AUTHGATE_API_KEY": UTM_KEY}
    env["AUTHGATE_API_KEY_HEADER"] = "Utm-Api-Key"
    config = ClientConfig.from_env(env)
    assert config.credentials == ApiKeyCredentials(UTM_KEY, header="utm-api-key")


def test_username_and_password_from_the_environment() -> None:
    """AUTHGATE_USERNAME and AUTHGATE_PASSWORD give password credentials."""
    config = ClientConfig.from_env(
        {"AUTHGATE_URL": "https://a", "UTMSTACK_USERNAME": "admin", "UTMSTACK_PASSWORD": PASSWORD}
    )
    assert config.credentials == PasswordCredentials("admin", PASSWORD)


def test_timeout_and_ca_bundle_from_the_environment() -> None:
    """AUTHGATE_TIMEOUT and AUTHGATE_CA_BUNDLE are read."""
    config = ClientConfig.from_env(
        {
            "AUTHGATE_URL": "https://a",
            "AUTHGATE_API_KEY": KEY,
            "AUTHGATE_TIMEOUT": "2.5",
            "AUTHGATE_CA_BUNDLE": "/etc/ssl/private-ca.pem",
        }
    )
    assert config.timeout == 2.5
    assert config.ca_bundle == Path("/etc/ssl/private-ca.pem")
    assert config.verify is True


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "AUTHGATE_URL"),
        ({"AUTHGATE_URL": "https://a"}, "AUTHGATE_API_KEY"),
        ({"AUTHGATE_URL": "a.example", "AUTHGATE_API_KEY": KEY}, "http"),
        (
            {"AUTHGATE_URL": "https://a", "AUTHGATE_API_KEY": KEY, "AUTHGATE_USERNAME": "x"},
            "both",
        ),
        ({"AUTHGATE_URL": "https://a", "AUTHGATE_USERNAME": "x"}, "both"),
        (
            {"AUTHGATE_URL": "https://a", "AUTHGATE_API_KEY": KEY, "AUTHGATE_TIMEOUT": "soon"},
            "AUTHGATE_TIMEOUT",
        ),
        (
            {"AUTHGATE_URL": "https://a", "AUTHGATE_API_KEY": KEY, "AUTHGATE_TIMEOUT": "0"},
            "AUTHGATE_TIMEOUT",
        ),
        (
            {"AUTHGATE_URL": "https://a", "AUTHGATE_API_KEY": KEY, "AUTHGATE_API_KEY_HEADER": "x"},
            "utm-api-key",
        ),
    ],
    ids=[
        "no-url",
        "no-credentials",
        "bad-url",
        "key-and-user",
        "half-pair",
        "timeout",
        "timeout-zero",
        "header",
    ],
)
def test_bad_environment_is_a_configuration_error(environ: dict[str, str], message: str) -> None:
    """Missing, ambiguous or malformed settings raise ClientConfigError naming the fix."""
    with pytest.raises(ClientConfigError, match=message):
        ClientConfig.from_env(environ)


def test_client_without_arguments_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Client() uses AUTHGATE_URL and AUTHGATE_API_KEY of the process."""
    monkeypatch.setenv("AUTHGATE_URL", "https://env.example")
    monkeypatch.setenv("AUTHGATE_API_KEY", KEY)
    with Client() as client:
        assert client.config.url == "https://env.example"
        assert client.config.credentials == ApiKeyCredentials(KEY)


def test_config_dir_is_configurable(tmp_path: Path) -> None:
    """AUTHGATE_CLIENT_CONFIG_DIR places the CLI's files; else the user config dir."""
    assert client_config_dir({"AUTHGATE_CLIENT_CONFIG_DIR": str(tmp_path)}) == tmp_path
    assert client_config_dir({}).name == "authgate"


# -- secrets never show -----------------------------------------------------------------------


def everything_printed(value: object) -> str:
    return f"{value!r} {value!s} {value}"


@pytest.mark.parametrize(
    "credentials",
    [
        ApiKeyCredentials(KEY),
        ApiKeyCredentials(UTM_KEY, header="utm-api-key"),
        PasswordCredentials("admin", PASSWORD),
        TokenCredentials(KEY),
    ],
    ids=["authgate-key", "utmstack-key", "password", "token"],
)
def test_reprs_of_credentials_configs_and_clients_hide_the_secret(
    credentials: ApiKeyCredentials | PasswordCredentials | TokenCredentials,
) -> None:
    """repr/str of credentials, config, Client and AsyncClient never contain the secret."""
    secret = {
        ApiKeyCredentials: lambda c: c.key,
        PasswordCredentials: lambda c: c.password,
        TokenCredentials: lambda c: c.token,
    }[type(credentials)](credentials)
    config = ClientConfig("https://a.example", credentials)
    with Client(config) as client:
        printed = " ".join(everything_printed(x) for x in (credentials, config, client))
        printed += everything_printed(client._auth)
    printed += everything_printed(AsyncClient(config))
    assert secret not in printed
    assert secret[:12] not in printed or secret.startswith("agk_")
    assert "https://a.example" in printed


def test_repr_of_an_authgate_key_shows_its_public_prefix_only() -> None:
    """An authgate key shows agk_<id>_…, the prefix the server also displays."""
    assert repr(ApiKeyCredentials(KEY)) == (
        "ApiKeyCredentials(key='agk_cIK4tKtaoYB4_…', header='authorization')"
    )


def test_created_and_regenerated_keys_hide_the_key() -> None:
    """repr of CreatedApiKey and RegeneratedApiKey shows the prefix, not the key."""
    created = CreatedApiKey(
        id="6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f",
        name="ci",
        allowed_ips=(),
        created_at=None,
        expires_at=datetime(2027, 1, 1, tzinfo=UTC),
        generated_at=None,
        prefix="agk_cIK4tKtaoYB4_…5w98",
        scopes=("read",),
        status="active",
        last_used_at=None,
        last_used_ip=None,
        rate_limit=None,
        revoked_at=None,
        rotation_grace_until=None,
        user_id=1,
        key=KEY,
    )
    regenerated = RegeneratedApiKey(id="6f1c3e0a-2b4d-4c8e-9a7f-0d5b1e2c3a4f", key=KEY)
    for value in (created, regenerated):
        assert KEY not in everything_printed(value)
        assert "agk_cIK4tKtaoYB4_" in repr(value)
    assert created.key == KEY  # still there for the caller to store


def test_token_repr_hides_the_token() -> None:
    """repr of a Token shows its expiry only."""
    token = Token(value="eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", expires_at=None)
    assert "eyJ" not in repr(token)


def test_no_model_shows_a_secret_in_its_repr() -> None:
    """Every result that carries a secret (a reset link, tokens, a v12 pair, a stored
    pair, resumed credentials) keeps it out of repr and str."""
    link = "https://a.example/reset/finish?key=Zm9yZ2V0LW1lLW5vdC1zZWNyZXQ"
    access = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
    refresh = "v12-refresh-token-secret-value"
    user = User.from_json({"login": "bob", "resetLink": link})
    account = Account.from_json({"login": "bob", "resetLink": link})
    pair = TokenPair(Token(access, None), refresh, None)
    values: list[tuple[object, str]] = [
        (user, link),
        (account, link),
        (pair, access),
        (pair, refresh),
        (StoredPair(access, refresh), access),
        (StoredPair(access, refresh), refresh),
        (RefreshTokenCredentials(refresh, access), access),
        (RefreshTokenCredentials(refresh, access), refresh),
        (V12Credentials("bob", PASSWORD), PASSWORD),
    ]
    for value, secret in values:
        assert secret not in everything_printed(value), type(value).__name__
        assert "Zm9yZ2V0" not in everything_printed(value)
    assert user.reset_link == link  # still there for the caller to pass on


@pytest.mark.parametrize(
    "url",
    [
        "http://bob:pw-in-the-url@127.0.0.1:9",
        "http://bob@127.0.0.1:9",
        "https://bob:pw-in/the-url@a.example/prefix",
        "https://a.example/?token=pw-in-the-url",
        "https://a.example/prefix#pw-in-the-url",
        "ftp://bob:pw-in-the-url@a.example",
    ],
)
def test_a_url_with_a_user_query_or_fragment_is_refused_without_showing_it(url: str) -> None:
    """It would show in TransportError messages, repr(Client) and the CLI's output."""
    with pytest.raises(ClientConfigError) as raised:
        ClientConfig(url, ApiKeyCredentials(KEY))
    assert "pw-in" not in str(raised.value)
    assert "bob" not in str(raised.value)


def test_a_url_with_a_path_prefix_is_accepted() -> None:
    assert ClientConfig("https://a.example/prefix", ApiKeyCredentials(KEY)).url.endswith("/prefix")
