"""Forward-auth rules and upstream path normalisation, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from authgate.exceptions import InsufficientScope, PermissionDenied
from authgate.security.principal import Principal
from authgate.services.forward_auth import ForwardAuthPolicy, upstream_path
from authgate.settings import ForwardAuthRuleSetting

Rule = ForwardAuthRuleSetting


def key(*scopes: str, roles: tuple[str, ...] = ("ROLE_USER",)) -> Principal:
    return Principal(
        user_id=1,
        login="alice",
        authorities=frozenset(roles),
        method="api_key",
        credential_id="abcdefghijkl",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        scopes=frozenset(scopes),
    )


def user(*roles: str) -> Principal:
    return Principal(
        user_id=2,
        login="bob",
        authorities=frozenset(roles or ("ROLE_USER",)),
        method="jwt",
        credential_id="jti",
        expires_at=None,
    )


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("/api/x?a=1", "/api/x"),
        ("/api/x#frag", "/api/x"),
        ("/public/../admin/x", "/admin/x"),
        ("/public/%2e%2e/admin/x", "/admin/x"),
        ("/public/%2E%2E%2Fadmin", "/admin"),
        ("//admin//x", "/admin/x"),
        ("/a/./b/", "/a/b/"),
        ("/../../etc", "/etc"),
        ("", "/"),
        ("/", "/"),
        ("api/x", "/api/x"),
        ("http://upstream.example/admin/x?q", "/admin/x"),
        ("/a/b/..", "/a/"),
        ("/caf%C3%A9", "/café"),
        ("/bad%ZZescape", "/bad%ZZescape"),
    ],
)
def test_upstream_paths_are_normalised(uri: str, path: str) -> None:
    assert upstream_path(uri) == path


def test_the_longest_prefix_wins_and_methods_narrow_a_rule() -> None:
    policy = ForwardAuthPolicy(
        [
            Rule(path_prefix="/api/", scopes=["write"]),
            Rule(path_prefix="/api/", methods=["get", "HEAD"], scopes=["read"]),
            Rule(path_prefix="/api/reports/", scopes=["reports"]),
        ]
    )
    # Same prefix: the first rule whose methods match (no methods: any) decides.
    assert policy.requirement("GET", "/api/x").scopes == {"write"}
    assert policy.requirement("GET", "/api/reports/1").scopes == {"reports"}
    assert policy.requirement("GET", "/api/reports").scopes == {"reports"}  # the directory
    assert policy.requirement("GET", "/api/reportsX").scopes == {"write"}


def test_methods_are_matched_in_upper_case() -> None:
    policy = ForwardAuthPolicy([Rule(path_prefix="/", methods=["get"], scopes=["read"])])
    assert policy.requirement("GET", "/x").scopes == {"read"}
    assert policy.requirement("POST", "/x").rule == "default"


def test_unmatched_requests_follow_authgates_own_rule_or_are_denied() -> None:
    lenient = ForwardAuthPolicy()
    lenient.requirement("GET", "/x").check(key("read"))
    with pytest.raises(InsufficientScope):
        lenient.requirement("POST", "/x").check(key("read"))
    lenient.requirement("POST", "/x").check(key("write"))
    lenient.requirement("POST", "/x").check(user())  # a user's token: full rights

    strict = ForwardAuthPolicy(unmatched="deny")
    with pytest.raises(PermissionDenied):
        strict.requirement("GET", "/x").check(user("ROLE_ADMIN"))


def test_scopes_bind_keys_and_roles_bind_everyone() -> None:
    policy = ForwardAuthPolicy(
        [
            Rule(path_prefix="/orders/", scopes=["orders:write", "read"]),
            Rule(path_prefix="/admin/", roles=["ROLE_ADMIN"]),
            Rule(path_prefix="/off/", allow=False),
        ]
    )
    orders = policy.requirement("POST", "/orders/1")
    orders.check(key("orders:write", "read"))
    with pytest.raises(InsufficientScope, match="orders:write"):
        orders.check(key("read", "write"))
    orders.check(user())

    admin = policy.requirement("GET", "/admin/users")
    admin.check(user("ROLE_ADMIN"))
    admin.check(key("read", roles=("ROLE_ADMIN", "ROLE_USER")))
    with pytest.raises(PermissionDenied, match="ROLE_ADMIN"):
        admin.check(user("ROLE_USER"))
    with pytest.raises(PermissionDenied):
        admin.check(key("read", "write", "admin"))  # the key's owner lacks the role

    with pytest.raises(PermissionDenied):
        policy.requirement("GET", "/off/x").check(user("ROLE_ADMIN"))


@pytest.mark.parametrize("method", ["G T", "GET1", "ÉTÉ", "X" * 21])
def test_rule_methods_must_be_http_methods(method: str) -> None:
    with pytest.raises(ValueError, match="not an HTTP method"):
        Rule(path_prefix="/", methods=[method])


@pytest.mark.parametrize("prefix", ["api/", "/a b", "/x?y", ""])
def test_rule_prefixes_must_be_paths(prefix: str) -> None:
    with pytest.raises(ValueError, match="path_prefix"):
        Rule(path_prefix=prefix)
