"""Settings: defaults, AUTHGATE_* environment variables, the TOML config file, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from authgate.exceptions import ConfigurationError
from authgate.settings import CONFIG_FILE_VARIABLE, Settings, explain_invalid_settings

ADMIN_SECRET = "operator-password-that-must-stay-hidden"
JWT_SECRET = "c2hhcmVkLXNlY3JldC10aGF0LW11c3Qtc3RheS1oaWRkZW4tZnJvbS1yZXByLWFuZC1sb2dz"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with the temporary directory as working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults(in_tmp: Path) -> None:
    """Without configuration, authgate listens on 127.0.0.1:8080 and signs with ES256."""
    settings = Settings()
    assert settings.http.port == 8080
    assert settings.http.host == "127.0.0.1"
    assert settings.tokens.algorithm == "ES256"
    assert settings.data_dir == Path("./authgate-data")
    assert settings.http.base_url == "http://127.0.0.1:8080"


def test_default_database_is_sqlite_in_data_dir(in_tmp: Path) -> None:
    """The default database is the SQLite file authgate.db inside the data dir."""
    settings = Settings()
    expected = (in_tmp / "authgate-data" / "authgate.db").resolve()
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{expected}"
    assert settings.is_sqlite
    assert settings.effective_signing_keys_file == Path("./authgate-data/signing-keys.json")


def test_auto_migrate_defaults_to_sqlite_only(in_tmp: Path) -> None:
    """Migrations run at start-up by default on SQLite, not on PostgreSQL, unless set."""
    assert Settings().should_auto_migrate is True
    postgres = "postgresql+asyncpg://authgate@localhost/authgate"
    assert Settings(database_url=postgres).should_auto_migrate is False
    assert Settings(database_url=postgres, auto_migrate=True).should_auto_migrate is True
    assert Settings(auto_migrate=False).should_auto_migrate is False


def test_environment_variables_override_defaults(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTHGATE_<FIELD> variables override the defaults, case-insensitively by field."""
    monkeypatch.setenv("AUTHGATE_PORT", "9090")
    monkeypatch.setenv("AUTHGATE_HOST", "0.0.0.0")  # noqa: S104 - only a value under test
    monkeypatch.setenv("AUTHGATE_JWT_ALGORITHM", "EdDSA")
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(in_tmp / "elsewhere"))
    monkeypatch.setenv("AUTHGATE_ADMIN_PASSWORD", ADMIN_SECRET)
    settings = Settings()
    assert settings.http.port == 9090
    assert settings.http.host == "0.0.0.0"  # noqa: S104
    assert settings.tokens.algorithm == "EdDSA"
    assert settings.data_dir == in_tmp / "elsewhere"
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == ADMIN_SECRET


def test_constructor_arguments_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values passed to Settings(...) win over AUTHGATE_* variables, by their flat names
    too (port is Settings.http.port)."""
    monkeypatch.setenv("AUTHGATE_PORT", "9090")
    flat: dict[str, object] = {"port": 7070}
    assert Settings(**flat).http.port == 7070  # type: ignore[arg-type]


def test_config_file_is_read_and_environment_overrides_it(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AUTHGATE_CONFIG_FILE names a TOML file whose values apply unless an env var overrides."""
    config = in_tmp / "authgate.toml"
    config.write_text(
        'host = "10.0.0.5"\nport = 9000\njwt_issuer = "from-file"\ntoken_ttl_seconds = 600\n',
        encoding="utf-8",
    )
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(config))
    monkeypatch.setenv("AUTHGATE_PORT", "9100")
    settings = Settings()
    assert settings.http.host == "10.0.0.5"
    assert settings.tokens.issuer == "from-file"
    assert settings.tokens.ttl_seconds == 600
    assert settings.http.port == 9100


def test_config_file_given_as_argument_is_read(in_tmp: Path) -> None:
    """Settings(config_file=...) reads that TOML file without any environment variable."""
    config = in_tmp / "authgate.toml"
    config.write_text("port = 9001\n", encoding="utf-8")
    assert Settings(config_file=config).http.port == 9001


def test_missing_config_file_is_a_configuration_error(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config file that does not exist is refused with ConfigurationError naming it."""
    missing = in_tmp / "no-such-file.toml"
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(missing))
    with pytest.raises(ConfigurationError, match=r"no-such-file\.toml"):
        Settings()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"password_min_length": 100, "password_max_length": 50}, "password_min_length"),
        ({"jwt_secret": JWT_SECRET, "jwt_secret_file": Path("secret.txt")}, "not both"),
        ({"jwt_algorithm": "RS256"}, "jwt_algorithm"),
        ({"api_key_default_rate_limit": "lots"}, "api_key_default_rate_limit.*Invalid rate"),
        ({"api_key_default_rate_limit": "1/2 days"}, "window is at most one day"),
        ({"reset_page_url": "/reset/finish"}, "reset_page_url.*absolute"),
        ({"reset_page_url": "javascript:alert(1)//x"}, "reset_page_url.*absolute"),
        ({"reset_page_url": "https://utm.example.com/reset?x=1"}, "reset_page_url.*query"),
        ({"reset_page_url": "https://u:p@utm.example.com/reset"}, "reset_page_url.*credentials"),
        ({"reset_page_url": "https://utm.example.com/reset#k"}, "reset_page_url.*fragment"),
        ({"public_url": "notaurl"}, "public_url.*absolute http"),
        ({"public_url": "ftp://auth.example.com"}, "public_url.*absolute http"),
        ({"public_url": "https://auth.example.com/?x=1"}, "public_url.*query"),
        ({"host": ""}, "AUTHGATE_HOST: must not be empty"),
        ({"host": " "}, "AUTHGATE_HOST: must not be empty"),
        ({"reset_page_url": "https://utm.example.com/reset#"}, "reset_page_url.*fragment"),
        ({"reset_page_url": "https://utm.example.com/reset?"}, "reset_page_url.*query"),
        ({"public_url": "http://a b/"}, "public_url.*absolute"),
        ({"public_url": "https://x.example:99999/p"}, "public_url.*absolute"),
        ({"metrics_token": "a"}, "metrics_token must be at least 24 characters"),
        ({"metrics_token": "x" * 23}, "metrics_token must be at least 24 characters"),
        (
            {"login_pair_base_delay_seconds": 900, "login_pair_max_delay_seconds": 30},
            "AUTHGATE_LOGIN_PAIR_MAX_DELAY_SECONDS must be at least "
            "AUTHGATE_LOGIN_PAIR_BASE_DELAY_SECONDS",
        ),
    ],
    ids=[
        "port-zero",
        "port-too-high",
        "min-over-max",
        "secret-and-file",
        "unknown-alg",
        "bad-rate-limit",
        "rate-limit-window-over-a-day",
        "reset-page-relative",
        "reset-page-not-http",
        "reset-page-query",
        "reset-page-credentials",
        "reset-page-fragment",
        "public-url-not-a-url",
        "public-url-not-http",
        "public-url-query",
        "host-empty",
        "host-blank",
        "reset-page-empty-fragment",
        "reset-page-empty-query",
        "public-url-space",
        "public-url-bad-port",
        "metrics-token-one-character",
        "metrics-token-one-short",
        "pair-delay-max-under-base",
    ],
)
def test_invalid_values_are_rejected(values: dict[str, object], message: str) -> None:
    """Out-of-range or contradictory values raise pydantic's ValidationError, told by the
    flat name the operator wrote (also for the settings nested in a group)."""
    with pytest.raises(ValidationError) as raised:
        Settings(**values)  # type: ignore[arg-type]
    assert re.search(message, explain_invalid_settings(raised.value, values), re.IGNORECASE)


def test_invalid_environment_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid AUTHGATE_PORT is refused like an invalid argument."""
    monkeypatch.setenv("AUTHGATE_PORT", "0")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_repr_hides_secrets() -> None:
    """Neither repr() nor str() of the settings reveals the admin password or the JWT secret."""
    settings = Settings(admin_password=ADMIN_SECRET, jwt_secret=JWT_SECRET)
    for text in (repr(settings), str(settings)):
        assert ADMIN_SECRET not in text
        assert JWT_SECRET not in text
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == JWT_SECRET


def test_forward_auth_reads_nginxs_headers_by_default(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy in front defaults to nginx (X-Original-*, as in examples/nginx); matching
    ignores case unless told otherwise; both come from the environment too."""
    settings = Settings()
    assert settings.forward_auth.proxy == "nginx"
    assert settings.forward_auth.method_header is None
    assert settings.forward_auth.case_sensitive is False
    monkeypatch.setenv("AUTHGATE_FORWARD_AUTH_PROXY", "caddy")
    monkeypatch.setenv("AUTHGATE_FORWARD_AUTH_CASE_SENSITIVE", "true")
    assert Settings().forward_auth.proxy == "caddy"
    assert Settings().forward_auth.case_sensitive is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"forward_auth_proxy": "haproxy"}, "forward_auth_proxy"),
        ({"forward_auth_method_header": "X-Method"}, "both"),
        ({"forward_auth_uri_header": "X-Uri"}, "both"),
        ({"forward_auth_method_header": "X-A", "forward_auth_uri_header": "x-a"}, "differ"),
        ({"forward_auth_method_header": "X Method", "forward_auth_uri_header": "X-Uri"}, "pattern"),
    ],
)
def test_forward_auth_header_settings_are_checked(values: dict[str, object], message: str) -> None:
    """Refused, and told by the flat name the operator wrote."""
    with pytest.raises(ValidationError) as raised:
        Settings(**values)  # type: ignore[arg-type]
    assert re.search(message, explain_invalid_settings(raised.value, values), re.IGNORECASE)


def test_default_scopes_must_be_scopes_a_key_may_carry(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A default scope nothing allows is refused at start, by the name the operator gave
    it (else every key created without scopes is refused, "Unknown scope"); one declared
    in api_key_extra_scopes is accepted."""
    monkeypatch.setenv("AUTHGATE_API_KEY_DEFAULT_SCOPES", "read,bogus")
    with pytest.raises(ValidationError) as raised:
        Settings()
    message = explain_invalid_settings(raised.value, {})
    assert message.startswith("invalid AUTHGATE_API_KEY_DEFAULT_SCOPES: unknown scope bogus")
    monkeypatch.setenv("AUTHGATE_API_KEY_EXTRA_SCOPES", "bogus")
    assert Settings().api_keys.default_scopes == {"read", "bogus"}

    monkeypatch.delenv("AUTHGATE_API_KEY_DEFAULT_SCOPES")
    monkeypatch.delenv("AUTHGATE_API_KEY_EXTRA_SCOPES")
    config = in_tmp / "authgate.toml"
    config.write_text('[api_keys]\ndefault_scopes = ["read", "bogus"]\n', encoding="utf-8")
    given = {"config_file": config}
    with pytest.raises(ValidationError) as raised:
        Settings(**given)  # type: ignore[arg-type]
    message = explain_invalid_settings(raised.value, given)
    assert message.startswith(f"invalid api_key_default_scopes in {config}: unknown scope bogus")


@pytest.mark.parametrize("missing", ["", "api_key_pepper", "audit_key", "tfa_key", "signing_keys"])
def test_the_data_dir_is_used_while_one_secret_would_be_generated_there(missing: str) -> None:
    """With PostgreSQL, the data dir is needed (and refused when absent) as long as one
    secret is neither given nor in a file: it would be generated there, and a command
    run elsewhere would use a key of its own (a TOTP secret the server cannot read)."""
    given: dict[str, object] = {
        "database_url": "postgresql+asyncpg://authgate@db/authgate",
        "api_key_pepper": "p" * 44,
        "audit_key": "a" * 44,
        "tfa_key": "t" * 44,
        "signing_keys_file": Path("/run/secrets/signing-keys.json"),  # read when used
    }
    given.pop(missing, None)
    given.pop(f"{missing}_file", None)
    settings = Settings(**given)  # type: ignore[arg-type]
    assert settings.uses_data_dir is bool(missing)


def test_mailed_codes_for_the_unenrolled_need_an_smtp_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """README: `AUTHGATE_TFA_UNENROLLED=email` needs SMTP; without one, every login of a
    user who must use a factor and has none would fail, so the start is refused. With
    nobody required to use a factor it does nothing, and is accepted. The refusal names
    the settings as they were given (the README walkthrough: it named the fields):
    variables, or the config file's keys."""
    values: dict[str, object] = {"tfa_required": "all", "tfa_unenrolled": "email"}
    monkeypatch.setenv("AUTHGATE_TFA_REQUIRED", "all")
    monkeypatch.setenv("AUTHGATE_TFA_UNENROLLED", "email")
    with pytest.raises(ValidationError) as raised:
        Settings(**values)  # type: ignore[arg-type]
    message = explain_invalid_settings(raised.value, values)
    assert "AUTHGATE_TFA_UNENROLLED=email" in message
    assert "set AUTHGATE_ALERT_SMTP_HOST (and AUTHGATE_ALERT_EMAIL_FROM)" in message
    monkeypatch.delenv("AUTHGATE_TFA_REQUIRED")
    monkeypatch.delenv("AUTHGATE_TFA_UNENROLLED")
    in_file = {**values, "config_file": tmp_path / "authgate.toml"}
    message = explain_invalid_settings(raised.value, in_file)
    assert "tfa_unenrolled=email" in message
    assert "set alert_smtp_host (and alert_email_from)" in message
    mail = {"alert_smtp_host": "mail.example.com", "alert_email_from": "authgate@example.com"}
    assert Settings(**values, **mail).second_factor.unenrolled == "email"  # type: ignore[arg-type]
    assert Settings(tfa_unenrolled="email").second_factor.required == "none"  # type: ignore[call-arg]


def test_a_metrics_token_of_24_characters_is_accepted() -> None:
    assert Settings(metrics_token="x" * 24).metrics_token is not None
