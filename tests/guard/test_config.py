"""GuardConfig: values from arguments or from a mapping of variables, checked once."""

from __future__ import annotations

from typing import Any

import pytest

from authgate.guard import GuardConfig, GuardConfigError, GuardPrincipal, Requirement


def test_from_env_reads_the_documented_variables() -> None:
    config = GuardConfig.from_env(
        {
            "AUTHGATE_URL": "https://authgate.example.com",
            "AUTHGATE_JWT_ISSUER": "authgate-prod",
            "AUTHGATE_JWT_AUDIENCE": "orders",
            "AUTHGATE_TIMEOUT": "2.5",
        }
    )
    assert config.authgate_url == "https://authgate.example.com"
    assert config.issuer == "authgate-prod"
    assert config.audience == "orders"
    assert config.timeout == 2.5


def test_from_env_defaults_match_authgates_own() -> None:
    config = GuardConfig.from_env({"AUTHGATE_URL": "http://authgate:8080"})
    assert (config.issuer, config.audience) == ("authgate", "authgate")
    assert config.jwks_ttl == 300
    assert config.jwks_min_refetch_interval == 10
    assert config.key_cache_ttl == 10
    assert config.key_cache_size == 10_000


@pytest.mark.parametrize(
    "variables",
    [{}, {"AUTHGATE_URL": "  "}, {"AUTHGATE_URL": "http://a", "AUTHGATE_TIMEOUT": "soon"}],
)
def test_from_env_refuses_missing_or_bad_values(variables: dict[str, str]) -> None:
    with pytest.raises(GuardConfigError):
        GuardConfig.from_env(variables)


@pytest.mark.parametrize(
    "overrides",
    [
        {"authgate_url": "authgate:8080"},
        {"issuer": ""},
        {"algorithms": frozenset({"HS256"})},
        {"algorithms": frozenset()},
        {"timeout": 0},
        {"leeway": -1},
        {"key_cache_ttl": -1},
        {"local_jwt_max_age": -1},
        {"local_jwt_max_age": float("nan")},
        {"key_cache_size": -1},
        {"jwks_ttl": 5, "jwks_min_refetch_interval": 10},
        {"verify": False, "ca_bundle": "/etc/ssl/ca.pem"},
    ],
)
def test_bad_values_are_refused_at_construction(overrides: dict[str, Any]) -> None:
    values: dict[str, Any] = {"authgate_url": "https://authgate.example.com", **overrides}
    with pytest.raises(GuardConfigError):
        GuardConfig(**values)


def test_a_requirement_refuses_a_bare_string() -> None:
    """scopes="read" would otherwise mean the scopes r, e, a and d."""
    with pytest.raises(TypeError):
        Requirement.of(scopes="read")


def test_a_users_token_has_every_scope_a_key_only_its_own() -> None:
    user = GuardPrincipal(login="alice", user_id=1, roles=frozenset({"ROLE_USER"}), method="jwt")
    key = GuardPrincipal(
        login="alice",
        user_id=1,
        roles=frozenset({"ROLE_USER"}),
        method="api_key",
        key_id="Zx81QmT0aB3c",
        scopes=frozenset({"read"}),
    )
    assert user.has_scope("write")
    assert user.has_role("ROLE_USER")
    assert key.has_scope("read")
    assert not key.has_scope("write")
    assert not key.has_role("ROLE_ADMIN")


def test_local_jwt_max_age_defaults_to_5_minutes_and_is_read_from_the_environment() -> None:
    assert GuardConfig(authgate_url="https://authgate.example.com").local_jwt_max_age == 300
    config = GuardConfig.from_env(
        {"AUTHGATE_URL": "https://authgate.example.com", "AUTHGATE_LOCAL_JWT_MAX_AGE": "0"}
    )
    assert config.local_jwt_max_age == 0
    with pytest.raises(GuardConfigError, match="AUTHGATE_LOCAL_JWT_MAX_AGE"):
        GuardConfig.from_env({"AUTHGATE_URL": "http://a", "AUTHGATE_LOCAL_JWT_MAX_AGE": "5m"})
    with pytest.raises(GuardConfigError, match="local_jwt_max_age"):
        GuardConfig.from_env({"AUTHGATE_URL": "http://a", "AUTHGATE_LOCAL_JWT_MAX_AGE": "-1"})
