"""Contract tests for issue 13, section 3: the account and recovery endpoints of
UTMStack's ``AccountResource`` (v10/v11 ``backend/.../web/rest/AccountResource.java``),
``UserJWTController.checkPassword`` and the Angular services that call them
(``core/auth/account.service.ts``, ``password-reset-init.service.ts``,
``password-reset-finish.service.ts``)."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import redis.asyncio
from sqlalchemy import select

from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import ThrottleWindow
from authgate.storage.paging import PageRequest
from tests.api.test_contract_utmstack_users import harness_with
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, FakeClock, Harness, bearer, test_settings
from tests.mail import running_smtp_server

NEW_PASSWORD = "a-brand-new-password-42"
INIT = "/api/account/reset-password/init"
FINISH = "/api/account/reset-password/finish"


async def _events(harness: Harness, event_type: str) -> list[tuple[str, str | None]]:
    await harness.services.password_resets.settle()
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=(event_type,)), PageRequest(size=100)
    )
    # A summary of repeated refusals (past 10 a minute) stands for its count.
    return [
        (event.outcome, event.reason)
        for event in page.items
        for _ in range((event.details or {}).get("aggregate", {}).get("count", 1))
    ]


async def test_save_account_writes_only_the_profile(harness: Harness) -> None:
    """AccountResource.saveAccount (account.service.ts ``save(account)`` posts the whole
    Account it fetched): firstName, lastName, email (lower-cased), langKey, imageUrl;
    login, authorities, activated and id are ignored."""
    await harness.create_user("alice")
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    token = bearer(await harness.login("alice", USER_PASSWORD))
    account = (await harness.client.get("/api/account", headers=token)).json()
    account.update(
        firstName="Alice",
        email="Alice.New@Example.com",
        langKey="es",
        imageUrl="https://example.com/a.png",
        login="admin",
        id=1,
        authorities=["ROLE_ADMIN", "ROLE_USER"],
        activated=False,
        createdBy="mallory",
    )

    saved = await harness.client.post("/api/account", json=account, headers=token)
    taken = await harness.client.post(
        "/api/account", json={"email": "admin@example.com"}, headers=token
    )

    assert saved.status_code == 200, saved.text
    after = (await harness.client.get("/api/account", headers=token)).json()
    assert after["login"] == "alice"
    assert after["authorities"] == ["ROLE_USER"]
    assert after["activated"] is True
    assert after["createdBy"] == "system"
    assert after["email"] == "alice.new@example.com"
    assert (after["firstName"], after["langKey"]) == ("Alice", "es")
    assert after["imageUrl"] == "https://example.com/a.png"
    assert taken.status_code == 400  # EmailAlreadyUsedException


async def test_reset_init_always_200_and_audited(harness: Harness) -> None:
    """password-reset-init.service.ts posts the address as a raw text body; UTMStack
    answers 500 for an unknown address (EmailNotFoundException). authgate answers 200
    whatever the address, and audits why nothing was sent."""
    await harness.create_user("alice")
    unknown = await harness.client.post(
        INIT, content=b"nobody@example.com", headers={"Content-Type": "text/plain"}
    )
    known = await harness.client.post(
        INIT, content=b"alice@example.com", headers={"Content-Type": "text/plain"}
    )
    garbage = await harness.client.post(INIT, content=b"\xff\x00not an address")
    assert (unknown.status_code, known.status_code, garbage.status_code) == (200, 200, 200)
    assert unknown.content == known.content
    reasons = sorted(
        reason or "" for _, reason in await _events(harness, "PASSWORD_RESET_REQUESTED")
    )
    assert reasons == ["mail_not_configured", "unknown_email", "unknown_email"]


async def test_reset_by_mail_then_finish(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """The whole UTMStack flow: init mails a ``reset?key=`` link (MailService
    .sendPasswordResetMail), finish ``{key, newPassword}`` (KeyAndPasswordVM) sets the
    password; the key works once; the user's tokens are revoked; the requests are
    limited per address."""
    with running_smtp_server() as (mail, port):
        settings = test_settings(
            tmp_path / "data",
            database_url=database_url,
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=port,
            alert_email_from="authgate@example.com",
            alert_email_to=["ops@example.com"],
        )
        async with harness_with(settings, clock) as harness:
            await harness.create_user("alice")
            old_token = bearer(await harness.login("alice", USER_PASSWORD))
            for _ in range(5):
                response = await harness.client.post(INIT, content=b" Alice@Example.com ")
                assert response.status_code == 200
            await harness.services.password_resets.settle()
            links = [m for m in mail.messages() if m["To"] == "alice@example.com"]
            assert len(links) == 3  # per address, per hour; the rest are refused quietly
            text = links[-1].get_content()
            url = next(word for word in text.split() if "/settings/reset?key=" in word)
            key = parse_qs(urlparse(url).query)["key"][0]

            short = await harness.client.post(FINISH, json={"key": key, "newPassword": "short"})
            clock.advance(seconds=1)
            done = await harness.client.post(FINISH, json={"key": key, "newPassword": NEW_PASSWORD})
            again = await harness.client.post(
                FINISH, json={"key": key, "newPassword": NEW_PASSWORD}
            )
            clock.advance(seconds=1)

            assert short.status_code == 400  # policy; the key is still good
            assert done.status_code == 200, done.text
            assert (again.status_code, again.json()["code"]) == (400, "reset_key_invalid")
            assert (await harness.client.get("/api/account", headers=old_token)).status_code == 401
            assert await harness.login("alice", NEW_PASSWORD)
            throttled = [e for e in await _events(harness, "PASSWORD_RESET_REQUESTED") if e[1]]
            assert throttled == [("failure", "throttled")] * 2


async def _throttle_subjects(harness: Harness, redis_url: str | None) -> list[str]:
    """Every subject with a counter, in the throttle store the harness uses."""
    if redis_url is None:
        async with harness.services.db.session() as session:
            rows = await session.scalars(select(ThrottleWindow.subject))
            return sorted(rows)
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match="authgate:throttle:*")]
    finally:
        await client.aclose()
    return sorted(key.removeprefix("authgate:throttle:h:") for key in keys)


async def _reset_requests_make_bounded_counters(harness: Harness, redis_url: str | None) -> None:
    await harness.create_user("alice")
    for i in range(25):  # from 127.0.0.1: over its limit (20) after the 20th
        await harness.client.post(INIT, content=f"probe-{i}@example.com".encode())
    async with harness.client_from("192.0.2.9") as other:
        for body in (
            b"probe-x-" + b"z" * 3000 + b"@example.com",
            b"a@b" + b"z" * 300,
            b"{",
            b'{"email": "alice@example.com"}',
            b"null",
            b"\xff\xfe\x00",
            b"two@at@example.com",
            b"with space@example.com",
        ):
            response = await other.post(INIT, content=body, headers={"Content-Type": "text/plain"})
            assert response.status_code == 200
    async with harness.client_from("198.51.100.4") as third:
        await third.post(INIT, content=b"Alice@Example.COM")
    await harness.services.password_resets.settle()

    subjects = await _throttle_subjects(harness, redis_url)
    addresses = [s for s in subjects if s.startswith("reset:address:")]
    alice = hashlib.sha256(b"alice@example.com").hexdigest()
    assert len(addresses) == 21  # 20 probes within the client's limit, and alice's
    assert all(re.fullmatch(r"reset:address:[0-9a-f]{64}", s) for s in addresses)
    assert f"reset:address:{alice}" in addresses
    assert not [s for s in subjects if "@" in s or "example" in s or "192.0.2" in s]
    assert sorted(s for s in subjects if s.startswith("reset:client:")) == [
        "reset:client:127.0.0.1",
        "reset:client:198.51.100.4",
    ]
    harness.clock.advance(seconds=60)  # the minute's summaries of repeated refusals
    events = await _events(harness, "PASSWORD_RESET_REQUESTED")
    assert sorted(reason or "" for _, reason in events) == sorted(
        ["unknown_email"] * 28 + ["throttled"] * 5 + ["mail_not_configured"]
    )


async def test_reset_requests_make_no_counter_per_body(harness: Harness) -> None:
    """A counter per distinct body would let anyone fill the throttle store: the
    client's limit is counted first and, once over it, nothing more; a body that is no
    e-mail address is counted nowhere; an address's counter is named by a digest of the
    lower-cased address, never the address (black-box test, item 1)."""
    await _reset_requests_make_bounded_counters(harness, None)


async def test_reset_requests_make_no_counter_per_body_in_redis(
    tmp_path: Path, database_url: str, redis_url: str, clock: FakeClock
) -> None:
    """The same with the counters in Redis."""
    settings = test_settings(tmp_path / "data", database_url=database_url, redis_url=redis_url)
    async with harness_with(settings, clock) as harness:
        await _reset_requests_make_bounded_counters(harness, redis_url)


async def test_reset_key_expires_after_24_hours(harness: Harness) -> None:
    """UserService.completePasswordReset: a key older than 24 hours is refused."""
    admin_id = await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    assert admin_id
    await harness.create_user("alice")
    _, issued = await harness.services.users.new_reset_key("alice")
    harness.clock.advance(hours=24, seconds=1)
    response = await harness.client.post(
        FINISH, json={"key": issued.key, "newPassword": NEW_PASSWORD}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "reset_key_expired"


async def test_invited_user_activates_through_the_link(harness: Harness) -> None:
    """v11 UserService.completePasswordReset also activates the user (the user created
    by UserResource.createUser without a password is inactive until then)."""
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    admin = bearer(await harness.login("admin", ADMIN_PASSWORD))
    created = await harness.client.post(
        "/api/users", json={"login": "ivan", "email": "ivan@example.com"}, headers=admin
    )
    key = parse_qs(urlparse(created.json()["resetLink"]).query)["key"][0]
    harness.clock.advance(seconds=1)
    done = await harness.client.post(FINISH, json={"key": key, "newPassword": NEW_PASSWORD})
    assert done.status_code == 200, done.text
    harness.clock.advance(seconds=1)
    token = bearer(await harness.login("ivan", NEW_PASSWORD))
    account = (await harness.client.get("/api/account", headers=token)).json()
    assert account["activated"] is True


async def test_check_credentials_get_and_post(
    tmp_path: Path, database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """UserJWTController.checkPassword (account.service.ts ``checkPassword``): GET
    ?password=&checkUUID= → 200 with the UUID as text; authgate also takes POST
    {password, checkUUID}. A wrong password is 400 and counts as a failed login; the
    password never reaches the access log or the audit trail."""
    settings = test_settings(tmp_path / "data", database_url=database_url, access_log=True)
    async with harness_with(settings, clock) as harness:
        await _check_credentials(harness, caplog)


async def _check_credentials(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    await harness.create_user("alice")
    token = bearer(await harness.login("alice", USER_PASSWORD))
    uuid = "0b7c5e0e-3f7a-4c1e-9c55-8f1b2a3c4d5e"
    secret_wrong = "not-the-password-xyz"

    with caplog.at_level(logging.INFO, logger="authgate.access"):
        ok = await harness.client.get(
            "/api/check-credentials",
            params={"password": USER_PASSWORD, "checkUUID": uuid},
            headers=token,
        )
        wrong = await harness.client.get(
            "/api/check-credentials",
            params={"password": secret_wrong, "checkUUID": uuid},
            headers=token,
        )
    posted = await harness.client.post(
        "/api/check-credentials",
        json={"password": USER_PASSWORD, "checkUUID": uuid},
        headers=token,
    )

    assert (ok.status_code, ok.text) == (200, uuid)
    assert ok.headers["content-type"].startswith("text/plain")
    assert wrong.status_code == 400
    assert (posted.status_code, posted.text) == (200, uuid)
    assert "/api/check-credentials" in caplog.text
    assert USER_PASSWORD not in caplog.text
    assert secret_wrong not in caplog.text
    failures = await _events(harness, "AUTH_FAILURE")
    assert failures == [("failure", "wrong_password")]
    await harness.services.audit.flush()
    page = await harness.services.audit.search(AuditFilter(), PageRequest(size=500))
    assert all(secret_wrong not in repr(event) for event in page.items)


async def test_wrong_check_credentials_are_throttled_like_logins(harness: Harness) -> None:
    """Every wrong password is a failed login of the account: past the limit 429."""
    await harness.create_user("alice")
    token = bearer(await harness.login("alice", USER_PASSWORD))
    limit = harness.services.settings.login.pair_max_failures
    statuses = [
        (
            await harness.client.post(
                "/api/check-credentials", json={"password": "wrong-password-1"}, headers=token
            )
        ).status_code
        for _ in range(limit + 1)
    ]
    assert statuses == [400] * limit + [429]
