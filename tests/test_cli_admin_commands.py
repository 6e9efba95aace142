"""``authgate keys show|rotate|usage|list -o json`` and ``authgate users
reactivate|delete|roles|list -o json`` (issue 16 item 10): the operator's commands,
in-process with typer's CliRunner."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx2
import pytest

from authgate.app import create_app
from authgate.exceptions import BadCredentials
from authgate.settings import Settings
from tests.test_cli import (
    PASSWORD,
    assert_exits,
    authenticate,
    create_user,
    data_dir,  # noqa: F401 (a fixture)
    invoke,
    table_rows,
)

MICROSECONDS = re.compile(r"\d\d:\d\d:\d\d\.\d")
LONG_NAME = "nightly-export-to-the-finance-data-warehouse"
IPS = ["203.0.113.7", "198.51.100.0/24", "2001:db8:1234:5678::/64", "127.0.0.1"]


def json_of(*args: str, input: str | None = None) -> Any:
    result = invoke(*args, "-o", "json", input=input)
    assert_exits(result, 0)
    return json.loads(result.stdout)


def create_key(name: str = LONG_NAME, *ips: str) -> dict[str, Any]:
    options = [option for ip in ips for option in ("--allow-ip", ip)]
    created: dict[str, Any] = json_of("keys", "create", "--user", "bob", "--name", name, *options)
    return created


def call_with_key(key: str) -> int:
    """One request with the key through the app on the same data dir (its usage record
    is written when the app stops)."""

    async def call() -> int:
        app = create_app(Settings())
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app, client=("127.0.0.1", 5000))
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.get("/api/account", headers={"Utm-Api-Key": key})
        return response.status_code

    return asyncio.run(call())


def test_keys_list_json_is_the_rest_dto_and_the_table_cuts_nothing(
    data_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert_exits(create_user(), 0)
    created = create_key(LONG_NAME, *IPS)
    assert created["key"].startswith("agk_")
    assert created["allowedIp"] == IPS

    [listed] = json_of("keys", "list")
    assert listed["id"] == created["id"]
    assert listed["name"] == LONG_NAME
    assert listed["allowedIp"] == IPS
    assert {"createdAt", "expiresAt", "lastUsedAt", "userId", "prefix"} <= set(listed)
    assert "key" not in listed

    # A narrow screen or a pipe: the whole name and every address, dates to the second.
    monkeypatch.setenv("COLUMNS", "60")
    result = invoke("keys", "list")
    assert_exits(result, 0)
    assert LONG_NAME in result.stdout
    assert ", ".join(IPS) in result.stdout
    assert not MICROSECONDS.search(result.stdout)
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result.stdout)


def test_keys_create_message_has_no_microseconds(data_dir: Path) -> None:  # noqa: F811
    assert_exits(create_user(), 0)
    result = invoke("keys", "create", "--user", "bob", "--name", "ci")
    assert_exits(result, 0)
    assert re.search(r"expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", result.stderr)
    assert not MICROSECONDS.search(result.output)


def test_keys_create_refuses_a_lifetime_that_no_date_can_end(data_dir: Path) -> None:  # noqa: F811
    """A lifetime past the year 9999 is a bad option (exit 2), as a malformed one is,
    not a traceback; a long one within it gets the service's own limit (exit 1)."""
    assert_exits(create_user(), 0)
    for lifetime in ("3000000d", "99999999999999999999w"):
        result = invoke("keys", "create", "--user", "bob", "--name", "ci", "--expires-in", lifetime)
        assert_exits(result, 2)
        assert f"invalid duration '{lifetime}': at most 36500d" in result.stderr
    long = invoke("keys", "create", "--user", "bob", "--name", "ci", "--expires-in", "36500d")
    assert_exits(long, 1)
    assert "Expiration date must be within 365 days." in long.stderr


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (("keys", "create", "--user", "bob", "--name", "ci", "--expires-in", "5x"), "--expires-in"),
        (("keys", "rotate", "00000000-0000-0000-0000-000000000000", "--grace", "abc"), "--grace"),
        (("service-credentials", "rotate", "nosuchid", "--grace", "abc"), "--grace"),
        (("audit", "tail", "-n", "-1"), "--lines"),
    ],
)
def test_a_malformed_option_is_a_bad_option(
    data_dir: Path,  # noqa: F811
    command: tuple[str, ...],
    option: str,
) -> None:
    """README: a bad option is exit code 2, named, before anything is done (a malformed
    duration was exit 1, a refused operation; `audit tail -n -1` an SQL error on
    PostgreSQL, everything on SQLite)."""
    result = invoke(*command)
    assert_exits(result, 2)
    assert "Invalid value for" in result.stderr
    assert option in result.stderr


def test_keys_show(data_dir: Path) -> None:  # noqa: F811
    assert_exits(create_user(), 0)
    created = create_key("ci", "10.0.0.0/8")
    shown = json_of("keys", "show", str(created["id"]))
    assert shown == {name: value for name, value in created.items() if name != "key"}

    result = invoke("keys", "show", str(created["id"]))
    assert_exits(result, 0)
    facts = dict(row[:2] for row in table_rows(result.stdout))
    assert facts["name"] == "ci"
    assert facts["owner"] == "bob"
    assert facts["allowed IPs"] == "10.0.0.0/8"
    assert facts["last used"] == "never"

    missing = invoke("keys", "show", "999")
    assert_exits(missing, 1)
    assert "API key not found" in missing.output


def test_keys_rotate_prints_the_new_key_once_and_keeps_the_old_one_for_the_grace(
    data_dir: Path,  # noqa: F811
) -> None:
    assert_exits(create_user(), 0)
    created = create_key("ci")
    rotated = json_of("keys", "rotate", str(created["id"]), "--grace", "1h")
    assert rotated["key"] != created["key"]
    assert rotated["status"] == "rotating"
    assert rotated["rotationGraceUntil"] is not None
    assert call_with_key(rotated["key"]) == 200
    assert call_with_key(created["key"]) == 200  # within the grace period

    again = invoke("keys", "rotate", str(created["id"]))
    assert_exits(again, 0)
    assert "regenerated API key" in again.stderr
    newest = again.stdout.strip()
    assert newest.startswith("agk_")
    assert call_with_key(newest) == 200
    assert call_with_key(rotated["key"]) == 401  # no grace: the previous key is dead

    too_long = invoke("keys", "rotate", str(created["id"]), "--grace", "30d")
    assert_exits(too_long, 1)
    assert "between 0 seconds and 7 days" in too_long.output


def test_rotating_a_suspended_key_says_that_neither_key_works(
    data_dir: Path,  # noqa: F811
) -> None:
    """The README walkthrough: rotating a suspended key with a grace printed "the previous
    key works until ...", while the new key and the old one were both refused."""
    assert_exits(create_user(), 0)
    created = create_key("ci")
    assert_exits(invoke("users", "deactivate", "bob"), 0)
    assert_exits(invoke("users", "reactivate", "bob"), 0)
    rotated = invoke("keys", "rotate", str(created["id"]), "--grace", "1h")
    assert_exits(rotated, 0)
    assert "previous key works until" not in rotated.stderr
    assert "suspended: neither the new key nor the previous one works" in rotated.stderr
    assert call_with_key(rotated.stdout.strip()) == 401
    assert call_with_key(created["key"]) == 401


def test_keys_usage(data_dir: Path) -> None:  # noqa: F811
    assert_exits(create_user(), 0)
    created = create_key("ci", "10.0.0.0/8")
    assert call_with_key(created["key"]) == 403  # 127.0.0.1 is not allowed

    [record] = json_of("keys", "usage", "--key", str(created["id"]))
    assert record["apiKeyId"] == created["id"]
    assert record["endpoint"] == "/api/account"
    assert record["responseCode"] == 403
    assert record["ipAddress"] == "127.0.0.1"
    assert record["errorMessage"] == "ip_not_allowed"

    rows = table_rows(invoke("keys", "usage", "--failures").stdout)
    assert [(row[2], row[4], row[5], row[6]) for row in rows] == [
        ("127.0.0.1", "/api/account", "403", "ip_not_allowed")
    ]
    assert json_of("keys", "usage", "--key", "999") == []


def test_users_list_json(data_dir: Path) -> None:  # noqa: F811
    assert_exits(create_user(), 0)
    [user] = json_of("users", "list")
    assert user["login"] == "bob"
    assert user["authorities"] == ["ROLE_USER"]
    assert user["activated"] is True
    assert {"createdDate", "lastModifiedDate", "firstName"} <= set(user)
    table = invoke("users", "list").stdout
    assert not MICROSECONDS.search(table)


def test_users_reactivate(data_dir: Path) -> None:  # noqa: F811
    assert_exits(create_user(), 0)
    assert_exits(invoke("users", "deactivate", "bob"), 0)
    result = invoke("users", "reactivate", "bob")
    assert_exits(result, 0)
    assert "user bob reactivated" in result.stdout
    assert authenticate(data_dir, "bob", PASSWORD) == "bob"
    assert_exits(invoke("users", "reactivate", "nobody"), 1)


def test_users_reactivate_resumes_the_keys_when_configured(
    data_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With AUTHGATE_API_KEY_RESUME_ON_REACTIVATION the keys the deactivation suspended
    work again, as in UTMStack, and the command says so."""
    monkeypatch.setenv("AUTHGATE_API_KEY_RESUME_ON_REACTIVATION", "true")
    assert_exits(create_user(), 0)
    key = create_key("ci")["key"]
    assert_exits(invoke("users", "deactivate", "bob"), 0)
    assert call_with_key(key) == 401
    result = invoke("users", "reactivate", "bob")
    assert_exits(result, 0)
    assert "their suspended API keys work again" in result.stdout
    assert call_with_key(key) == 200


def test_users_rename(data_dir: Path) -> None:  # noqa: F811
    """`users rename OLD NEW`: the new login signs in, the old one no more; the API key
    keeps working under the new login; the new login follows creation's rules."""
    assert_exits(create_user(), 0)
    key = create_key("ci")["key"]
    result = invoke("users", "rename", "Bob", "Robert")
    assert_exits(result, 0)
    assert "user bob renamed to robert; their sessions have ended" in result.stdout
    assert authenticate(data_dir, "robert", PASSWORD) == "robert"
    with pytest.raises(BadCredentials):
        authenticate(data_dir, "bob", PASSWORD)
    assert call_with_key(key) == 200
    assert [row[1] for row in table_rows(invoke("users", "list").stdout)] == ["robert"]
    assert "already has that login" in invoke("users", "rename", "robert", "ROBERT").stdout
    reserved = invoke("users", "rename", "robert", "system")
    assert_exits(reserved, 1)
    assert "reserved" in reserved.output
    assert_exits(invoke("users", "rename", "nobody", "somebody"), 1)


def test_users_roles(data_dir: Path) -> None:  # noqa: F811
    assert_exits(create_user(), 0)
    assert invoke("users", "roles", "bob").stdout.strip() == "bob: ROLE_USER"
    granted = json_of("users", "roles", "bob", "--add", "ROLE_ADMIN")
    assert granted["authorities"] == ["ROLE_ADMIN", "ROLE_USER"]
    last_admin = invoke("users", "roles", "bob", "--remove", "ROLE_ADMIN")
    assert_exits(last_admin, 1)
    assert "At least one active administrator must remain" in last_admin.output
    assert_exits(create_user("carol", "c@example.com", "ROLE_ADMIN", "ROLE_USER"), 0)
    result = invoke("users", "roles", "bob", "--remove", "ROLE_ADMIN")
    assert_exits(result, 0)
    assert result.stdout.strip() == "bob: ROLE_USER"
    unknown = invoke("users", "roles", "bob", "--add", "ROLE_ROOT")
    assert_exits(unknown, 1)
    assert "unknown role ROLE_ROOT" in unknown.output


def test_users_delete(data_dir: Path) -> None:  # noqa: F811
    assert_exits(create_user(), 0)
    assert_exits(create_user("carol", "c@example.com"), 0)
    create_key("ci")
    refused = invoke("users", "delete", "bob", input="n\n")
    assert_exits(refused, 1)
    assert [row[1] for row in table_rows(invoke("users", "list").stdout)] == ["bob", "carol"]

    result = invoke("users", "delete", "bob", "--yes")
    assert_exits(result, 0)
    assert "user bob deleted" in result.stdout
    assert [user["login"] for user in json_of("users", "list")] == ["carol"]
    assert json_of("keys", "list", "--include-revoked") == []
    assert_exits(invoke("users", "delete", "bob", "--yes"), 1)
