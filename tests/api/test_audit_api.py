"""The audit trail through HTTP: every flow records its event with the right actor,
outcome, reason, address and path; no secret reaches a record; search filters, paging
and sorting; CSV and JSON Lines export; chain verification over REST and the CLI."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from authgate.cli import app as cli_app
from authgate.clock import format_utc
from authgate.security import keys
from authgate.security.audit_chain import AuditKey
from authgate.security.audit_checkpoints import Checkpoint, sign_checkpoint
from authgate.security.signing_keys import KeyRing, generate_signing_key
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit_export import COLUMNS
from authgate.settings import Settings
from tests import audit_tampering as tampering
from tests.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    FakeClock,
    Harness,
    bearer,
    test_settings,
)

AUDIT = "/api/audit-events"
KEYS = "/api/api-keys"
OUTSIDER = "198.51.100.20"
NEW_PASSWORD = "a-new-password-of-hers"
WRONG_PASSWORD = "Distinctive-Wrong-Pa55word-7Qx"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Audit records are written only when a test flushes (no background flush races)."""
    return test_settings(
        tmp_path / "data", database_url=database_url, audit_flush_interval_seconds=60
    )


# -- helpers ------------------------------------------------------------------------------


async def recorded(harness: Harness, *types: str) -> list[dict[str, Any]]:
    """Flush, then every record (of ``types`` if given), oldest first, as the API shows it.
    The usage log first: its flush confirms an accepted key's notable uses."""
    await harness.services.usage.flush()
    await harness.services.audit.flush()
    admin = await fresh_admin_token(harness)
    params: list[tuple[str, str | int | float | bool | None]] = [("size", 1000), ("sort", "id,asc")]
    params += [("type", event_type) for event_type in types]
    response = await harness.client.get(AUDIT, params=params, headers=bearer(admin))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()
    return events


async def fresh_admin_token(harness: Harness) -> str:
    """An admin token valid at the fake clock's current time (logins are audited too)."""
    response = await harness.client.post(
        "/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["id_token"]
    return token


def one(events: list[dict[str, Any]], event_type: str, **matching: Any) -> dict[str, Any]:
    """The single event of ``event_type`` whose fields equal ``matching``."""
    found = [
        event
        for event in events
        if event["type"] == event_type
        and all(event[name] == value for name, value in matching.items())
    ]
    assert len(found) == 1, (event_type, matching, events)
    return found[0]


def expiry(clock: FakeClock, days: int = 30) -> str:
    return (clock() + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def key_header(key: str) -> dict[str, str]:
    return {"Utm-Api-Key": key}


async def user_id_of(harness: Harness, token: str) -> int:
    response = await harness.client.get("/api/account", headers=bearer(token))
    assert response.status_code == 200, response.text
    user_id: int = response.json()["id"]
    return user_id


def instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


# -- every flow records its event ---------------------------------------------------------


async def test_login_success_carries_actor_address_path_agent_and_request_id(
    harness: Harness, admin_token: str
) -> None:
    """A login is one AUTH_SUCCESS by that user, with the caller's IP, path, user agent
    and X-Request-ID as correlation id."""
    carol = await harness.create_user("carol", "orchid-password-123")
    response = await harness.client.post(
        "/api/authenticate",
        json={"username": "Carol", "password": "orchid-password-123"},
        headers={"User-Agent": "audit-test/1.0", "X-Request-ID": "req-login-1"},
    )
    assert response.status_code == 200

    event = one(await recorded(harness, "AUTH_SUCCESS"), "AUTH_SUCCESS", actor="carol")
    assert event["outcome"] == "success"
    assert event["userId"] == carol
    assert event["ipAddress"] == "127.0.0.1"
    assert event["path"] == "/api/authenticate"
    assert event["userAgent"] == "audit-test/1.0"
    assert event["correlationId"] == "req-login-1"
    assert event["reason"] is None
    assert event["apiKeyId"] is None


async def test_failed_logins_are_audited_with_precise_reasons(
    harness: Harness, admin_token: str
) -> None:
    """Wrong password, unknown user and deactivated user are AUTH_FAILURE events with
    the precise reason (the HTTP answer stays generic)."""
    carol = await harness.create_user("carol", "orchid-password-123")
    await harness.create_user("dave", "maple-password-1234", activated=False)
    attempts = [
        ("carol", WRONG_PASSWORD),
        ("nobody", WRONG_PASSWORD),
        ("dave", "maple-password-1234"),
    ]
    for username, password in attempts:
        response = await harness.client.post(
            "/api/authenticate", json={"username": username, "password": password}
        )
        assert response.status_code == 401

    failures = await recorded(harness, "AUTH_FAILURE")
    wrong = one(failures, "AUTH_FAILURE", actor="carol")
    assert (wrong["outcome"], wrong["reason"], wrong["userId"]) == (
        "failure",
        "wrong_password",
        carol,
    )
    assert wrong["ipAddress"] == "127.0.0.1"
    assert wrong["path"] == "/api/authenticate"
    unknown = one(failures, "AUTH_FAILURE", actor="nobody")
    assert (unknown["reason"], unknown["userId"]) == ("unknown_user", None)
    assert one(failures, "AUTH_FAILURE", actor="dave")["reason"] == "user_deactivated"


async def test_logout_and_logout_all_are_audited(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """POST /api/logout is a LOGOUT, POST /api/account/logout-all a LOGOUT_ALL, by the caller."""
    alice = await user_id_of(harness, user_token)
    assert (await harness.client.post("/api/logout", headers=bearer(user_token))).status_code == 204
    second = await harness.login("alice", USER_PASSWORD)
    response = await harness.client.post("/api/account/logout-all", headers=bearer(second))
    assert response.status_code == 204

    events = await recorded(harness, "LOGOUT", "LOGOUT_ALL")
    logout = one(events, "LOGOUT")
    assert (logout["actor"], logout["userId"], logout["outcome"]) == ("alice", alice, "success")
    assert logout["path"] == "/api/logout"
    everywhere = one(events, "LOGOUT_ALL")
    assert (everywhere["actor"], everywhere["userId"]) == ("alice", alice)
    assert everywhere["path"] == "/api/account/logout-all"
    assert everywhere["ipAddress"] == "127.0.0.1"


async def test_password_change_success_and_wrong_current_password(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """A wrong current password is a failed PASSWORD_CHANGED (wrong_current_password);
    a successful change is a successful one."""
    change = "/api/account/change-password"
    refused = await harness.client.post(
        change,
        json={"currentPassword": WRONG_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(user_token),
    )
    assert refused.status_code == 400
    accepted = await harness.client.post(
        change,
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(user_token),
    )
    assert accepted.status_code == 200, accepted.text

    events = await recorded(harness, "PASSWORD_CHANGED")
    assert [(e["outcome"], e["reason"]) for e in events] == [
        ("failure", "wrong_current_password"),
        ("success", None),
    ]
    assert {e["actor"] for e in events} == {"alice"}
    assert {e["path"] for e in events} == {change}


async def test_user_administration_names_the_admin_as_actor_and_the_target_in_details(
    harness: Harness, admin_token: str
) -> None:
    """USER_CREATED/UPDATED/DEACTIVATED/DELETED and PASSWORD_RESET: actor = the admin,
    details.user = the user changed."""
    admin = await user_id_of(harness, admin_token)
    auth = bearer(admin_token)
    client = harness.client
    created = await client.post(
        "/api/users",
        json={"login": "bob", "email": "bob@example.com", "password": "bob-password-123"},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    assert (
        await client.put("/api/users/bob", json={"firstName": "Bob"}, headers=auth)
    ).status_code == 200
    reset = await client.put(
        "/api/users/bob/password", json={"newPassword": "bob-new-password-1"}, headers=auth
    )
    assert reset.status_code == 204
    assert (
        await client.put("/api/users/bob", json={"activated": False}, headers=auth)
    ).status_code == 200
    assert (await client.delete("/api/users/bob", headers=auth)).status_code == 204

    types = ("USER_CREATED", "USER_UPDATED", "PASSWORD_RESET", "USER_DEACTIVATED", "USER_DELETED")
    events = [e for e in await recorded(harness, *types) if e["details"]["user"] == "bob"]
    assert [e["type"] for e in events] == list(types)
    for event in events:
        assert (event["actor"], event["userId"], event["outcome"]) == ("admin", admin, "success")
        assert event["ipAddress"] == "127.0.0.1"
    assert events[0]["details"] == {"user": "bob", "authorities": ["ROLE_USER"]}
    assert events[0]["path"] == "/api/users"
    assert events[1]["details"] == {"user": "bob", "changed": ["firstName"]}
    assert events[2]["path"] == "/api/users/bob/password"
    assert events[3]["details"] == {"user": "bob", "changed": ["activated"]}
    assert events[4]["path"] == "/api/users/bob"


async def test_users_created_outside_requests_are_by_the_operator(harness: Harness) -> None:
    """A change made without an HTTP request (CLI, start-up) names the operator, no address."""
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    await harness.create_user("erin", "willow-password-123")
    event = one(await recorded(harness, "USER_CREATED"), "USER_CREATED", details=_user("erin"))
    assert event["actor"] == "operator (CLI)"
    assert (event["ipAddress"], event["path"], event["userId"]) == (None, None, None)


def _user(login: str) -> dict[str, Any]:
    return {"user": login, "authorities": ["ROLE_USER"]}


async def test_api_key_management_events_name_the_key(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """API_KEY_CREATED/UPDATED/REGENERATED/REVOKED carry the key's id and (current) name,
    by the caller; the admin's revocation names the admin."""
    alice = await user_id_of(harness, user_token)
    created = await harness.create_key(user_token)
    key_id = created["id"]
    auth = bearer(user_token)
    renamed = await harness.client.put(
        f"{KEYS}/{key_id}",
        json={
            "name": "ci-deploy-2",
            "allowedIp": ["127.0.0.1"],
            "expiresAt": expiry(harness.clock),
        },
        headers=auth,
    )
    assert renamed.status_code == 200, renamed.text
    rotated = await harness.client.post(
        f"{KEYS}/{key_id}/generate", params={"graceSeconds": 60}, headers=auth
    )
    assert rotated.status_code == 200
    assert (await harness.client.delete(f"{KEYS}/{key_id}", headers=auth)).status_code == 204
    other = await harness.create_key(user_token, name="other")
    revoked = await harness.client.delete(f"{KEYS}/{other['id']}", headers=bearer(admin_token))
    assert revoked.status_code == 204

    types = ("API_KEY_CREATED", "API_KEY_UPDATED", "API_KEY_REGENERATED", "API_KEY_REVOKED")
    events = [e for e in await recorded(harness, *types) if e["apiKeyId"] == key_id]
    assert [e["type"] for e in events] == list(types)
    assert [e["apiKeyName"] for e in events] == [
        "ci-deploy",
        "ci-deploy-2",
        "ci-deploy-2",
        "ci-deploy-2",
    ]
    for event in events:
        assert (event["actor"], event["userId"], event["outcome"]) == ("alice", alice, "success")
    assert events[0]["details"] == {"owner": "alice"}
    assert events[0]["path"] == KEYS
    assert events[2]["details"] == {"graceSeconds": 60}
    assert events[2]["path"] == f"{KEYS}/{key_id}/generate"
    by_admin = one(
        await recorded(harness, "API_KEY_REVOKED"), "API_KEY_REVOKED", apiKeyId=other["id"]
    )
    assert (by_admin["actor"], by_admin["apiKeyName"]) == ("admin", "other")


async def test_api_key_access_success_and_refusals_are_audited(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """An accepted key is an API_KEY_ACCESS_SUCCESS of its owner; refusals are
    API_KEY_ACCESS_FAILURE with the precise reason and, when the key is known, its id."""
    alice = await user_id_of(harness, user_token)
    created = await harness.create_key(user_token)
    key, key_id = created["key"], created["id"]
    reader = await harness.create_key(user_token, name="reader", scopes=["read"])
    ok = await harness.client.get(
        "/api/account", headers={**key_header(key), "User-Agent": "deploy-bot/2.0"}
    )
    assert ok.status_code == 200
    async with harness.client_from(OUTSIDER) as outsider:
        assert (await outsider.get("/api/account", headers=key_header(key))).status_code == 403
    wrong_secret = keys.generate_secret_for(key[4:16]).plaintext
    answers = [
        await harness.client.get("/api/account", headers=key_header(wrong_secret)),
        await harness.client.get("/api/account", headers=key_header(keys.generate_key().plaintext)),
        await harness.client.get("/api/account", headers=bearer("agk_not-a-key")),
        await harness.client.post("/api/account/logout-all", headers=key_header(reader["key"])),
    ]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 403]

    events = await recorded(harness, "API_KEY_ACCESS_SUCCESS", "API_KEY_ACCESS_FAILURE")
    success = one(events, "API_KEY_ACCESS_SUCCESS", apiKeyId=key_id)
    assert (success["actor"], success["userId"], success["apiKeyName"]) == (
        "alice",
        alice,
        "ci-deploy",
    )
    assert (success["outcome"], success["ipAddress"], success["path"]) == (
        "success",
        "127.0.0.1",
        "/api/account",
    )
    assert success["userAgent"] == "deploy-bot/2.0"
    failures = [e for e in events if e["type"] == "API_KEY_ACCESS_FAILURE"]
    assert {e["outcome"] for e in failures} == {"failure"}
    by_reason = {e["reason"]: e for e in failures}
    assert set(by_reason) == {
        "ip_not_allowed",
        "wrong_secret",
        "unknown_key",
        "malformed_key",
        "scope_write",
    }
    assert (by_reason["ip_not_allowed"]["ipAddress"], by_reason["ip_not_allowed"]["apiKeyId"]) == (
        OUTSIDER,
        key_id,
    )
    assert by_reason["ip_not_allowed"]["apiKeyName"] == "ci-deploy"
    assert by_reason["wrong_secret"]["apiKeyId"] == key_id
    assert by_reason["unknown_key"]["apiKeyId"] is None
    assert by_reason["malformed_key"]["apiKeyId"] is None
    scope = by_reason["scope_write"]
    assert (scope["apiKeyId"], scope["actor"], scope["path"]) == (
        reader["id"],
        "alice",
        "/api/account/logout-all",
    )


async def test_expired_key_is_audited_as_expired(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """A genuine key past its expiry is refused with reason expired_key and its id."""
    created = await harness.create_key(user_token, days=1)
    harness.clock.advance(days=2)
    response = await harness.client.get("/api/account", headers=key_header(created["key"]))
    assert response.status_code == 401
    event = one(await recorded(harness, "API_KEY_ACCESS_FAILURE"), "API_KEY_ACCESS_FAILURE")
    assert (event["reason"], event["apiKeyId"]) == ("expired_key", created["id"])


async def test_rejected_tokens_are_audited_with_the_reason(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """Malformed, logged-out and expired bearer tokens are TOKEN_REJECTED with their reason,
    the request's address and path, and no actor."""
    garbage = await harness.client.get("/api/account", headers=bearer("eyJ-not-a-token"))
    assert garbage.status_code == 401
    other = await harness.login("alice", USER_PASSWORD)
    assert (await harness.client.post("/api/logout", headers=bearer(other))).status_code == 204
    assert (await harness.client.get("/api/account", headers=bearer(other))).status_code == 401
    harness.clock.advance(hours=2)
    expired = await harness.client.get("/api/users", headers=bearer(user_token))
    assert expired.status_code == 401

    events = await recorded(harness, "TOKEN_REJECTED")
    assert [(e["reason"], e["path"]) for e in events] == [
        ("malformed_token", "/api/account"),
        ("token_logged_out", "/api/account"),
        ("token_expired", "/api/users"),
    ]
    for event in events:
        assert (event["outcome"], event["actor"], event["ipAddress"]) == (
            "failure",
            None,
            "127.0.0.1",
        )


async def test_lockouts_are_audited(harness: Harness, admin_token: str) -> None:
    """Five failures for one account from one address lock the pair (AUTH_LOCKOUT
    account_ip_blocked); ten from one address block it (AUTH_LOCKOUT ip_blocked); refused
    attempts afterwards are AUTH_FAILURE with the block as reason."""
    await harness.create_user("carol", "orchid-password-123")
    statuses = []
    for _ in range(6):
        response = await harness.client.post(
            "/api/authenticate", json={"username": "carol", "password": WRONG_PASSWORD}
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    async with harness.client_from("203.0.113.7") as attacker:
        for number in range(11):
            response = await attacker.post(
                "/api/authenticate",
                json={"username": f"guess{number}", "password": WRONG_PASSWORD},
            )
            statuses.append(response.status_code)
    assert statuses[6:] == [401] * 10 + [423]

    events = await recorded(harness, "AUTH_LOCKOUT", "AUTH_FAILURE")
    pair = one(events, "AUTH_LOCKOUT", actor="carol")
    assert (pair["outcome"], pair["reason"], pair["ipAddress"]) == (
        "failure",
        "account_ip_blocked",
        "127.0.0.1",
    )
    assert pair["details"] == {"retryAfter": 30, "strikes": 1}
    address = one(events, "AUTH_LOCKOUT", reason="ip_blocked")
    assert (address["actor"], address["ipAddress"]) == ("guess9", "203.0.113.7")
    throttled = [e for e in events if e["type"] == "AUTH_FAILURE" and e["actor"] == "carol"]
    assert [e["reason"] for e in throttled] == ["wrong_password"] * 5 + ["account_ip_blocked"]
    assert one(events, "AUTH_FAILURE", actor="guess10")["reason"] == "ip_blocked"


async def test_too_many_bad_keys_from_one_address_is_audited(
    harness: Harness, admin_token: str
) -> None:
    """Twenty unknown keys from one address: IP_BLOCKED with the address; the next key
    request is refused and audited as ip_blocked_for_keys."""
    async with harness.client_from("203.0.113.9") as attacker:
        for _ in range(20):
            response = await attacker.get(
                "/api/account", headers=key_header(keys.generate_key().plaintext)
            )
            assert response.status_code == 401
        blocked = await attacker.get(
            "/api/account", headers=key_header(keys.generate_key().plaintext)
        )
    assert blocked.status_code == 429
    events = await recorded(harness, "IP_BLOCKED", "API_KEY_ACCESS_FAILURE")
    block = one(events, "IP_BLOCKED")
    assert (block["reason"], block["ipAddress"]) == ("too_many_invalid_keys", "203.0.113.9")
    assert block["details"]["address"] == "203.0.113.9"
    refusals = [e["reason"] for e in events if e["type"] == "API_KEY_ACCESS_FAILURE"]
    assert refusals == ["unknown_key"] * 20 + ["ip_blocked_for_keys"]


# -- no secrets -----------------------------------------------------------------------------


async def test_no_password_token_key_or_pepper_reaches_the_audit_or_usage_tables(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """After logins, key use, a password change, a failed login and a rotation, no column
    of any audit or usage row holds a password, a JWT, a key, a key's secret or the pepper."""
    created = await harness.create_key(user_token)
    first_key = created["key"]
    auth = bearer(user_token)
    assert (
        await harness.client.get("/api/account", headers=key_header(first_key))
    ).status_code == 200
    assert (
        await harness.client.get(f"/api/account?access_token={user_token}", headers=auth)
    ).status_code == 200
    async with harness.client_from(OUTSIDER) as outsider:
        await outsider.get("/api/account", headers=key_header(first_key))
    wrong_secret = keys.generate_secret_for(first_key[4:16]).plaintext
    await harness.client.get("/api/account", headers=key_header(wrong_secret))
    changed = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=auth,
    )
    assert changed.status_code == 200
    harness.clock.advance(seconds=1)  # tokens issued at the change's instant count as before it
    failed = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": WRONG_PASSWORD}
    )
    assert failed.status_code == 401
    second_token = await harness.login("alice", NEW_PASSWORD)
    rotated = await harness.client.post(
        f"{KEYS}/{created['id']}/generate", headers=bearer(second_token)
    )
    assert rotated.status_code == 200
    second_key = rotated.text
    assert (
        await harness.client.get("/api/account", headers=key_header(second_key))
    ).status_code == 200
    await harness.client.get("/api/account", headers=bearer(user_token))  # revoked by the change
    await harness.services.audit.flush()
    await harness.services.usage.flush()

    async with harness.services.db.session() as session:
        rows = [
            *(await session.execute(text("SELECT * FROM audit_events"))).all(),
            *(await session.execute(text("SELECT * FROM api_key_usage"))).all(),
        ]
    stored = "\n".join(str(value) for row in rows for value in row)
    for marker in ("API_KEY_REGENERATED", "wrong_password", "wrong_secret", "ip_not_allowed"):
        assert marker in stored  # the flow ran
    pepper: bytes = harness.services.api_keys._pepper  # the test reads it to look for it
    secrets = {
        "admin password": ADMIN_PASSWORD,
        "old password": USER_PASSWORD,
        "new password": NEW_PASSWORD,
        "wrong password": WRONG_PASSWORD,
        "pepper (base64)": base64.b64encode(pepper).decode(),
        "pepper (hex)": pepper.hex(),
        "pepper (raw)": pepper.decode("latin-1"),
    }
    for name, token in (("admin", admin_token), ("alice", user_token), ("alice 2", second_token)):
        secrets[f"{name} JWT"] = token
        secrets[f"{name} JWT signature"] = token.rsplit(".", 1)[1]
    for name, key in (("first", first_key), ("second", second_key), ("forged", wrong_secret)):
        secrets[f"{name} key"] = key
        secrets[f"{name} key secret"] = key[17:60]
    leaked = [name for name, secret in secrets.items() if secret in stored]
    assert leaked == []


# -- search: filters, paging, sorting, access -----------------------------------------------


async def _varied_events(harness: Harness, user_token: str) -> dict[str, Any]:
    """Events spread over four minutes of fake time, from two addresses, by a user and a key."""
    created = await harness.create_key(user_token)
    harness.clock.advance(minutes=1)
    await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": WRONG_PASSWORD}
    )
    harness.clock.advance(minutes=1)
    await harness.client.get("/api/account", headers=key_header(created["key"]))
    async with harness.client_from(OUTSIDER) as outsider:
        await outsider.get("/api/account", headers=key_header(created["key"]))
        await outsider.post(
            "/api/authenticate", json={"username": "alice", "password": WRONG_PASSWORD}
        )
    harness.clock.advance(minutes=1)
    await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )
    harness.clock.advance(minutes=1)
    return created


async def search(
    harness: Harness, token: str, params: Iterable[tuple[str, Any]]
) -> httpx2.Response:
    response = await harness.client.get(AUDIT, params=list(params), headers=bearer(token))
    assert response.status_code == 200, response.text
    return response


async def test_search_filters_match_the_records_they_name(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """type (repeated), outcome, actor (login or key name), ip, from/to and apiKeyId each
    return exactly the records they describe."""
    created = await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    everything = await recorded(harness)
    ids = [event["id"] for event in everything]
    assert ids == sorted(ids)
    start = instant(everything[0]["timestamp"])
    window = (start + timedelta(minutes=1), start + timedelta(minutes=3))

    cases: list[tuple[list[tuple[str, Any]], Callable[[dict[str, Any]], bool]]] = [
        (
            [("type", "AUTH_SUCCESS"), ("type", "API_KEY_ACCESS_FAILURE")],
            lambda e: e["type"] in ("AUTH_SUCCESS", "API_KEY_ACCESS_FAILURE"),
        ),
        ([("outcome", "failure")], lambda e: e["outcome"] == "failure"),
        ([("outcome", "success")], lambda e: e["outcome"] == "success"),
        ([("actor", "alice")], lambda e: e["actor"] == "alice"),
        ([("actor", "ci-deploy")], lambda e: e["apiKeyName"] == "ci-deploy"),
        ([("ip", OUTSIDER)], lambda e: e["ipAddress"] == OUTSIDER),
        ([("apiKeyId", created["id"])], lambda e: e["apiKeyId"] == created["id"]),
        (
            [("from", window[0].isoformat()), ("to", window[1].isoformat())],
            lambda e: window[0] <= instant(e["timestamp"]) < window[1],
        ),
        (
            [("outcome", "failure"), ("ip", OUTSIDER), ("type", "AUTH_FAILURE")],
            lambda e: e["type"] == "AUTH_FAILURE" and e["ipAddress"] == OUTSIDER,
        ),
    ]
    for params, wanted in cases:
        expected = [event["id"] for event in everything if wanted(event)]
        assert 0 < len(expected) < len(everything), params  # the filter means something
        response = await search(harness, admin, [("size", 1000), ("sort", "id,asc"), *params])
        assert [event["id"] for event in response.json()] == expected, params
        assert response.headers["X-Total-Count"] == str(len(expected)), params


async def test_search_pages_with_total_count_and_link_header(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """Pages of 3, newest first: X-Total-Count is the total, Link names next/prev/last/first,
    and the pages together are every record once."""
    await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    everything = await recorded(harness)
    total = len(everything)
    assert total > 6
    last = (total - 1) // 3
    seen: list[int] = []
    for number in range(last + 1):
        response = await search(harness, admin, [("page", number), ("size", 3)])
        assert response.headers["X-Total-Count"] == str(total)
        links = response.headers["Link"]
        assert f'page={last}&size=3>; rel="last"' in links
        assert 'page=0&size=3>; rel="first"' in links
        assert (f'page={number + 1}&size=3>; rel="next"' in links) == (number < last)
        assert (f'page={number - 1}&size=3>; rel="prev"' in links) == (number > 0)
        seen += [event["id"] for event in response.json()]
    assert seen == sorted((event["id"] for event in everything), reverse=True)


async def test_search_sorts_by_id_type_and_timestamp(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """Newest first by default; sort=id,asc, sort=type,asc and sort=timestamp,desc order the
    records; an unknown sort field is a 400."""
    await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    await harness.services.audit.flush()
    default = [e["id"] for e in (await search(harness, admin, [("size", 1000)])).json()]
    assert default == sorted(default, reverse=True)
    ascending = [
        e["id"] for e in (await search(harness, admin, [("sort", "id,asc"), ("size", 1000)])).json()
    ]
    assert ascending == sorted(default)
    by_type = (await search(harness, admin, [("sort", "type,asc"), ("size", 1000)])).json()
    assert [e["type"] for e in by_type] == sorted(e["type"] for e in by_type)
    assert len({e["type"] for e in by_type}) > 3
    by_time = (await search(harness, admin, [("sort", "timestamp,desc"), ("size", 1000)])).json()
    times = [instant(e["timestamp"]) for e in by_time]
    assert times == sorted(times, reverse=True)
    assert times[0] > times[-1]
    bad = await harness.client.get(AUDIT, params={"sort": "hash,asc"}, headers=bearer(admin))
    assert bad.status_code == 400


@pytest.mark.parametrize(
    "path", [AUDIT, f"{AUDIT}/export", f"{AUDIT}/verify", f"{AUDIT}/checkpoints"]
)
async def test_audit_endpoints_are_for_admins_only(
    harness: Harness, admin_token: str, user_token: str, path: str
) -> None:
    """Anonymous callers get 401, ordinary users and keys without the admin scope 403."""
    created = await harness.create_key(user_token)
    assert (await harness.client.get(path)).status_code == 401
    assert (await harness.client.get(path, headers=bearer(user_token))).status_code == 403
    assert (await harness.client.get(path, headers=key_header(created["key"]))).status_code == 403
    assert (await harness.client.get(path, headers=bearer(admin_token))).status_code == 200


async def test_search_rejects_unknown_event_types(harness: Harness, admin_token: str) -> None:
    """An unknown type is a 400, not an empty result."""
    response = await harness.client.get(
        AUDIT, params={"type": "NOT_A_TYPE"}, headers=bearer(admin_token)
    )
    assert response.status_code == 400


# -- export -----------------------------------------------------------------------------------


async def test_csv_export_has_the_columns_and_every_record_oldest_first(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """CSV: a header of the public field names, then one row per record, oldest first,
    equal to the search API; details as JSON."""
    await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    everything = await recorded(harness)
    response = await harness.client.get(f"{AUDIT}/export", headers=bearer(admin))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="audit-events.csv"' in response.headers["content-disposition"]

    header, *rows = list(csv.reader(io.StringIO(response.text)))
    assert header == list(COLUMNS)
    assert len(rows) == len(everything)
    for row, event in zip(rows, everything, strict=True):
        exported = dict(zip(header, row, strict=True))
        assert int(exported["id"]) == event["id"]
        assert instant(exported["timestamp"]) == instant(event["timestamp"])
        for column in ("type", "outcome", "actor", "apiKeyName", "ipAddress", "path", "reason"):
            assert exported[column] == (event[column] or ""), column
        assert exported["hash"] == event["hash"]
        details = json.loads(exported["details"]) if exported["details"] else None
        assert details == event["details"]
    assert any(event["details"] for event in everything)

    failures = await harness.client.get(
        f"{AUDIT}/export", params={"type": "AUTH_FAILURE"}, headers=bearer(admin)
    )
    _, *failure_rows = list(csv.reader(io.StringIO(failures.text)))
    expected = [str(e["id"]) for e in everything if e["type"] == "AUTH_FAILURE"]
    assert [row[0] for row in failure_rows] == expected
    assert expected


async def test_json_lines_export_matches_the_search_api(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """format=json: one JSON object per line, oldest first, with the search API's fields."""
    await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    everything = await recorded(harness)
    response = await harness.client.get(
        f"{AUDIT}/export", params={"format": "json"}, headers=bearer(admin)
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert response.text.endswith("\n")
    exported = [json.loads(line) for line in lines]
    assert len(exported) == len(everything)
    for record, event in zip(exported, everything, strict=True):
        assert set(record) == set(event)
        assert instant(record.pop("timestamp")) == instant(event["timestamp"])
        assert record == {name: value for name, value in event.items() if name != "timestamp"}


# -- verification ---------------------------------------------------------------------------


async def test_verify_endpoint_reports_intact_then_the_edited_record(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """GET /verify: intact with the number checked; after an UPDATE of one record's reason,
    broken at that record."""
    await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    everything = await recorded(harness)
    intact = await harness.client.get(f"{AUDIT}/verify", headers=bearer(admin))
    assert intact.json() == {
        "intact": True,
        "verdict": "intact",
        "checked": len(everything),
        "firstBrokenId": None,
        "problem": None,
        "keyedFrom": everything[0]["id"],
        "checkpoint": None,
    }
    victim = next(e for e in everything if e["reason"] == "wrong_password")
    async with harness.services.db.transaction() as session:
        await session.execute(
            text("UPDATE audit_events SET reason = 'edited' WHERE id = :id"), {"id": victim["id"]}
        )
    broken = (await harness.client.get(f"{AUDIT}/verify", headers=bearer(admin))).json()
    assert broken["intact"] is False
    assert broken["firstBrokenId"] == victim["id"]
    assert broken["checked"] == [e["id"] for e in everything].index(victim["id"])
    assert broken["problem"]


# -- command line -----------------------------------------------------------------------------


@pytest.fixture
def cli_environment(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's settings point at the harness's database and data dir."""
    settings = harness.services.settings
    monkeypatch.setenv("AUTHGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("AUTHGATE_ARGON2_MEMORY_KIB", "8")
    monkeypatch.setenv("AUTHGATE_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("COLUMNS", "250")


async def cli(*args: str) -> Result:
    """Run ``authgate <args>`` in a thread (the CLI runs its own event loop)."""
    return await asyncio.to_thread(lambda: CliRunner().invoke(cli_app, list(args)))


def assert_exits(result: Result, code: int) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit | None), repr(result.exception)


async def test_cli_verify_exits_0_when_intact_and_1_at_the_edited_record(
    harness: Harness, admin_token: str, user_token: str, cli_environment: None
) -> None:
    """`authgate audit verify` prints the count and exits 0; after an edit it names the
    record and exits 1."""
    await _varied_events(harness, user_token)
    everything = await recorded(harness)
    intact = await cli("audit", "verify")
    assert_exits(intact, 0)
    assert f"audit chain intact: {len(everything)} records verified" in intact.stdout

    victim = everything[len(everything) // 2]
    async with harness.services.db.transaction() as session:
        await session.execute(
            text("UPDATE audit_events SET actor_login = 'mallory' WHERE id = :id"),
            {"id": victim["id"]},
        )
    broken = await cli("audit", "verify")
    assert_exits(broken, 1)
    assert f"at record {victim['id']}" in broken.stderr


async def test_cli_export_json_and_tail(
    harness: Harness,
    admin_token: str,
    user_token: str,
    cli_environment: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`audit export --format json` writes every record as JSON Lines (as the API shows
    them); `audit tail -n 5` prints the five newest, oldest of them first, each on one
    whole line however narrow the terminal, its time in ISO 8601 UTC to the second."""
    await _varied_events(harness, user_token)
    everything = await recorded(harness)

    exported = await cli("audit", "export", "--format", "json")
    assert_exits(exported, 0)
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["id"] for r in records] == [e["id"] for e in everything]
    assert [(r["type"], r["actor"], r["reason"]) for r in records] == [
        (e["type"], e["actor"], e["reason"]) for e in everything
    ]
    assert [r["hash"] for r in records] == [e["hash"] for e in everything]

    bad = await cli("audit", "export", "--format", "xml")
    assert_exits(bad, 2)  # a bad option, as typer refuses one
    assert "'xml' is not one of 'csv', 'json'" in bad.output

    monkeypatch.setenv("COLUMNS", "40")
    tail = await cli("audit", "tail", "-n", "5")
    assert_exits(tail, 0)
    lines = tail.stdout.splitlines()
    newest = everything[-5:]
    assert len(lines) == 5
    for line, event in zip(lines, newest, strict=True):
        fields = line.split()
        when = format_utc(instant(event["timestamp"]), timespec="seconds")
        assert fields[:3] == [when, event["type"], event["outcome"]], line
        key_name = f"key {event['apiKeyName']}" if event["apiKeyName"] else "-"
        who = event["actor"] or key_name
        assert who in line
        if event["reason"]:
            assert line.endswith(event["reason"])


async def test_cli_tail_refuses_an_unknown_type_with_the_valid_ones(
    harness: Harness, admin_token: str, user_token: str, cli_environment: None
) -> None:
    """`audit tail --type NOPE` is a bad option (exit 2) listing the valid types (the REST
    API's, which refuses it with a 400), not an empty listing that looks like no match;
    a known type filters."""
    await _varied_events(harness, user_token)
    failures = await recorded(harness, "AUTH_FAILURE")
    assert failures

    unknown = await cli("audit", "tail", "--type", "NOPE")
    assert_exits(unknown, 2)
    assert "'NOPE' is not one of" in unknown.output
    for event_type in EventType:
        assert f"'{event_type.value}'" in unknown.output

    known = await cli("audit", "tail", "-n", "1000", "--type", "AUTH_FAILURE")
    assert_exits(known, 0)
    lines = known.stdout.splitlines()
    assert len(lines) == len(failures)
    assert all(line.split()[1] == "AUTH_FAILURE" for line in lines)


@pytest.mark.parametrize("option", ["--since", "--until"])
async def test_cli_export_refuses_a_time_with_no_utc_form(
    harness: Harness, cli_environment: None, option: str
) -> None:
    """A time outside the years 1 to 9999 in UTC is a bad option (exit 2, in words), as
    a malformed time is; it never reaches the database as a traceback."""
    for moment in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        result = await cli("audit", "export", "--format", "csv", option, moment)
        assert_exits(result, 2)
        assert "out of range" in result.output
    in_range = await cli("audit", "export", "--format", "json", option, "2026-01-01T00:00:00+01:00")
    assert_exits(in_range, 0)


async def test_cli_tail_prints_typed_logins_as_text_on_one_line(
    harness: Harness, cli_environment: None
) -> None:
    """A failed login's typed name is anyone's text: `audit tail` shows it as it is,
    never as Rich markup (``[/x]`` crashed the command, ``[link=...]`` made a
    hyperlink), and a NEL or a bidi control cannot split or disguise its line (they
    are stored as U+FFFD)."""
    typed = ["[/x]", "[red]x[/red][link=http://e.x/]y", "m\u0085 08:35 AUTH_SUCCESS", "a\u202eb"]
    for username in typed:
        response = await harness.client.post(
            "/api/authenticate", json={"username": username, "password": "not-the-password"}
        )
        assert response.status_code == 401, response.text
    await harness.services.audit.flush()
    tail = await cli("audit", "tail", "-n", str(len(typed)))
    assert_exits(tail, 0)
    lines = tail.stdout.splitlines()
    assert len(lines) == len(typed), tail.stdout
    assert "[/x]" in lines[0]
    assert "[red]x[/red][link=http://e.x/]y" in lines[1]
    assert "m\ufffd 08:35 auth_success" in lines[2]  # (typed logins are kept lower-case)
    assert "a\ufffdb" in lines[3]


# -- the keyed chain against the attacks, and checkpoints, over REST and the CLI -----------


async def attack_newest(harness: Harness) -> None:
    await tampering.delete_newest_and_repoint_head(harness.services.db, 2, drop_mac=False)


async def attack_oldest(harness: Harness) -> None:
    await tampering.delete_oldest_with_forged_anchor(harness.services.db, 2, mac=None)


async def attack_rewrite_sha256(harness: Harness) -> None:
    victim = (await tampering.ids(harness.services.db))[3]
    await tampering.rewrite_and_rehash(
        harness.services.db, victim, tampering.sha256_hasher(), reason="edited"
    )


async def attack_rewrite_wrong_key(harness: Harness) -> None:
    wrong = AuditKey(os.urandom(32))
    victim = (await tampering.ids(harness.services.db))[3]
    await tampering.rewrite_and_rehash(
        harness.services.db,
        victim,
        tampering.wrong_key_hasher(wrong),
        head_mac=lambda i, h: wrong.link_mac("head", i, h),
        reason="edited",
    )


ATTACKS = {
    "delete-newest-repoint-head": (attack_newest, "truncated"),
    "delete-oldest-forged-anchor": (attack_oldest, "truncated"),
    "rewrite-rehash-sha256": (attack_rewrite_sha256, "forged"),
    "rewrite-rehash-wrong-key": (attack_rewrite_wrong_key, "forged"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_verify_endpoint_reports_each_attack_by_a_database_writer(
    harness: Harness, admin_token: str, user_token: str, attack: str
) -> None:
    """GET /verify after each attack of the issue, done with raw SQL: not intact, with
    the verdict naming what happened."""
    await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    await recorded(harness)
    run, verdict = ATTACKS[attack]
    await run(harness)
    result = (await harness.client.get(f"{AUDIT}/verify", headers=bearer(admin))).json()
    assert result["intact"] is False, result
    assert result["verdict"] == verdict
    assert result["problem"]


async def published_checkpoint(harness: Harness, admin: str) -> dict[str, Any]:
    """A checkpoint of the current head, as GET /checkpoints lists it."""
    await harness.services.audit.flush()
    assert await harness.services.checkpoints.publish("command_line") is not None
    response = await harness.client.get(f"{AUDIT}/checkpoints", headers=bearer(admin))
    assert response.status_code == 200, response.text
    newest: dict[str, Any] = response.json()[0]
    return newest


async def test_verify_against_a_checkpoint_by_query_and_by_body(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """?checkpoint=<JWS> and a POSTed checkpoint JSON (as listed) are compared with the
    chain: matches while intact; after the newest records are cut, truncated."""
    await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    listed = await published_checkpoint(harness, admin)
    by_query = await harness.client.get(
        f"{AUDIT}/verify", params={"checkpoint": listed["checkpoint"]}, headers=bearer(admin)
    )
    assert by_query.status_code == 200, by_query.text
    assert by_query.json()["intact"] is True
    assert by_query.json()["checkpoint"]["status"] == "matches"
    assert by_query.json()["checkpoint"]["position"] == listed["position"]

    await attack_newest(harness)
    by_body = await harness.client.post(f"{AUDIT}/verify", json=listed, headers=bearer(admin))
    assert by_body.status_code == 200, by_body.text
    result = by_body.json()
    assert (result["intact"], result["verdict"]) == (False, "truncated")
    assert result["checkpoint"]["status"] == "truncated"


@pytest.mark.parametrize(
    "checkpoint",
    ["not-a-checkpoint", "a.b.c", "e30.e30.e30", "x" * 4096],
)
async def test_a_bad_checkpoint_is_a_400_never_a_500(
    harness: Harness, admin_token: str, checkpoint: str
) -> None:
    for response in (
        await harness.client.get(
            f"{AUDIT}/verify", params={"checkpoint": checkpoint}, headers=bearer(admin_token)
        ),
        await harness.client.post(
            f"{AUDIT}/verify", json={"checkpoint": checkpoint}, headers=bearer(admin_token)
        ),
    ):
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["code"] == "validation_failed"
        assert body["fieldErrors"][0]["field"] == "checkpoint"


async def test_a_checkpoint_with_a_changed_claim_or_another_signer_is_refused(
    harness: Harness, admin_token: str, user_token: str
) -> None:
    """The JWS's claims cannot be edited (position moved), and a checkpoint signed by
    another deployment's key is not accepted: both 400."""
    await _varied_events(harness, user_token)
    admin = await fresh_admin_token(harness)
    listed = await published_checkpoint(harness, admin)
    header, payload, signature = listed["checkpoint"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["position"] = 1
    moved = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    stranger = sign_checkpoint(
        KeyRing([generate_signing_key("ES256", now=harness.clock())]),
        Checkpoint(position=1, hash="0" * 64, time=harness.clock(), node="x"),
        issuer="authgate",
    )
    for candidate in (f"{header}.{moved}.{signature}", stranger):
        response = await harness.client.post(
            f"{AUDIT}/verify", json={"checkpoint": candidate}, headers=bearer(admin)
        )
        assert response.status_code == 400, response.text


async def test_checkpoints_are_listed_newest_first_with_paging(
    harness: Harness, admin_token: str
) -> None:
    for round_number in range(3):
        harness.services.audit.record(
            EventType.AUTH_SUCCESS, "success", actor=Actor(login=f"c{round_number}")
        )
        await harness.services.audit.flush()
        assert await harness.services.checkpoints.publish("interval") is not None
    response = await harness.client.get(
        f"{AUDIT}/checkpoints", params={"size": 2}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert response.headers["x-total-count"] == "3"
    assert 'rel="next"' in response.headers["link"]
    listed = response.json()
    assert [c["position"] for c in listed] == sorted((c["position"] for c in listed), reverse=True)
    assert set(listed[0]) == {"id", "time", "node", "position", "hash", "reason", "checkpoint"}
    bad = await harness.client.get(
        f"{AUDIT}/checkpoints", params={"sort": "token,asc"}, headers=bearer(admin_token)
    )
    assert bad.status_code == 400


async def test_cli_verify_with_a_checkpoint_file_reports_truncation(
    harness: Harness, admin_token: str, user_token: str, cli_environment: None, tmp_path: Path
) -> None:
    """`authgate audit checkpoint` prints the checkpoint JSON; `audit verify --checkpoint`
    accepts it (or just its JWS) and exits 0 while intact, 1 naming the truncation after
    the newest records were cut; an unreadable or invalid file exits 2."""
    await _varied_events(harness, user_token)
    await recorded(harness)
    printed = await cli("audit", "checkpoint")
    assert_exits(printed, 0)
    published = json.loads(printed.stdout)
    as_json, as_jws = tmp_path / "checkpoint.json", tmp_path / "checkpoint.jws"
    as_json.write_text(printed.stdout)
    as_jws.write_text(published["checkpoint"] + "\n")
    when = format_utc(instant(published["time"]), timespec="seconds")
    for path in (as_json, as_jws):
        intact = await cli("audit", "verify", "--checkpoint", str(path))
        assert_exits(intact, 0)
        assert "audit chain intact" in intact.stdout
        assert f"checkpoint of record {published['position']} ({when}, " in intact.stdout

    await attack_newest(harness)
    broken = await cli("audit", "verify", "--checkpoint", str(as_json))
    assert_exits(broken, 1)
    assert "audit chain truncated" in broken.stderr

    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a checkpoint")
    for path in (garbage, tmp_path / "missing.jws"):
        refused = await cli("audit", "verify", "--checkpoint", str(path))
        assert_exits(refused, 2)
        assert "checkpoint" in refused.stderr


async def test_cli_verify_reports_each_attack(
    harness: Harness, admin_token: str, user_token: str, cli_environment: None
) -> None:
    """`authgate audit verify` (no checkpoint) exits 1 after the rewrite with recomputed
    hashes, naming it forged."""
    await _varied_events(harness, user_token)
    await recorded(harness)
    await attack_rewrite_sha256(harness)
    result = await cli("audit", "verify")
    assert_exits(result, 1)
    assert "audit chain forged" in result.stderr
