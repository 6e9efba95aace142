"""Every setting name of the flat era keeps working: each ``AUTHGATE_<NAME>`` variable and
TOML key that main's ``Settings`` had before the settings were nested per service is
accepted from the environment and from the config file, and lands on its attribute
(nested or not) with the right type; names nothing reads are still reported."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from authgate.services.alerts.configuration import AlertRuleSetting
from authgate.services.forward_auth import ForwardAuthRuleSetting
from authgate.settings import (
    CONFIG_FILE_VARIABLE,
    Settings,
    explain_invalid_settings,
    unknown_environment_variables,
)
from authgate.settings_messages import OTHER_PROGRAMS_VARIABLES
from authgate.settings_secrets import SECRET_SETTINGS

# Settings.model_fields of main before the nesting, as it was (do not regenerate).
FLAT_NAMES = (
    "data_dir",
    "database_url",
    "database_url_file",
    "auto_migrate",
    "cluster",
    "config_file",
    "host",
    "port",
    "workers",
    "public_url",
    "access_log",
    "max_body_bytes",
    "max_header_bytes",
    "header_timeout_seconds",
    "body_timeout_seconds",
    "shutdown_timeout_seconds",
    "reset_page_url",
    "ui_insecure_http",
    "swagger_persist_authorization",
    "jwt_algorithm",
    "jwt_issuer",
    "jwt_audience",
    "token_ttl_seconds",
    "remember_me_ttl_seconds",
    "token_leeway_seconds",
    "signing_keys_file",
    "jwt_secret",
    "jwt_secret_file",
    "access_token_query_param",
    "token_cache_size",
    "user_cache_size",
    "user_cache_ttl_seconds",
    "change_poll_interval_seconds",
    "api_key_pepper",
    "api_key_pepper_file",
    "api_key_require_expiry",
    "api_key_max_lifetime_days",
    "api_key_default_scopes",
    "api_key_extra_scopes",
    "api_key_cache_size",
    "api_key_cache_ttl_seconds",
    "api_key_unknown_cache_size",
    "api_key_unknown_cache_ttl_seconds",
    "trusted_proxies",
    "forwarded_header",
    "forward_auth_rules",
    "forward_auth_unmatched",
    "forward_auth_proxy",
    "forward_auth_method_header",
    "forward_auth_uri_header",
    "forward_auth_case_sensitive",
    "usage_log_successes",
    "usage_sample_per_key",
    "usage_flush_interval_seconds",
    "usage_retention_days",
    "redis_url",
    "redis_url_file",
    "audit_retention_days",
    "audit_flush_interval_seconds",
    "audit_key",
    "audit_key_file",
    "audit_checkpoint_interval_seconds",
    "audit_api_key_successes",
    "audit_key_idle_seconds",
    "login_ip_max_failures",
    "login_ip_window_seconds",
    "login_pair_max_failures",
    "login_pair_window_seconds",
    "login_pair_base_delay_seconds",
    "login_pair_max_delay_seconds",
    "login_account_max_failures",
    "login_account_window_seconds",
    "login_account_slowdown_seconds",
    "login_account_slowdown_max_seconds",
    "login_known_ip_days",
    "key_ip_max_failures",
    "key_ip_window_seconds",
    "key_ip_block_seconds",
    "api_key_default_rate_limit",
    "v12_tenant_id",
    "alert_webhook_url",
    "alert_webhook_secret",
    "alert_webhook_secret_file",
    "alert_webhook_timeout_seconds",
    "alert_syslog_target",
    "alert_smtp_host",
    "alert_smtp_port",
    "alert_smtp_starttls",
    "alert_smtp_username",
    "alert_smtp_password",
    "alert_smtp_password_file",
    "alert_email_from",
    "alert_email_to",
    "alert_delivery_retries",
    "alert_evaluation_interval_seconds",
    "alert_max_subjects_per_window",
    "alert_rules",
    "tfa_required",
    "tfa_key",
    "tfa_key_file",
    "tfa_issuer",
    "tfa_bypass_header_addresses",
    "metrics_token",
    "metrics_token_file",
    "admin_password",
    "admin_password_file",
    "password_min_length",
    "password_max_length",
    "password_refuse_common",
    "argon2_time_cost",
    "argon2_memory_kib",
    "argon2_parallelism",
    "password_hashing_threads",
    "password_hashing_queue",
    "password_hashing_queue_timeout_seconds",
    "password_hashing_nice",
    "opentelemetry",
    "log_level",
    "log_format",
)
# Flat names added to settings_names.NESTED since the nesting: tested the same way.
ADDED_NAMES = (
    "password_hashing_priority",
    "api_key_resume_on_reactivation",
    "max_connections",
    "password_hashing_known_queue",
)
ALL_NAMES = FLAT_NAMES + ADDED_NAMES
# Where the names that moved into a service's model now live.
MOVED = {
    "login_ip_max_failures": "login.ip_max_failures",
    "login_ip_window_seconds": "login.ip_window",
    "login_pair_max_failures": "login.pair_max_failures",
    "login_pair_window_seconds": "login.pair_window",
    "login_pair_base_delay_seconds": "login.pair_base_delay",
    "login_pair_max_delay_seconds": "login.pair_max_delay",
    "login_account_max_failures": "login.account_max_failures",
    "login_account_window_seconds": "login.account_window",
    "login_account_slowdown_seconds": "login.account_slowdown",
    "login_account_slowdown_max_seconds": "login.account_slowdown_max",
    "login_known_ip_days": "login.known_ip_days",
    "key_ip_max_failures": "key_abuse.max_failures",
    "key_ip_window_seconds": "key_abuse.window",
    "key_ip_block_seconds": "key_abuse.block_seconds",
    "usage_log_successes": "usage.log_successes",
    "usage_sample_per_key": "usage.sample_per_key",
    "usage_flush_interval_seconds": "usage.flush_interval_seconds",
    "usage_retention_days": "usage.retention_days",
    "audit_retention_days": "audit.retention_days",
    "audit_flush_interval_seconds": "audit.flush_interval_seconds",
    "audit_checkpoint_interval_seconds": "audit.checkpoint_interval_seconds",
    "audit_api_key_successes": "audit.api_key_successes",
    "audit_key_idle_seconds": "audit.key_idle_seconds",
    "argon2_time_cost": "password_hashing.time_cost",
    "argon2_memory_kib": "password_hashing.memory_kib",
    "argon2_parallelism": "password_hashing.parallelism",
    "password_hashing_threads": "password_hashing.threads",
    "password_hashing_queue": "password_hashing.queue_size",
    "password_hashing_known_queue": "password_hashing.known_queue_size",
    "password_hashing_queue_timeout_seconds": "password_hashing.queue_timeout",
    "password_hashing_nice": "password_hashing.nice",
    "password_hashing_priority": "password_hashing.priority",
    "forward_auth_rules": "forward_auth.rules",
    "forward_auth_unmatched": "forward_auth.unmatched",
    "forward_auth_proxy": "forward_auth.proxy",
    "forward_auth_method_header": "forward_auth.method_header",
    "forward_auth_uri_header": "forward_auth.uri_header",
    "forward_auth_case_sensitive": "forward_auth.case_sensitive",
    "alert_webhook_url": "alerts.webhook_url",
    "alert_webhook_secret": "alerts.webhook_secret",
    "alert_webhook_timeout_seconds": "alerts.webhook_timeout_seconds",
    "alert_syslog_target": "alerts.syslog_target",
    "alert_email_to": "alerts.email_to",
    "alert_delivery_retries": "alerts.delivery_retries",
    "alert_evaluation_interval_seconds": "alerts.evaluation_interval_seconds",
    "alert_max_subjects_per_window": "alerts.max_subjects_per_window",
    "alert_rules": "alerts.rules",
    "api_key_require_expiry": "api_keys.require_expiry",
    "api_key_max_lifetime_days": "api_keys.max_lifetime_days",
    "api_key_default_scopes": "api_keys.default_scopes",
    "api_key_extra_scopes": "api_keys.extra_scopes",
    "api_key_cache_size": "api_keys.cache_size",
    "api_key_cache_ttl_seconds": "api_keys.cache_ttl_seconds",
    "api_key_unknown_cache_size": "api_keys.unknown_cache_size",
    "api_key_unknown_cache_ttl_seconds": "api_keys.unknown_cache_ttl_seconds",
    "api_key_resume_on_reactivation": "api_keys.resume_on_reactivation",
    "alert_smtp_host": "mail.smtp_host",
    "alert_smtp_port": "mail.smtp_port",
    "alert_smtp_starttls": "mail.smtp_starttls",
    "alert_smtp_username": "mail.smtp_username",
    "alert_smtp_password": "mail.smtp_password",
    "alert_email_from": "mail.email_from",
    "jwt_algorithm": "tokens.algorithm",
    "jwt_issuer": "tokens.issuer",
    "jwt_audience": "tokens.audience",
    "token_ttl_seconds": "tokens.ttl_seconds",
    "remember_me_ttl_seconds": "tokens.remember_me_ttl_seconds",
    "token_leeway_seconds": "tokens.leeway_seconds",
    "access_token_query_param": "tokens.query_param",
    "token_cache_size": "tokens.cache_size",
    "user_cache_size": "user_cache.size",
    "user_cache_ttl_seconds": "user_cache.ttl_seconds",
    "password_min_length": "password_policy.min_length",
    "password_max_length": "password_policy.max_length",
    "password_refuse_common": "password_policy.refuse_common",
    "tfa_required": "second_factor.required",
    "tfa_issuer": "second_factor.issuer",
    "tfa_bypass_header_addresses": "second_factor.bypass_header_addresses",
    "host": "http.host",
    "port": "http.port",
    "workers": "http.workers",
    "public_url": "http.public_url",
    "access_log": "http.access_log",
    "max_body_bytes": "http.max_body_bytes",
    "max_header_bytes": "http.max_header_bytes",
    "header_timeout_seconds": "http.header_timeout_seconds",
    "body_timeout_seconds": "http.body_timeout_seconds",
    "shutdown_timeout_seconds": "http.shutdown_timeout_seconds",
    "max_connections": "http.max_connections",
    "reset_page_url": "http.reset_page_url",
}
# What some settings need beside them to be valid.
COMPANIONS: dict[str, dict[str, Any]] = {
    "cluster": {
        "database_url": "postgresql+asyncpg://db/authgate",
        "api_key_pepper": "p" * 44,
        "audit_key": "a" * 44,
        "tfa_key": "t" * 44,
        "jwt_algorithm": "HS512",
    },
    # A default scope must be one a key may carry.
    "api_key_default_scopes": {"api_key_extra_scopes": "alpha,beta"},
    "forward_auth_method_header": {"forward_auth_uri_header": "X-Upstream-Uri"},
    "forward_auth_uri_header": {"forward_auth_method_header": "X-Upstream-Method"},
}


def attribute(settings: Settings, name: str) -> Any:
    value: Any = settings
    for part in MOVED.get(name, name).split("."):
        value = getattr(value, part)
    return value


def field_info(name: str) -> FieldInfo:
    *groups, last = MOVED.get(name, name).split(".")
    model: type[BaseModel] = Settings
    for group in groups:
        model = typing.cast(type[BaseModel], model.model_fields[group].annotation)
    return model.model_fields[last]


def sample(name: str, tmp_path: Path) -> tuple[str, str, Any]:
    """A valid value other than the default: (environment text, TOML value, expected)."""
    if name.endswith("_file") or name == "data_dir":
        path = tmp_path / f"{name}.txt"
        path.write_text(
            "secret-value-of-the-file-0123456789\n"
            if name.removesuffix("_file") in SECRET_SETTINGS
            else ""
        )
        return str(path), json.dumps(str(path)), path
    if name == "database_url":
        return "postgresql://db/x", '"postgresql://db/x"', "postgresql+asyncpg://db/x"
    if name == "forward_auth_rules":
        rule = ForwardAuthRuleSetting(path_prefix="/orders", scopes=["orders:read"])
        text = '[{"path_prefix": "/orders", "scopes": ["orders:read"]}]'
        return text, '[{path_prefix = "/orders", scopes = ["orders:read"]}]', [rule]
    if name == "alert_rules":
        alert = AlertRuleSetting(name="spray", kind="login_failures", threshold=3)
        text = '[{"name": "spray", "kind": "login_failures", "threshold": 3}]'
        return text, '[{name = "spray", kind = "login_failures", threshold = 3}]', [alert]
    if name in ("forward_auth_method_header", "forward_auth_uri_header"):
        return "X-Other", '"X-Other"', "X-Other"
    if name in ("reset_page_url", "public_url"):
        page = "https://utm.example.com/reset/finish"
        return page, json.dumps(page), page
    if name == "api_key_default_rate_limit":
        return "100/minute", '"100/minute"', "100/minute"
    info = field_info(name)
    default = info.get_default(call_default_factory=True)
    annotation = info.annotation
    if annotation in (bool, bool | None):
        value = not default
        return str(value).lower(), str(value).lower(), value
    if annotation in (int, float):
        number = default + (1 if annotation is int else 0.5)
        return str(number), str(number), number
    if typing.get_origin(annotation) is typing.Literal:
        choice = next(c for c in typing.get_args(annotation) if c != default)
        return choice, json.dumps(choice), choice
    if annotation == list[str]:
        return "alpha, beta", '["alpha", "beta"]', ["alpha", "beta"]
    if annotation == frozenset[str]:
        return "alpha, beta", '["alpha", "beta"]', frozenset({"alpha", "beta"})
    if annotation in (SecretStr | None,):
        return "s" * 44, json.dumps("s" * 44), SecretStr("s" * 44)
    if annotation in (str, str | None):
        return "example", '"example"', "example"
    raise AssertionError(f"no sample for {name}: {annotation}")


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, SecretStr):
        return isinstance(actual, SecretStr) and (
            actual.get_secret_value() == expected.get_secret_value()
        )
    return type(actual) is type(expected) and actual == expected


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for variable in [*(f"AUTHGATE_{n.upper()}" for n in ALL_NAMES), CONFIG_FILE_VARIABLE]:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_flat_name_from_the_environment(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, _, expected = sample(name, tmp_path)
    if name == "config_file":
        monkeypatch.setenv(CONFIG_FILE_VARIABLE, text)
    else:
        monkeypatch.setenv(f"AUTHGATE_{name.upper()}", text)
    settings = Settings(**COMPANIONS.get(name, {}))
    assert same(attribute(settings, name), expected)
    assert unknown_environment_variables() == []


@pytest.mark.parametrize("name", ALL_NAMES)
def test_flat_name_from_the_config_file(name: str, tmp_path: Path) -> None:
    _, value, expected = sample(name, tmp_path)
    config = tmp_path / "authgate.toml"
    config.write_text(f"{name} = {value}\n", encoding="utf-8")
    settings = Settings(config_file=config, **COMPANIONS.get(name, {}))
    if name == "config_file":  # the argument names the file that is read
        expected = config
    assert same(attribute(settings, name), expected)


def test_nested_table_in_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``[login]`` table sets the service's fields; a flat variable still outranks it."""
    config = tmp_path / "authgate.toml"
    config.write_text("[login]\nip_max_failures = 7\npair_window = 60\n", encoding="utf-8")
    monkeypatch.setenv("AUTHGATE_LOGIN_PAIR_WINDOW_SECONDS", "90")
    settings = Settings(config_file=config)
    assert settings.login.ip_max_failures == 7
    assert settings.login.pair_window == 90


def test_unknown_names_are_still_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_LOGIN_IP_MAX_FAILURE", "3")
    assert unknown_environment_variables() == [
        "unknown variable AUTHGATE_LOGIN_IP_MAX_FAILURE is ignored; "
        "did you mean AUTHGATE_LOGIN_IP_MAX_FAILURES?"
    ]
    config = tmp_path / "authgate.toml"
    config.write_text("key_ip_window = 5\n[login]\nip_windw = 5\n", encoding="utf-8")
    with pytest.raises(ValidationError) as raised:
        Settings(config_file=config)
    line = explain_invalid_settings(raised.value, {"config_file": config})
    hint = "did you mean key_ip_window_seconds?"
    assert f"unknown setting 'key_ip_window' in {config}; {hint}" in line
    # Inside a table, the table's own key (the flat login_ip_window_seconds was offered).
    hint = "did you mean ip_window (in [login])?"
    assert f"unknown setting 'login.ip_windw' in {config}; {hint}" in line


def test_refused_nested_value_names_the_flat_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_LOGIN_IP_WINDOW_SECONDS", "0")
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = explain_invalid_settings(raised.value, {})
    assert line.startswith("invalid AUTHGATE_LOGIN_IP_WINDOW_SECONDS: ")


def test_other_programs_variables_name_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group is never named like a variable authgate-client or the guard reads: the
    SDK's AUTHGATE_PASSWORD (not JSON) beside the server must not be parsed as a group
    (hence ``password_policy``, not ``password``)."""
    for variable in OTHER_PROGRAMS_VARIABLES:
        monkeypatch.setenv(variable, "not json")
    settings = Settings()
    assert settings.password_policy.min_length == 12
    assert unknown_environment_variables() == []
