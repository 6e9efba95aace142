"""The flat names of the nested settings: ``AUTHGATE_LOGIN_IP_MAX_FAILURES`` and TOML's
``login_ip_max_failures = 5`` set ``Settings.login.ip_max_failures``.

The nested models are the services' own configuration (``LoginLimits`` next to
``LoginProtection``), so their field names are the services' words; operators keep the
one flat name per setting that the README documents. The table below is the only place
that joins the two: everything else (reading the environment, folding the raw input,
naming a refused value, spotting a typo) is derived from it.

Pure functions: the caller passes the environment (see ``authgate.settings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

# flat name -> (group, field of the group's model)
NESTED: Mapping[str, tuple[str, str]] = {
    "login_ip_max_failures": ("login", "ip_max_failures"),
    "login_ip_window_seconds": ("login", "ip_window"),
    "login_pair_max_failures": ("login", "pair_max_failures"),
    "login_pair_window_seconds": ("login", "pair_window"),
    "login_pair_base_delay_seconds": ("login", "pair_base_delay"),
    "login_pair_max_delay_seconds": ("login", "pair_max_delay"),
    "login_account_max_failures": ("login", "account_max_failures"),
    "login_account_window_seconds": ("login", "account_window"),
    "login_account_slowdown_seconds": ("login", "account_slowdown"),
    "login_account_slowdown_max_seconds": ("login", "account_slowdown_max"),
    "login_known_ip_days": ("login", "known_ip_days"),
    "key_ip_max_failures": ("key_abuse", "max_failures"),
    "key_ip_window_seconds": ("key_abuse", "window"),
    "key_ip_block_seconds": ("key_abuse", "block_seconds"),
    "usage_log_successes": ("usage", "log_successes"),
    "usage_sample_per_key": ("usage", "sample_per_key"),
    "usage_flush_interval_seconds": ("usage", "flush_interval_seconds"),
    "usage_retention_days": ("usage", "retention_days"),
    "audit_retention_days": ("audit", "retention_days"),
    "audit_flush_interval_seconds": ("audit", "flush_interval_seconds"),
    "audit_checkpoint_interval_seconds": ("audit", "checkpoint_interval_seconds"),
    "audit_api_key_successes": ("audit", "api_key_successes"),
    "audit_key_idle_seconds": ("audit", "key_idle_seconds"),
    "audit_refusals_per_minute": ("audit", "refusals_per_minute"),
    "audit_refusals_per_minute_total": ("audit", "refusals_per_minute_total"),
    "argon2_time_cost": ("password_hashing", "time_cost"),
    "argon2_memory_kib": ("password_hashing", "memory_kib"),
    "argon2_parallelism": ("password_hashing", "parallelism"),
    "password_hashing_threads": ("password_hashing", "threads"),
    "password_hashing_queue": ("password_hashing", "queue_size"),
    "password_hashing_known_queue": ("password_hashing", "known_queue_size"),
    "password_hashing_queue_timeout_seconds": ("password_hashing", "queue_timeout"),
    "password_hashing_priority": ("password_hashing", "priority"),
    "password_hashing_nice": ("password_hashing", "nice"),
    "forward_auth_rules": ("forward_auth", "rules"),
    "forward_auth_unmatched": ("forward_auth", "unmatched"),
    "forward_auth_proxy": ("forward_auth", "proxy"),
    "forward_auth_method_header": ("forward_auth", "method_header"),
    "forward_auth_uri_header": ("forward_auth", "uri_header"),
    "forward_auth_case_sensitive": ("forward_auth", "case_sensitive"),
    "alert_webhook_url": ("alerts", "webhook_url"),
    "alert_webhook_secret": ("alerts", "webhook_secret"),
    "alert_webhook_timeout_seconds": ("alerts", "webhook_timeout_seconds"),
    "alert_syslog_target": ("alerts", "syslog_target"),
    "alert_email_to": ("alerts", "email_to"),
    "alert_delivery_retries": ("alerts", "delivery_retries"),
    "alert_evaluation_interval_seconds": ("alerts", "evaluation_interval_seconds"),
    "alert_max_subjects_per_window": ("alerts", "max_subjects_per_window"),
    "alert_rules": ("alerts", "rules"),
    "api_key_require_expiry": ("api_keys", "require_expiry"),
    "api_key_max_lifetime_days": ("api_keys", "max_lifetime_days"),
    "api_key_default_scopes": ("api_keys", "default_scopes"),
    "api_key_extra_scopes": ("api_keys", "extra_scopes"),
    "api_key_cache_size": ("api_keys", "cache_size"),
    "api_key_cache_ttl_seconds": ("api_keys", "cache_ttl_seconds"),
    "api_key_unknown_cache_size": ("api_keys", "unknown_cache_size"),
    "api_key_unknown_cache_ttl_seconds": ("api_keys", "unknown_cache_ttl_seconds"),
    "api_key_resume_on_reactivation": ("api_keys", "resume_on_reactivation"),
    "alert_smtp_host": ("mail", "smtp_host"),
    "alert_smtp_port": ("mail", "smtp_port"),
    "alert_smtp_starttls": ("mail", "smtp_starttls"),
    "alert_smtp_username": ("mail", "smtp_username"),
    "alert_smtp_password": ("mail", "smtp_password"),
    "alert_email_from": ("mail", "email_from"),
    "jwt_algorithm": ("tokens", "algorithm"),
    "jwt_issuer": ("tokens", "issuer"),
    "jwt_audience": ("tokens", "audience"),
    "token_ttl_seconds": ("tokens", "ttl_seconds"),
    "remember_me_ttl_seconds": ("tokens", "remember_me_ttl_seconds"),
    "refresh_reuse_interval_seconds": ("tokens", "refresh_reuse_interval_seconds"),
    "token_leeway_seconds": ("tokens", "leeway_seconds"),
    "access_token_query_param": ("tokens", "query_param"),
    "token_cache_size": ("tokens", "cache_size"),
    "user_cache_size": ("user_cache", "size"),
    "user_cache_ttl_seconds": ("user_cache", "ttl_seconds"),
    "password_min_length": ("password_policy", "min_length"),
    "password_max_length": ("password_policy", "max_length"),
    "password_refuse_common": ("password_policy", "refuse_common"),
    "tfa_required": ("second_factor", "required"),
    "tfa_issuer": ("second_factor", "issuer"),
    "tfa_unenrolled": ("second_factor", "unenrolled"),
    "tfa_bypass_header_addresses": ("second_factor", "bypass_header_addresses"),
    "host": ("http", "host"),
    "port": ("http", "port"),
    "workers": ("http", "workers"),
    "public_url": ("http", "public_url"),
    "access_log": ("http", "access_log"),
    "max_body_bytes": ("http", "max_body_bytes"),
    "max_header_bytes": ("http", "max_header_bytes"),
    "header_timeout_seconds": ("http", "header_timeout_seconds"),
    "body_timeout_seconds": ("http", "body_timeout_seconds"),
    "shutdown_timeout_seconds": ("http", "shutdown_timeout_seconds"),
    "max_connections": ("http", "max_connections"),
    "reset_page_url": ("http", "reset_page_url"),
}
GROUPS = frozenset(group for group, _ in NESTED.values())
FLAT: Mapping[tuple[str, str], str] = {path: flat for flat, path in NESTED.items()}


def flat_from_environment(variables: Mapping[str, str], prefix: str) -> dict[str, str]:
    """The flat names set in ``variables`` (case-insensitive, like every other variable)."""
    lowered = {name.lower(): value for name, value in variables.items()}
    return {
        flat: lowered[f"{prefix}{flat}".lower()]
        for flat in NESTED
        if f"{prefix}{flat}".lower() in lowered
    }


def fold(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (the raw settings input) with each flat name moved into its group.

    A flat name wins over the same setting in its group's table: the sources are merged
    before this runs, so a flat variable (the environment) and a ``[login]`` table (the
    config file) meet here, and the environment outranks the file.
    """
    result = {name: value for name, value in values.items() if name not in NESTED}
    for flat, (group, field) in NESTED.items():
        if flat not in values:
            continue
        nested = result.get(group)
        if isinstance(nested, BaseModel):
            nested = nested.model_dump(exclude_unset=True)
        elif not isinstance(nested, Mapping):
            nested = {}
        result[group] = {**nested, field: values[flat]}
    return result


def known_names(fields: Mapping[str, Any]) -> list[str]:
    """Every name a setting is given by: the top-level fields and the flat names."""
    return [name for name in fields if name not in GROUPS] + list(NESTED)
