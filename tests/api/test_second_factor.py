"""Two-factor authentication over HTTP: UTMStack's v10 and v11 flows, and authgate's own.

UTMStack sources (utmstack/UTMStack): v10 ``UserJWTController.authorize`` and
``verifyCode`` (backend/src/main/java/com/park/utmstack/web/rest/UserJWTController.java);
v11 ``TfaEnrollmentResource`` (web/rest/tfa/TfaEnrollmentResource.java), ``TfaResource``,
``LoginResponseDTO`` (service/dto/jwt/LoginResponseDTO.java). TOTP codes are computed
here from the secret the server hands out, with the test's clock.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import text

from authgate.app import create_app
from authgate.container import Services
from authgate.security.second_factor import SecondFactorKey, totp_code, totp_step
from authgate.services.mail import MailNotSent
from authgate.services.second_factor import ImportedFactor, SecondFactorService
from authgate.storage.keystore import load_or_create_tfa_key
from tests.conftest import (
    USER_PASSWORD,
    FakeClock,
    Harness,
    bearer,
    format_instant,
    test_settings,
)
from tests.mail import MailRecorder, running_smtp_server, smtp_settings

NEW_PASSWORD = "a-brand-new-secret-phrase"


def current_code(harness: Harness, secret: str, *, steps: int = 0) -> str:
    return totp_code(secret, totp_step(harness.clock().timestamp()) + steps)


async def enrol_totp(harness: Harness, token: str) -> tuple[str, list[str]]:
    """Enrol TOTP through UTMStack v11's set-up endpoints; the secret and recovery codes."""
    init = await harness.client.post(
        "/api/tfa/init", json={"method": "TOTP"}, headers=bearer(token)
    )
    assert init.status_code == 200, init.text
    delivery = init.json()["delivery"]
    secret = delivery["secret"]
    assert init.json()["status"] == "pending"
    assert delivery["uri"] == f"otpauth://totp/authgate:alice?secret={secret}&issuer=authgate"
    verify = await harness.client.post(
        "/api/tfa/verify",
        json={"method": "TOTP", "code": current_code(harness, secret)},
        headers=bearer(token),
    )
    assert verify.json()["valid"] is True, verify.text
    complete = await harness.client.post(
        "/api/tfa/complete", json={"method": "TOTP", "enable": True}, headers=bearer(token)
    )
    assert complete.status_code == 200, complete.text
    codes: list[str] = complete.json()["recoveryCodes"]
    return secret, codes


async def password_step(harness: Harness, **extra: Any) -> httpx2.Response:
    response = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD, **extra}
    )
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
async def enrolled(harness: Harness, user_token: str) -> tuple[str, list[str]]:
    return await enrol_totp(harness, user_token)


@asynccontextmanager
async def mailed_codes(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Harness, MailRecorder]]:
    """``AUTHGATE_TFA_UNENROLLED=email`` (and a second factor required of all) with a
    real SMTP server, and alice, who has no factor: each of her logins is mailed a code."""
    with running_smtp_server() as (recorder, port):
        async with harness_with(
            tmp_path,
            database_url,
            **smtp_settings(port),
            tfa_required="all",
            tfa_unenrolled="email",
        ) as harness:
            await harness.create_user("alice")
            yield harness, recorder


@asynccontextmanager
async def harness_with(
    tmp_path: Path, database_url: str, **overrides: Any
) -> AsyncIterator[Harness]:
    settings = test_settings(tmp_path / "other", database_url=database_url, **overrides)
    clock = FakeClock()
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app=app, services=services, client=client, clock=clock)


# -- the login answer ------------------------------------------------------------------------


async def test_v11_login_fields_without_a_second_factor(harness: Harness) -> None:
    """LoginResponseDTO always carries its fields with their types (issue 13)."""
    await harness.create_user("alice")
    body = (await password_step(harness)).json()
    assert body["success"] is True
    assert body["authenticated"] is True
    assert body["tfaConfigured"] is False
    assert body["forceTfa"] is False
    assert body["method"] is None
    assert body["tfaExpiresInSeconds"] == 0
    assert body["firstLogin"] is True  # created by an admin, never changed
    assert body["token"] == body["id_token"]


async def test_first_login_ends_when_the_user_changes_the_password(harness: Harness) -> None:
    await harness.create_user("alice")
    token = (await password_step(harness)).json()["token"]
    changed = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(token),
    )
    assert changed.status_code == 200
    again = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": NEW_PASSWORD}
    )
    assert again.json()["firstLogin"] is False


# -- UTMStack v10 ----------------------------------------------------------------------------


async def test_v10_flow_pre_verification_token_then_code(
    harness: Harness, enrolled: tuple[str, list[str]]
) -> None:
    """v10 UserJWTController: authorize answers {id_token, authenticated: false} and the
    Authorization header; GET /api/tfa/verifyCode?code= answers the real token."""
    secret, _ = enrolled
    login = await password_step(harness)
    body = login.json()
    assert body["authenticated"] is False
    assert body["tfaConfigured"] is True
    assert body["forceTfa"] is True
    assert body["method"] == "TOTP"
    assert body["tfaExpiresInSeconds"] == 30
    pending = body["id_token"]
    assert login.headers["authorization"] == f"Bearer {pending}"
    assert body["expires_in"] == 300
    wrong = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": "000000"}, headers=bearer(pending)
    )
    if wrong.status_code != 200:  # (000000 could be the real code)
        assert wrong.status_code == 401
        assert wrong.headers["x-utmstack-error"] == "Your secret code is invalid"
    verified = await harness.client.get(
        "/api/tfa/verifyCode",
        params={"code": current_code(harness, secret)},
        headers=bearer(pending),
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["authenticated"] is True
    token = verified.json()["id_token"]
    assert verified.headers["authorization"] == f"Bearer {token}"
    assert (await harness.client.get("/api/account", headers=bearer(token))).status_code == 200
    # The pre-verification token was spent.
    reused = await harness.client.get(
        "/api/tfa/verifyCode",
        params={"code": current_code(harness, secret, steps=1)},
        headers=bearer(pending),
    )
    assert reused.status_code == 401


async def test_pre_verification_token_is_refused_everywhere_else(
    harness: Harness, enrolled: tuple[str, list[str]], admin_token: str
) -> None:
    pending = (await password_step(harness)).json()["token"]
    for method, url in [
        ("GET", "/api/account"),
        ("GET", "/api/authenticate"),
        ("GET", "/api/account/tfa"),
        ("POST", "/api/tfa/init"),
        ("GET", "/api/api-keys"),
        ("GET", "/api/auth/verify"),
        ("GET", "/settings/account"),
    ]:
        response = await harness.client.request(method, url, headers=bearer(pending))
        assert response.status_code in (401, 303, 302), f"{method} {url}: {response.status_code}"
        assert response.status_code != 200
    # and an access token is refused by the second step
    step = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": "123456"}, headers=bearer(admin_token)
    )
    assert step.status_code == 401


# -- UTMStack v11 ----------------------------------------------------------------------------


async def test_v11_verify_code_takes_a_text_body_and_answers_412(
    harness: Harness, enrolled: tuple[str, list[str]]
) -> None:
    """v11 TfaResource: POST /api/tfa/verify-code with the bare digits; a wrong code is
    412 with X-UtmStack-error."""
    secret, _ = enrolled
    pending = (await password_step(harness)).json()["token"]
    right = current_code(harness, secret)
    wrong = "111111" if right != "111111" else "222222"
    refused = await harness.client.post(
        "/api/tfa/verify-code",
        content=wrong,
        headers={**bearer(pending), "Content-Type": "text/plain"},
    )
    assert refused.status_code == 412
    assert refused.headers["x-utmstack-error"] == "Your secret code is invalid"
    accepted = await harness.client.post(
        "/api/tfa/verify-code",
        content=right,
        headers={**bearer(pending), "Content-Type": "text/plain"},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["authenticated"] is True
    assert accepted.json()["success"] is True


async def test_a_code_is_accepted_once(harness: Harness, enrolled: tuple[str, list[str]]) -> None:
    """No replay: the code that opened one login does not open another in its window."""
    secret, _ = enrolled
    code = current_code(harness, secret)
    first = (await password_step(harness)).json()["token"]
    ok = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": code}, headers=bearer(first)
    )
    assert ok.status_code == 200
    second = (await password_step(harness)).json()["token"]
    replay = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": code}, headers=bearer(second)
    )
    assert replay.status_code == 401
    # The next step's code (an authenticator's next one) works.
    next_code = current_code(harness, secret, steps=1)
    later = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": next_code}, headers=bearer(second)
    )
    assert later.status_code == 200


async def test_the_set_up_code_opens_the_first_login_v11(harness: Harness, user_token: str) -> None:
    """A scripted client enrols and logs in within one 30-s step: the code it proved
    at set-up is accepted by POST /api/tfa/verify-code (UTMStack accepts it), once."""
    secret, _ = await enrol_totp(harness, user_token)
    code = current_code(harness, secret)
    pending = (await password_step(harness)).json()["token"]
    accepted = await harness.client.post(
        "/api/tfa/verify-code",
        content=code,
        headers={**bearer(pending), "Content-Type": "text/plain"},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["authenticated"] is True
    again = (await password_step(harness)).json()["token"]
    replay = await harness.client.post(
        "/api/tfa/verify-code",
        content=code,
        headers={**bearer(again), "Content-Type": "text/plain"},
    )
    assert replay.status_code == 412


async def test_the_set_up_code_opens_the_first_login_v10(harness: Harness, user_token: str) -> None:
    """The same through v10's GET /api/tfa/verifyCode."""
    secret, _ = await enrol_totp(harness, user_token)
    code = current_code(harness, secret)
    pending = (await password_step(harness)).json()["token"]
    accepted = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": code}, headers=bearer(pending)
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["authenticated"] is True
    again = (await password_step(harness)).json()["token"]
    replay = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": code}, headers=bearer(again)
    )
    assert replay.status_code == 401


async def test_five_wrong_codes_lock_the_second_step_and_revoke_the_token(
    harness: Harness, enrolled: tuple[str, list[str]]
) -> None:
    secret, _ = enrolled
    pending = (await password_step(harness)).json()["token"]
    right = current_code(harness, secret)
    wrong = "111111" if right != "111111" else "222222"
    statuses = []
    for _ in range(5):
        response = await harness.client.get(
            "/api/tfa/verifyCode", params={"code": wrong}, headers=bearer(pending)
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 401, 429]
    assert int(response.headers["retry-after"]) > 0
    # The pre-verification token is revoked, and a new login is locked too, right code or not.
    revoked = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": right}, headers=bearer(pending)
    )
    assert revoked.status_code == 401
    fresh = (await password_step(harness)).json()["token"]
    locked = await harness.client.post("/api/tfa/verify-code", content=right, headers=bearer(fresh))
    assert locked.status_code == 412
    assert "retry-after" in locked.headers
    await harness.services.audit.flush()
    events = await harness.client.get(
        "/api/audit-events", params={"type": "TFA_FAILURE"}, headers=bearer(await admin(harness))
    )
    assert events.status_code == 200
    # Ten minutes later the account may try again.
    harness.clock.advance(minutes=11)
    later = (await password_step(harness)).json()["token"]
    ok = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": current_code(harness, secret)}, headers=bearer(later)
    )
    assert ok.status_code == 200


async def admin(harness: Harness) -> str:
    await harness.create_user("admin", "operator-password-for-tests", admin=True)
    return await harness.login("admin", "operator-password-for-tests")


async def test_recovery_codes_work_once(harness: Harness, enrolled: tuple[str, list[str]]) -> None:
    _, codes = enrolled
    assert len(codes) == 10
    assert len(set(codes)) == 10
    pending = (await password_step(harness)).json()["token"]
    ok = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": codes[0].upper()}, headers=bearer(pending)
    )
    assert ok.status_code == 200
    token = ok.json()["token"]
    state = await harness.client.get("/api/account/tfa", headers=bearer(token))
    assert state.json()["recoveryCodesLeft"] == 9
    again = (await password_step(harness)).json()["token"]
    reused = await harness.client.get(
        "/api/tfa/verifyCode", params={"code": codes[0]}, headers=bearer(again)
    )
    assert reused.status_code == 401


async def test_remember_me_is_carried_to_the_final_token(
    harness: Harness, enrolled: tuple[str, list[str]]
) -> None:
    secret, _ = enrolled
    pending = (await password_step(harness, rememberMe=True)).json()["token"]
    final = await harness.client.get(
        "/api/tfa/verifyCode",
        params={"code": current_code(harness, secret)},
        headers=bearer(pending),
    )
    assert final.json()["expires_in"] == harness.services.settings.tokens.remember_me_ttl_seconds


async def test_bypass_header_is_ignored_by_default(
    harness: Harness, enrolled: tuple[str, list[str]]
) -> None:
    response = await harness.client.post(
        "/api/authenticate",
        json={"username": "alice", "password": USER_PASSWORD},
        headers={"X-Bypass-TFA": "true"},
    )
    assert response.json()["authenticated"] is False


# -- credential changes need a session that passed the second factor ------------------------


async def test_credential_changes_need_a_session_that_passed_the_second_factor(
    harness: Harness, user_token: str
) -> None:
    earlier = await harness.login("alice", USER_PASSWORD)  # another session, before the factor
    secret, _ = await enrol_totp(harness, user_token)
    # `earlier` predates the factor and did not enrol it: it still reads, but sets no
    # credential.
    assert (await harness.client.get("/api/account", headers=bearer(earlier))).status_code == 200
    refused = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(earlier),
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "session_required"
    # The session that enrolled proved the factor (the verify step): it goes on setting
    # credentials with the token it holds, as UTMStack's UI does after enabling it (a 403
    # there logs the user out).
    key = await harness.client.post(
        "/api/api-keys",
        json={"name": "after-enrolling", "allowedIp": [], "expiresAt": expiry(harness)},
        headers=bearer(user_token),
    )
    assert key.status_code == 201, key.text
    pending = (await password_step(harness)).json()["token"]
    token = (
        await harness.client.get(
            "/api/tfa/verifyCode",
            params={"code": current_code(harness, secret)},
            headers=bearer(pending),
        )
    ).json()["token"]
    allowed = await harness.client.post(
        "/api/account/change-password",
        json={"currentPassword": USER_PASSWORD, "newPassword": NEW_PASSWORD},
        headers=bearer(token),
    )
    assert allowed.status_code == 200


def expiry(harness: Harness, days: int = 30) -> str:
    return format_instant(harness.clock() + timedelta(days=days))


# -- forced enrolment (v11 TfaEnrollmentResource) --------------------------------------------


async def test_forced_enrolment_with_stage_numbers(tmp_path: Path, database_url: str) -> None:
    """AUTHGATE_TFA_REQUIRED=all: a user without a factor is taken through
    POST /api/enrollment/tfa (0 INIT, 1 VERIFY, 2 COMPLETE) with the pre-verification
    token; COMPLETE answers a LoginResponseDTO with a full token."""
    async with harness_with(tmp_path, database_url, tfa_required="all") as harness:
        await harness.create_user("alice")
        body = (await password_step(harness)).json()
        assert body["authenticated"] is False
        assert body["tfaConfigured"] is False
        assert body["forceTfa"] is True
        assert body["method"] is None
        pending = body["token"]
        init = await harness.client.post(
            "/api/enrollment/tfa", json={"stage": 0, "method": "TOTP"}, headers=bearer(pending)
        )
        assert init.status_code == 200, init.text
        secret = init.json()["delivery"]["secret"]
        assert init.json()["delivery"]["target"]  # the QR code as a base64 PNG
        verify = await harness.client.post(
            "/api/enrollment/tfa",
            json={"stage": "VERIFY", "method": "TOTP", "code": current_code(harness, secret)},
            headers=bearer(pending),
        )
        assert verify.json()["valid"] is True
        complete = await harness.client.post(
            "/api/enrollment/tfa",
            json={"stage": 2, "method": "TOTP", "enable": True},
            headers=bearer(pending),
        )
        assert complete.status_code == 200, complete.text
        result = complete.json()
        assert result["authenticated"] is True
        assert result["tfaConfigured"] is True
        assert len(result["recoveryCodes"]) == 10
        token = result["token"]
        assert (await harness.client.get("/api/account", headers=bearer(token))).status_code == 200
        # Next login asks for the code, and enrolment is closed to password-only callers.
        nxt = (await password_step(harness)).json()
        assert nxt["method"] == "TOTP"
        again = await harness.client.post(
            "/api/enrollment/tfa", json={"stage": 0, "method": "TOTP"}, headers=bearer(nxt["token"])
        )
        assert again.status_code == 409


async def test_admins_only_policy_spares_users(tmp_path: Path, database_url: str) -> None:
    async with harness_with(tmp_path, database_url, tfa_required="admins") as harness:
        await harness.create_user("alice")
        await harness.create_user("root", "operator-password-for-tests", admin=True)
        assert (await password_step(harness)).json()["authenticated"] is True
        root = await harness.client.post(
            "/api/authenticate",
            json={"username": "root", "password": "operator-password-for-tests"},
        )
        assert root.json()["authenticated"] is False


# -- admin reset, disabling, e-mail codes ----------------------------------------------------


async def test_admin_reset_removes_the_factor(
    harness: Harness, enrolled: tuple[str, list[str]]
) -> None:
    token = await admin(harness)
    listed = await harness.client.delete("/api/users/alice/tfa", headers=bearer(token))
    assert listed.status_code == 204
    assert (await password_step(harness)).json()["authenticated"] is True
    missing = await harness.client.delete("/api/users/nobody/tfa", headers=bearer(token))
    assert missing.status_code == 404


async def test_user_disables_with_password_and_code(
    harness: Harness, enrolled: tuple[str, list[str]]
) -> None:
    secret, _ = enrolled
    pending = (await password_step(harness)).json()["token"]
    token = (
        await harness.client.get(
            "/api/tfa/verifyCode",
            params={"code": current_code(harness, secret)},
            headers=bearer(pending),
        )
    ).json()["token"]
    harness.clock.advance(seconds=30)
    wrong_password = await harness.client.post(
        "/api/account/tfa/disable",
        json={"password": "not-the-password-at-all", "code": current_code(harness, secret)},
        headers=bearer(token),
    )
    assert wrong_password.status_code == 400
    done = await harness.client.post(
        "/api/account/tfa/disable",
        json={"password": USER_PASSWORD, "code": current_code(harness, secret)},
        headers=bearer(token),
    )
    assert done.status_code == 204
    assert (await password_step(harness)).json()["authenticated"] is True


async def test_email_codes_through_a_real_smtp_server(tmp_path: Path, database_url: str) -> None:
    with running_smtp_server() as (recorder, port):
        async with harness_with(
            tmp_path,
            database_url,
            **smtp_settings(port),
        ) as harness:
            await harness.create_user("alice")
            token = (await password_step(harness)).json()["token"]
            init = await harness.client.post(
                "/api/tfa/init", json={"method": "EMAIL"}, headers=bearer(token)
            )
            assert init.json()["delivery"]["target"] == "alice@example.com"
            setup_code = _last_code(recorder.messages())
            verify = await harness.client.post(
                "/api/tfa/verify",
                json={"method": "EMAIL", "code": setup_code},
                headers=bearer(token),
            )
            assert verify.json()["valid"] is True
            complete = await harness.client.post(
                "/api/tfa/complete", json={"method": "EMAIL"}, headers=bearer(token)
            )
            assert complete.status_code == 200
            body = (await password_step(harness)).json()
            assert body["method"] == "EMAIL"
            assert body["tfaExpiresInSeconds"] == 120
            pending = body["token"]
            login_code = _last_code(recorder.messages())
            too_soon = await harness.client.get("/api/tfa/refresh", headers=bearer(pending))
            assert too_soon.status_code == 429
            assert int(too_soon.headers["retry-after"]) > 0
            harness.clock.advance(seconds=29)
            refreshed = await harness.client.get("/api/tfa/refresh", headers=bearer(pending))
            assert refreshed.status_code == 200
            new_code = _last_code(recorder.messages())
            if new_code != login_code:  # the previous code was replaced
                old = await harness.client.post(
                    "/api/tfa/verify-code", content=login_code, headers=bearer(pending)
                )
                assert old.status_code == 412
            # Still good after 150 s: UTMStack v10's code page counts down from 4:59.
            harness.clock.advance(seconds=150)
            late = (await password_step(harness)).json()["token"]
            late_code = _last_code(recorder.messages())
            harness.clock.advance(seconds=150)
            accepted = await harness.client.get(
                "/api/tfa/verifyCode", params={"code": late_code}, headers=bearer(late)
            )
            assert accepted.status_code == 200, accepted.text
            harness.clock.advance(seconds=301)
            expired = await harness.client.post(
                "/api/tfa/verify-code", content=new_code, headers=bearer(pending)
            )
            assert expired.status_code in (401, 412)  # the token or the code has expired
            pending = (await password_step(harness)).json()["token"]
            fresh = _last_code(recorder.messages())
            ok = await harness.client.post(
                "/api/tfa/verify-code", content=fresh, headers=bearer(pending)
            )
            assert ok.status_code == 200, ok.text
            # An admin's reset is mailed to the user.
            reset = await harness.client.delete(
                "/api/users/alice/tfa", headers=bearer(await admin(harness))
            )
            assert reset.status_code == 204
            notice = [m for m in recorder.messages() if m["To"] == "alice@example.com"][-1]
            assert "reset" in notice["Subject"]
            assert "admin" in notice.get_content()


async def test_logins_within_the_cooldown_mail_no_new_code(
    tmp_path: Path, database_url: str
) -> None:
    """Each correct password mailed a code and replaced the last: the password's holder
    could flood the user's inbox and spoil the code being typed. A code mailed within
    the resend cooldown that still works is kept; after it, a login mails a new one."""
    async with mailed_codes(tmp_path, database_url) as (harness, recorder):

        def mails() -> int:
            return len([m for m in recorder.messages() if m["To"] == "alice@example.com"])

        first = (await password_step(harness)).json()["token"]
        code = _last_code(recorder.messages())
        harness.clock.advance(seconds=20)
        second = (await password_step(harness)).json()["token"]
        assert mails() == 1
        accepted = await harness.client.get(
            "/api/tfa/verifyCode", params={"code": code}, headers=bearer(second)
        )
        assert accepted.status_code == 200, accepted.text
        # That code is spent: the next login mails another at once.
        await password_step(harness)
        assert mails() == 2
        harness.clock.advance(seconds=29)
        await password_step(harness)
        assert mails() == 3  # the cooldown has passed: a new code, the last one replaced
        latest = await harness.client.get(
            "/api/tfa/verifyCode",
            params={"code": _last_code(recorder.messages())},
            headers=bearer(first),
        )
        assert latest.status_code == 200, latest.text


async def test_a_code_that_could_not_be_mailed_does_not_hold_back_the_next(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The diff review: a code stored and then not mailed (the SMTP server down) counted
    as "sent moments ago", so the next login within 28 s mailed nothing."""
    async with mailed_codes(tmp_path, database_url) as (harness, recorder):
        original = SecondFactorService._send_mail
        attempts = 0

        async def fails_once(self: SecondFactorService, *args: Any, **kwargs: Any) -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise MailNotSent("the SMTP server is down")
            await original(self, *args, **kwargs)

        monkeypatch.setattr(SecondFactorService, "_send_mail", fails_once)
        assert (await password_step(harness)).status_code == 200
        harness.clock.advance(seconds=10)
        pending = (await password_step(harness)).json()["token"]
        assert attempts == 2
        passed = await harness.client.get(
            "/api/tfa/verifyCode",
            params={"code": _last_code(recorder.messages())},
            headers=bearer(pending),
        )
        assert passed.status_code == 200, passed.text


async def test_an_email_enrolment_ends_with_its_code(tmp_path: Path, database_url: str) -> None:
    """The time review: an e-mail enrolment's start answers ``expiresInSeconds: 300``,
    its code's lifetime, but the check counted down from the TOTP enrolment's 600 s: the
    right code after 300 s was "not valid", a failure counted towards the lock. It is
    now the enrolment's end: ``expired``, nothing counted."""
    with running_smtp_server() as (recorder, port):
        async with harness_with(tmp_path, database_url, **smtp_settings(port)) as harness:
            await harness.create_user("alice")
            token = await harness.login("alice", USER_PASSWORD)
            init = await harness.client.post(
                "/api/tfa/init", json={"method": "EMAIL"}, headers=bearer(token)
            )
            assert init.json()["expiresInSeconds"] == 300
            code = _last_code(recorder.messages())
            harness.clock.advance(seconds=299)
            wrong = await harness.client.post(
                "/api/tfa/verify", json={"method": "EMAIL", "code": "000000"}, headers=bearer(token)
            )
            assert (wrong.json()["valid"], wrong.json()["expired"]) == (False, False)
            assert wrong.json()["remainingSeconds"] == 1
            harness.clock.advance(seconds=2)
            late = await harness.client.post(
                "/api/tfa/verify", json={"method": "EMAIL", "code": code}, headers=bearer(token)
            )
            assert late.json()["valid"] is False
            assert late.json()["expired"] is True
            assert late.json()["remainingSeconds"] == 0
            restarted = await harness.client.post(
                "/api/tfa/init", json={"method": "EMAIL"}, headers=bearer(token)
            )
            assert restarted.status_code == 200
            verify = await harness.client.post(
                "/api/tfa/verify",
                json={"method": "EMAIL", "code": _last_code(recorder.messages())},
                headers=bearer(token),
            )
            assert verify.json()["valid"] is True


async def test_a_stored_address_the_mailer_refuses_is_a_code_not_sent(
    tmp_path: Path, database_url: str
) -> None:
    """The Unicode review: an address stored before the rules refused it (or imported)
    that the mailer will not send to (``a<b>@...``) made every mailed code a 500, and
    left the unsent code stored. It is a code that could not be sent (409), as when the
    server is down, and nothing is left to guess."""
    with running_smtp_server() as (recorder, port):
        async with harness_with(tmp_path, database_url, **smtp_settings(port)) as harness:
            user_id = await harness.create_user("alice")
            token = await harness.login("alice", USER_PASSWORD)
            async with harness.services.db.transaction() as session:
                await session.execute(
                    text("UPDATE users SET email = 'a<b>@example.com' WHERE id = :id"),
                    {"id": user_id},
                )
            refused = await harness.client.post(
                "/api/tfa/init", json={"method": "EMAIL"}, headers=bearer(token)
            )
            assert refused.status_code == 409, refused.text
            assert refused.json()["message"] == "The code could not be sent; try again later."
            async with harness.services.db.session() as session:
                codes = await session.execute(
                    text("SELECT count(*) FROM one_time_codes WHERE user_id = :id"),
                    {"id": user_id},
                )
                assert codes.scalar_one() == 0
            assert recorder.messages() == []


def _last_code(messages: list[Any]) -> str:
    """The code of the last message to alice (alerts go to the security team)."""
    body = [m for m in messages if m["To"] == "alice@example.com"][-1].get_content()
    found = re.search(r"\b(\d{6})\b", body)
    assert found is not None, body
    return found.group(1)


async def test_email_codes_need_an_smtp_server(harness: Harness, user_token: str) -> None:
    refused = await harness.client.post(
        "/api/tfa/init", json={"method": "EMAIL"}, headers=bearer(user_token)
    )
    assert refused.status_code == 400
    assert "SMTP" in refused.json()["message"]
    unknown = await harness.client.post(
        "/api/tfa/init", json={"method": "SMS"}, headers=bearer(user_token)
    )
    assert unknown.status_code == 400


async def test_unenrolled_users_get_mailed_codes_when_so_configured(
    tmp_path: Path, database_url: str
) -> None:
    """``AUTHGATE_TFA_UNENROLLED=email``: UTMStack v10's global switch, whose UI has no
    enrolment screens. A user who must use a second factor but has none is mailed a
    code at login (v10's flow, and v12's) instead of being sent to enrol."""
    async with mailed_codes(tmp_path, database_url) as (harness, recorder):
        body = (await password_step(harness)).json()
        assert (body["authenticated"], body["tfaConfigured"], body["method"]) == (
            False,
            True,
            "EMAIL",
        )
        wrong = await harness.client.get(
            "/api/tfa/verifyCode", params={"code": "000000"}, headers=bearer(body["token"])
        )
        assert wrong.status_code == 401
        passed = await harness.client.get(
            "/api/tfa/verifyCode",
            params={"code": _last_code(recorder.messages())},
            headers=bearer(body["token"]),
        )
        assert passed.status_code == 200, passed.text
        assert passed.json()["authenticated"] is True
        account = await harness.client.get(
            "/api/account", headers=bearer(passed.json()["id_token"])
        )
        assert account.status_code == 200

        v12 = await harness.client.post(
            "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
        )
        assert v12.status_code == 200, v12.text
        assert (v12.json()["tfa_required"], v12.json()["tfa_type"]) == (True, "email")
        verified = await harness.client.post(
            "/api/v1/auth/tfa/verify-code",
            json={
                "pre_auth_token": v12.json()["pre_auth_token"],
                "code": _last_code(recorder.messages()),
            },
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["access_token"]


async def test_a_mailed_code_cannot_be_skipped_by_enrolling(
    tmp_path: Path, database_url: str
) -> None:
    """``AUTHGATE_TFA_UNENROLLED=email``: the pre-verification token of a login that was
    mailed a code may not enrol a factor instead (the attack review passed the second
    step with the password alone that way, and left the account to its authenticator).
    The mailed code still works afterwards."""
    async with mailed_codes(tmp_path, database_url) as (harness, recorder):
        alice = (await harness.services.users.get_user("alice")).id
        pending = (await password_step(harness)).json()["token"]
        for stage in ({"stage": 0, "method": "TOTP"}, {"stage": 2, "enable": True}):
            refused = await harness.client.post(
                "/api/enrollment/tfa", json=stage, headers=bearer(pending)
            )
            assert refused.status_code == 409, refused.text
            assert "e-mail" in refused.json()["message"]
        state = await harness.services.second_factor.state(
            await harness.services.accounts.account(alice)
        )
        assert (state.method, state.pending_method) == (None, None)
        passed = await harness.client.get(
            "/api/tfa/verifyCode",
            params={"code": _last_code(recorder.messages())},
            headers=bearer(pending),
        )
        assert passed.status_code == 200, passed.text


async def test_resetting_a_user_without_a_factor_records_and_mails_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """Nothing was in force: no TFA_DISABLED event and no "your two-factor
    authentication was reset" mail to alarm the user (a reset that removed one sends
    both, test_email_codes_through_a_real_smtp_server)."""
    with running_smtp_server() as (recorder, port):
        async with harness_with(
            tmp_path,
            database_url,
            **smtp_settings(port),
        ) as harness:
            await harness.create_user("alice")
            token = await admin(harness)
            reset = await harness.client.delete("/api/users/alice/tfa", headers=bearer(token))
            assert reset.status_code == 204
            await harness.services.audit.flush()
            events = await harness.client.get(
                "/api/audit-events", params={"type": "TFA_DISABLED"}, headers=bearer(token)
            )
            assert events.status_code == 200
            assert events.json() == []
            assert [m for m in recorder.messages() if m["To"] == "alice@example.com"] == []


async def test_a_session_that_skipped_the_factor_cannot_change_the_email(
    harness: Harness, user_token: str
) -> None:
    """A token from before the factor was enabled (or from the bypass header) may not
    give the account another address: reset links and e-mailed codes go there (the
    attack review took an e-mail-factor account that way). Other profile fields, and
    the unchanged address a whole DTO sends back, still pass."""
    old = await harness.login("alice", USER_PASSWORD)
    await enrol_totp(harness, user_token)
    moved = await harness.client.post(
        "/api/account", json={"email": "mallory@evil.test"}, headers=bearer(old)
    )
    assert moved.status_code == 403, moved.text
    assert moved.json()["code"] == "session_required"
    renamed = await harness.client.post(
        "/api/account",
        json={"email": "alice@example.com", "firstName": "Alice"},
        headers=bearer(old),
    )
    assert renamed.status_code == 200, renamed.text
    v12 = await harness.client.put(
        "/api/v1/auth/me", json={"email": "mallory@evil.test"}, headers=bearer(old)
    )
    assert v12.status_code == 403, v12.text
    passed = await harness.client.put(
        "/api/v1/auth/me", json={"email": "alice@new.example"}, headers=bearer(user_token)
    )
    assert passed.status_code == 200, passed.text
    account = await harness.client.get("/api/account", headers=bearer(user_token))
    assert account.json()["email"] == "alice@new.example"


async def test_a_secret_this_node_cannot_read_refuses_the_code_not_the_request(
    harness: Harness, enrolled: tuple[str, list[str]]
) -> None:
    """A node with another AUTHGATE_TFA_KEY (or a tampered row) cannot read the TOTP
    secret: the code is refused (412) and the operator told in the audit trail; it was
    a 500 (the empty secret reached pyotp)."""
    secret, _ = enrolled
    async with harness.services.db.transaction() as session:
        await session.execute(
            text("UPDATE second_factors SET totp_secret = 'v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAA'")
        )
    pending = (await password_step(harness)).json()["token"]
    refused = await harness.client.post(
        "/api/tfa/verify-code", content=current_code(harness, secret), headers=bearer(pending)
    )
    assert refused.status_code == 412, refused.text
    await harness.services.audit.flush()
    events = await harness.client.get(
        "/api/audit-events", params={"type": "TFA_FAILURE"}, headers=bearer(await admin(harness))
    )
    assert "secret_unreadable" in [event["reason"] for event in events.json()]


def deployment_tfa_key(harness: Harness) -> SecondFactorKey:
    """The app's second-factor key, loaded as the app loads it."""
    settings = harness.services.settings
    given = settings.tfa_key.get_secret_value() if settings.tfa_key else None
    key = load_or_create_tfa_key(given, settings.tfa_key_file, settings.effective_tfa_key_file)
    return SecondFactorKey(key)


async def store_totp_secret(harness: Harness, login: str, secret: str) -> None:
    """Write ``secret`` as ``login``'s TOTP secret in force straight through the storage
    layer, encrypted as the service stores secrets: what an import put in force before
    imports checked secrets (the service itself no longer stores such a secret)."""
    db = harness.services.db
    async with db.transaction() as session:
        user = await db.users(session).by_login(login)
        assert user is not None
        row = await db.second_factors(session).get_or_create(user.id, now=harness.clock())
        row.totp_secret = deployment_tfa_key(harness).encrypt(secret, user_id=user.id)
        row.last_totp_step = None
        user.second_factor = "TOTP"


UNUSABLE_SECRETS = [
    pytest.param("not base32!!", id="not-base32"),
    pytest.param("JBSWY3DPEHPK3PXP", id="80-bits"),  # pyotp refuses under 112 bits
]


@pytest.mark.parametrize("secret", UNUSABLE_SECRETS)
async def test_a_stored_secret_no_code_comes_from_refuses_the_code_not_the_request(
    harness: Harness,
    enrolled: tuple[str, list[str]],
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A TOTP secret in force that decrypts but is no base32 of 112 bits (an import
    before imports checked secrets) refuses the code on every route of the second
    step, as a secret that does not decrypt does: v11 412, v10 and v12 401; audited
    secret_unreadable, and one warning line per check without the secret. Each was a
    500 with pyotp's traceback (binascii.Error, or ValueError under 112 bits)."""
    await store_totp_secret(harness, "alice", secret)
    caplog.set_level(logging.WARNING)

    pending = (await password_step(harness)).json()
    assert pending["method"] == "TOTP"
    v11 = await harness.client.post(
        "/api/tfa/verify-code", content="123456", headers=bearer(pending["token"])
    )
    assert v11.status_code == 412, v11.text
    warnings = [r for r in caplog.records if "TOTP secret of user" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "reset-tfa" in warnings[0].getMessage()

    v10 = await harness.client.get(
        "/api/tfa/verifyCode",
        params={"code": "123456"},
        headers=bearer((await password_step(harness)).json()["token"]),
    )
    assert v10.status_code == 401, v10.text
    v12_login = await harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
    )
    v12 = await harness.client.post(
        "/api/v1/auth/tfa/verify-code",
        json={"pre_auth_token": v12_login.json()["pre_auth_token"], "code": "123456"},
    )
    assert v12.status_code == 401, v12.text

    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert secret not in caplog.text
    await harness.services.audit.flush()
    events = await harness.client.get(
        "/api/audit-events", params={"type": "TFA_FAILURE"}, headers=bearer(await admin(harness))
    )
    reasons = [event["reason"] for event in events.json()]
    assert reasons.count("secret_unreadable") == 3


@pytest.mark.parametrize("secret", UNUSABLE_SECRETS)
async def test_a_secret_no_code_comes_from_is_never_put_in_force(
    harness: Harness, user_token: str, secret: str
) -> None:
    """put_in_force, the import's way in (enrolments make their own secrets), refuses a
    TOTP secret that is not base32 of 112 bits: nothing is stored, the user signs in
    with the password alone. A secret typed with spaces and in lower case is stored as
    authenticator apps read it."""
    db, service = harness.services.db, harness.services.second_factor
    async with db.transaction() as session:
        user = await db.users(session).by_login("alice")
        assert user is not None
        with pytest.raises(ValueError, match="usable secret"):
            await service.put_in_force(session, user, ImportedFactor("TOTP", secret))
    assert (await password_step(harness)).json()["authenticated"] is True

    typed = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq"
    async with db.transaction() as session:
        user = await db.users(session).by_login("alice")
        assert user is not None
        await service.put_in_force(session, user, ImportedFactor("TOTP", typed))
    async with db.session() as session:
        user = await db.users(session).by_login("alice")
        assert user is not None
        in_force = await service.factor_in_force(session, user)
    assert in_force == ImportedFactor("TOTP", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
