"""UTMStack v12's second factor under ``/api/v1``: the login's second step with a
pre-auth token, enrolment (``/tfa/enroll``), turning it off, and the admin's reset.

Each test names the v12 source it follows: ``backend/modules/iam/handler/auth.go``,
``dto/auth.go`` and ``usecase/auth.go`` as issue 17 describes them (the project's
UTMStack snapshot has no v12 branch). The attacks on the pre-auth token (another
audience, reuse, guessing codes) have their own tests. Codes are computed with pyotp
from the otpauth:// URI the server hands out, at the test clock's time.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pyotp
from sqlalchemy import select

from authgate.services.second_factor import ImportedFactor
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import OneTimeCode, SecondFactor, User
from authgate.storage.paging import PageRequest
from tests.api.test_second_factor import harness_with
from tests.api.v1.v12_ui import ui_request
from tests.conftest import ADMIN_PASSWORD, USER_PASSWORD, Harness, bearer
from tests.mail import MailRecorder, running_smtp_server, smtp_settings

LOGIN = "/api/v1/auth/login"
VERIFY_CODE = "/api/v1/auth/tfa/verify-code"
ENROLL = "/api/v1/tfa/enroll"


async def v12_login(harness: Harness, login: str = "alice", password: str = USER_PASSWORD) -> Any:
    response = await harness.client.post(LOGIN, json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def totp_now(harness: Harness, secret: str) -> str:
    return pyotp.TOTP(secret).at(harness.clock().timestamp())


def not_the_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def enrol_totp_v12(harness: Harness, access_token: str) -> tuple[str, list[str]]:
    """INIT, VERIFY, COMPLETE through /api/v1/tfa/enroll; the secret and recovery codes."""
    init = await harness.client.post(
        ENROLL, json={"stage": "INIT", "type": "totp"}, headers=bearer(access_token)
    )
    assert init.status_code == 200, init.text
    secret = parse_qs(urlparse(init.json()["init"]["otp_auth_url"]).query)["secret"][0]
    verify = await harness.client.post(
        ENROLL,
        json={"stage": "VERIFY", "type": "totp", "code": totp_now(harness, secret)},
        headers=bearer(access_token),
    )
    assert verify.json() == {"stage": "VERIFY", "verified": True}
    complete = await harness.client.post(
        ENROLL, json={"stage": "COMPLETE", "type": "totp"}, headers=bearer(access_token)
    )
    assert complete.status_code == 200, complete.text
    assert complete.json()["enabled"] is True
    codes: list[str] = complete.json()["recovery_codes"]
    return secret, codes


async def alice_with_totp(harness: Harness) -> tuple[str, list[str]]:
    await harness.create_user("alice")
    return await enrol_totp_v12(harness, (await v12_login(harness))["access_token"])


async def _events(harness: Harness, event_type: str) -> list[tuple[str, str | None]]:
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=(event_type,)), PageRequest(size=100)
    )
    return [(event.outcome, event.reason) for event in page.items]


# -- the login's second step ------------------------------------------------------------------


async def test_login_with_totp_answers_the_second_step(harness: Harness) -> None:
    """dto/auth.go LoginResponse with tfa_required, tfa_type and pre_auth_token and no
    token (handler/auth.go Login); usecase/auth.go VerifyTFACode: the pre-auth token and
    a code buy the full LoginResponse, a session like a login's."""
    secret, _ = await alice_with_totp(harness)
    challenge = await v12_login(harness)
    pre_auth = challenge["pre_auth_token"]
    user = challenge["user"]
    assert user["email"] == "alice@example.com"
    assert user["tfa_enabled"] is True
    # dto/auth.go: the embedded TokenPair has no omitempty, so its fields come as Go's
    # zero values; the tfa_* fields and pre_auth_token are omitempty.
    assert challenge == {
        "access_token": "",
        "refresh_token": "",
        "token_type": "",
        "expires_at": "0001-01-01T00:00:00Z",
        "refresh_expires_at": "0001-01-01T00:00:00Z",
        "user": user,
        "tfa_required": True,
        "tfa_type": "totp",
        "pre_auth_token": pre_auth,
    }
    claims = jwt.decode(pre_auth, options={"verify_signature": False})
    assert claims["aud"].endswith("#pre-auth")
    assert claims["exp"] - int(claims["iat"]) == 300

    response = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": totp_now(harness, secret)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "tfa_required" not in body
    assert "pre_auth_token" not in body
    assert body["token_type"] == "Bearer"
    assert body["user"]["tfa_enabled"] is True
    access = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert access["amr"] == ["pwd", "otp"]
    assert access["sid"]
    me = await harness.client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.json()["tfa_enabled"] is True
    # The user as /auth/me shows it, image_url: null included (also at the first step).
    assert body["user"] == user == me.json()
    # A session like a login's: listed, and its refresh keeps the second factor.
    sessions = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(body["access_token"])
    )
    assert [s["current"] for s in sessions.json() if s["id"] == access["sid"]] == [True]
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    again = jwt.decode(refreshed.json()["access_token"], options={"verify_signature": False})
    assert again["amr"] == ["pwd", "otp"]


async def test_a_recovery_code_works_once_at_the_second_step(harness: Harness) -> None:
    """As the v10/v11 second step: a recovery code instead of a TOTP code, once."""
    _, codes = await alice_with_totp(harness)
    first = await harness.client.post(
        VERIFY_CODE,
        json={"pre_auth_token": (await v12_login(harness))["pre_auth_token"], "code": codes[0]},
    )
    assert first.status_code == 200, first.text
    second = await harness.client.post(
        VERIFY_CODE,
        json={"pre_auth_token": (await v12_login(harness))["pre_auth_token"], "code": codes[0]},
    )
    assert second.status_code == 401
    assert list(second.json()) == ["error"]


async def test_the_set_up_code_opens_the_first_login(harness: Harness) -> None:
    """Enrolling and logging in within one 30-s step: the code proved at /tfa/enroll
    VERIFY is accepted by the login's second step, and then only once."""
    secret, _ = await alice_with_totp(harness)
    code = totp_now(harness, secret)
    first = await harness.client.post(
        VERIFY_CODE,
        json={"pre_auth_token": (await v12_login(harness))["pre_auth_token"], "code": code},
    )
    assert first.status_code == 200, first.text
    replay = await harness.client.post(
        VERIFY_CODE,
        json={"pre_auth_token": (await v12_login(harness))["pre_auth_token"], "code": code},
    )
    assert replay.status_code == 401


async def test_verify_code_errors_are_v12_shaped(harness: Harness) -> None:
    """handler/auth.go VerifyTFACode: 400 without fields, 401 for a wrong code."""
    secret, _ = await alice_with_totp(harness)
    pre_auth = (await v12_login(harness))["pre_auth_token"]
    missing = await harness.client.post(VERIFY_CODE, json={"pre_auth_token": pre_auth})
    assert missing.status_code == 400
    assert list(missing.json()) == ["error"]
    wrong = await harness.client.post(
        VERIFY_CODE,
        json={"pre_auth_token": pre_auth, "code": not_the_code(totp_now(harness, secret))},
    )
    assert wrong.status_code == 401
    assert list(wrong.json()) == ["error"]
    right = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": totp_now(harness, secret)}
    )
    assert right.status_code == 200  # a wrong code does not spend the token


async def test_verify_code_needs_6_characters_or_a_recovery_code(harness: Harness) -> None:
    """dto/tfa.go TfaVerifyCodeRequest: code binding:"required,len=6", so any other
    length is 400 before the code is checked (and not counted); authgate's recovery
    codes (xxxxx-xxxxx) are still taken there."""
    _, codes = await alice_with_totp(harness)
    pre_auth = (await v12_login(harness))["pre_auth_token"]
    for code in ("12345", "1234567", "x" * 11, "abcde-fghjkl"):
        bad = await harness.client.post(
            VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": code}
        )
        assert bad.status_code == 400, code
        assert bad.json() == {"error": "code must be 6 characters or a recovery code"}
    assert await _events(harness, "TFA_FAILURE") == []
    recovered = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": codes[0]}
    )
    assert recovered.status_code == 200, recovered.text


async def test_a_user_who_must_enrol_is_sent_to_the_v11_login(
    tmp_path: Path, database_url: str
) -> None:
    """AUTHGATE_TFA_REQUIRED with no factor yet: v12 has no forced enrolment, so the v12
    login refuses (403, no token) rather than skip the factor; v11's login enrols."""
    async with harness_with(tmp_path, database_url, tfa_required="all") as harness:
        await harness.create_user("alice")
        refused = await harness.client.post(
            LOGIN, json={"login": "alice", "password": USER_PASSWORD}
        )
        assert refused.status_code == 403
        assert list(refused.json()) == ["error"]
        assert "/api/authenticate" in refused.json()["error"]


# -- attacks on the pre-auth token -------------------------------------------------------------


async def test_attack_pre_auth_token_is_refused_by_every_other_route(harness: Harness) -> None:
    """Better than v12 (which checks no audience): the pre-auth token, sent as a bearer
    token, opens nothing: not the v12 API, not the v10/v11 API, not forward-auth, not the
    v10/v11 second step; and no other token is taken as a pre-auth token."""
    await harness.create_user("bob")
    bob = bearer((await v12_login(harness, "bob"))["access_token"])
    # What nginx's auth_request sends to forward-auth (README).
    proxied = {"X-Original-URI": "/app/", "X-Original-Method": "GET"}
    for path in ("/api/v1/auth/me", "/api/account", "/api/auth/verify"):  # the control
        response = await harness.client.get(path, headers={**bob, **proxied})
        assert response.status_code == 200, path
    await alice_with_totp(harness)
    pre_auth = (await v12_login(harness))["pre_auth_token"]
    for method, path in (
        ("GET", "/api/v1/auth/me"),
        ("GET", "/api/v1/auth/sessions"),
        ("GET", "/api/account"),
        ("GET", "/api/auth/verify"),
        ("GET", "/api/tfa/verifyCode?code=123456"),
        ("POST", "/api/tfa/verify-code"),
    ):
        response = await harness.client.request(
            method, path, headers={**bearer(pre_auth), **proxied}
        )
        assert response.status_code == 401, (path, response.status_code)
    # The other way round: a v11 pre-verification token or an access token is no
    # pre-auth token.
    v11 = await harness.client.post(
        "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert v11.json()["authenticated"] is False
    for token in (v11.json()["id_token"], await harness.login("bob", USER_PASSWORD)):
        refused = await harness.client.post(
            VERIFY_CODE, json={"pre_auth_token": token, "code": "123456"}
        )
        assert refused.status_code == 401


async def test_attack_a_used_pre_auth_token_is_refused(harness: Harness) -> None:
    """Single use: the token that bought a session buys no second one, even with a
    new valid code."""
    secret, _ = await alice_with_totp(harness)
    pre_auth = (await v12_login(harness))["pre_auth_token"]
    first = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": totp_now(harness, secret)}
    )
    assert first.status_code == 200
    harness.clock.advance(seconds=30)
    reused = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": totp_now(harness, secret)}
    )
    assert reused.status_code == 401
    assert list(reused.json()) == ["error"]


async def test_attack_guessing_codes_kills_the_pre_auth_token(harness: Harness) -> None:
    """Guessing codes: each wrong code is 401, the fifth within ten minutes locks the
    second step (429, as the v10/v11 second step) and kills the token: even the right
    code does not revive it, and a new login is locked out too for a while."""
    secret, _ = await alice_with_totp(harness)
    pre_auth = (await v12_login(harness))["pre_auth_token"]
    statuses = []
    for _ in range(5):
        wrong = not_the_code(totp_now(harness, secret))
        response = await harness.client.post(
            VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": wrong}
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 401, 429]
    dead = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": totp_now(harness, secret)}
    )
    assert dead.status_code == 401
    fresh = (await v12_login(harness))["pre_auth_token"]
    locked = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": fresh, "code": totp_now(harness, secret)}
    )
    assert locked.status_code == 429
    assert ("failure", "second_factor_locked") in await _events(harness, "AUTH_LOCKOUT")


async def test_attack_a_session_from_before_the_factor_stops_refreshing(
    harness: Harness,
) -> None:
    """A v12 session started before the factor was enabled did not pass it: it ends at
    its next refresh, and is no longer listed. The session that enrolled (it proved a
    code) goes on."""
    await harness.create_user("alice")
    other = await v12_login(harness)
    enrolling = await v12_login(harness)
    await enrol_totp_v12(harness, enrolling["access_token"])
    listed = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(enrolling["access_token"])
    )
    assert [s["current"] for s in listed.json()] == [True]  # not the one that must stop
    stale = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert stale.status_code == 401  # an invalid refresh token, whatever the cause
    assert stale.json() == {
        "error": "A second factor was enabled since this session began; sign in again"
    }
    kept = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": enrolling["refresh_token"]}
    )
    assert kept.status_code == 200, kept.text
    claims = jwt.decode(kept.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp"]


async def test_attack_a_session_from_before_the_factor_cannot_end_the_others(
    harness: Harness,
) -> None:
    """A session that did not pass the factor may not end the sessions that did (403,
    as for changing credentials), neither all at once nor one by one; it may still end
    itself, by id or by logout."""
    await harness.create_user("alice")
    before = await v12_login(harness)
    leaving = await v12_login(harness)
    enrolling = await v12_login(harness)
    await enrol_totp_v12(harness, enrolling["access_token"])

    def sid(pair: Any) -> str:
        claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
        session_id: str = claims["sid"]
        return session_id

    headers = bearer(before["access_token"])
    for path in ("/api/v1/auth/sessions", f"/api/v1/auth/sessions/{sid(enrolling)}"):
        refused = await harness.client.delete(path, headers=headers)
        assert refused.status_code == 403, (path, refused.text)
        assert "second factor" in refused.json()["error"]
    # Nor through v10's "log out everywhere" (second attack review), keys included.
    everywhere = await harness.client.post(
        "/api/account/logout-all", json={"revokeApiKeys": True}, headers=headers
    )
    assert everywhere.status_code == 403, everywhere.text
    kept = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": enrolling["refresh_token"]}
    )
    assert kept.status_code == 200, kept.text
    itself = await harness.client.delete(f"/api/v1/auth/sessions/{sid(before)}", headers=headers)
    assert itself.status_code == 204, itself.text
    assert (await harness.client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    out = await harness.client.post(
        "/api/v1/auth/logout", json={"refresh_token": leaving["refresh_token"]}
    )
    assert out.status_code == 204
    left = await harness.client.get("/api/v1/auth/me", headers=bearer(leaving["access_token"]))
    assert left.status_code == 401


# -- enrolment, turning off, the admin's reset ---------------------------------------------------


async def test_enroll_init_answers_the_qr_code_and_the_uri(harness: Harness) -> None:
    """dto/tfa.go TfaEnrollmentResponse INIT: type, factor_id, qr_data_url,
    otp_auth_url, expires_at (what a stage does not answer is left out: omitempty); bad
    stages and types are 400."""
    await harness.create_user("alice")
    token = bearer((await v12_login(harness))["access_token"])
    for body in ({"stage": "START", "type": "totp"}, {"stage": "INIT", "type": "sms"}, {}):
        bad = await harness.client.post(ENROLL, json=body, headers=token)
        assert bad.status_code == 400, body
        assert list(bad.json()) == ["error"]
    init = await harness.client.post(ENROLL, json={"stage": "init", "type": "TOTP"}, headers=token)
    body = init.json()
    assert body["stage"] == "INIT"
    assert body["init"]["type"] == "totp"
    assert len(body["init"]["factor_id"]) == 36
    assert body["init"]["otp_auth_url"].startswith("otpauth://totp/authgate:alice?secret=")
    prefix = "data:image/png;base64,"
    assert body["init"]["qr_data_url"].startswith(prefix)
    png = base64.b64decode(body["init"]["qr_data_url"][len(prefix) :])
    assert png.startswith(b"\x89PNG")
    assert "email_sent" not in body["init"]
    assert body["init"]["expires_at"]
    assert set(body) == {"stage", "init"}


async def test_enrolment_errors_are_v12s(harness: Harness) -> None:
    """usecase/tfa.go: VERIFY before INIT is 404 "tfa factor not found"
    (verifyEnrollment), a wrong code 400 "invalid tfa code" (handler/tfa.go writeErr
    answers 401: see the next test), and COMPLETE before VERIFY only reports that no
    factor is in force (200)."""
    await harness.create_user("alice")
    token = bearer((await v12_login(harness))["access_token"])
    early = await harness.client.post(
        ENROLL, json={"stage": "VERIFY", "type": "totp", "code": "123456"}, headers=token
    )
    assert early.status_code == 404
    assert early.json() == {"error": "tfa factor not found"}
    init = await harness.client.post(ENROLL, json={"stage": "INIT", "type": "totp"}, headers=token)
    secret = parse_qs(urlparse(init.json()["init"]["otp_auth_url"]).query)["secret"][0]
    unverified = await harness.client.post(
        ENROLL, json={"stage": "COMPLETE", "type": "totp"}, headers=token
    )
    assert unverified.status_code == 200
    assert unverified.json() == {"stage": "COMPLETE", "enabled": False}
    wrong = await harness.client.post(
        ENROLL,
        json={"stage": "VERIFY", "type": "totp", "code": not_the_code(totp_now(harness, secret))},
        headers=token,
    )
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid tfa code"}
    assert await _events(harness, "TFA_FAILURE") == [("failure", "wrong_enrolment_code")]
    # The refusals changed nothing: the enrolment goes on.
    assert (await harness.client.get("/api/v1/auth/me", headers=token)).json()[
        "tfa_enabled"
    ] is False
    right = await harness.client.post(
        ENROLL,
        json={"stage": "VERIFY", "type": "totp", "code": totp_now(harness, secret)},
        headers=token,
    )
    assert right.json() == {"stage": "VERIFY", "verified": True}


async def test_wrong_enrolment_codes_count_once_from_v12s_ui(harness: Harness) -> None:
    """A wrong code at VERIFY is 400, not v12's 401: v12's client answers a 401 by
    refreshing and sending the request again, so each wrong code typed counted twice
    and the third locked the second step (429; black-box review). Typed three times it
    is refused three times, and the right code still verifies."""
    await harness.create_user("alice")
    pair = await v12_login(harness)
    init = await ui_request(harness, "POST", ENROLL, pair, json={"stage": "INIT", "type": "totp"})
    secret = parse_qs(urlparse(init.json()["init"]["otp_auth_url"]).query)["secret"][0]
    wrong = {"stage": "VERIFY", "type": "totp", "code": not_the_code(totp_now(harness, secret))}
    for _ in range(3):
        refused = await ui_request(harness, "POST", ENROLL, pair, json=wrong)
        assert (refused.status_code, refused.json()) == (400, {"error": "invalid tfa code"})
    assert len(await _events(harness, "TFA_FAILURE")) == 3
    right = {"stage": "VERIFY", "type": "totp", "code": totp_now(harness, secret)}
    verified = await ui_request(harness, "POST", ENROLL, pair, json=right)
    assert verified.json() == {"stage": "VERIFY", "verified": True}


async def test_init_of_the_enrolled_method_is_400_from_any_session(harness: Harness) -> None:
    """usecase/tfa.go initEnrollment: ErrTfaFactorExists (400), asked before anything
    else: from the session that just enrolled as from one that passed the login's second
    step. Another method needs a session that passed the factor: the enrolling one has
    (it proved a code at VERIFY), one from before the factor has not."""
    await harness.create_user("alice")
    earlier = (await v12_login(harness))["access_token"]
    enrolling = (await v12_login(harness))["access_token"]
    secret, _ = await enrol_totp_v12(harness, enrolling)
    pre_auth = (await v12_login(harness))["pre_auth_token"]
    passed = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": totp_now(harness, secret)}
    )
    for token in (enrolling, passed.json()["access_token"]):
        again = await harness.client.post(
            ENROLL, json={"stage": "INIT", "type": "totp"}, headers=bearer(token)
        )
        assert again.status_code == 400, again.text
        assert again.json() == {"error": "a tfa factor of this type is already enrolled"}
    other = await harness.client.post(
        ENROLL, json={"stage": "INIT", "type": "email"}, headers=bearer(earlier)
    )
    assert other.status_code == 403


async def test_enrolment_needs_a_user_session(harness: Harness) -> None:
    """Enrolling sets credentials: an API key may not (403), nor can no one (401)."""
    await harness.create_user("alice")
    token = await harness.login("alice", USER_PASSWORD)
    key = await harness.create_key(token, scopes=["read", "write"])
    by_key = await harness.client.post(
        ENROLL, json={"stage": "INIT", "type": "totp"}, headers={"Utm-Api-Key": key["key"]}
    )
    assert by_key.status_code == 403
    anonymous = await harness.client.post(ENROLL, json={"stage": "INIT", "type": "totp"})
    assert anonymous.status_code == 401


async def test_disable_needs_the_password(harness: Harness) -> None:
    """handler/tfa.go Disable {password}: a wrong password is 400 "current password is
    incorrect" (never 401, which v12's client would retry: counted once, like a failed
    login), the right one turns it off: the login answers tokens again; with no factor
    left it is 204 all the same (usecase/tfa.go ResetForUser)."""
    secret, _ = await alice_with_totp(harness)
    pre_auth = (await v12_login(harness))["pre_auth_token"]
    session = await harness.client.post(
        VERIFY_CODE, json={"pre_auth_token": pre_auth, "code": totp_now(harness, secret)}
    )
    token = bearer(session.json()["access_token"])
    wrong = await harness.client.post(
        "/api/v1/tfa/disable", json={"password": "not-the-password-1"}, headers=token
    )
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "current password is incorrect"}
    assert "WWW-Authenticate" not in wrong.headers
    assert await _events(harness, "AUTH_FAILURE") == [("failure", "wrong_current_password")]
    done = await harness.client.post(
        "/api/v1/tfa/disable", json={"password": USER_PASSWORD}, headers=token
    )
    assert done.status_code == 204
    assert (await harness.client.get("/api/v1/auth/me", headers=token)).json()[
        "tfa_enabled"
    ] is False
    assert (await v12_login(harness))["access_token"]
    again = await harness.client.post(
        "/api/v1/tfa/disable", json={"password": USER_PASSWORD}, headers=token
    )
    assert again.status_code == 204
    assert await _events(harness, "TFA_DISABLED") == [("success", "disabled_by_user")]


async def test_disable_from_a_session_that_skipped_the_factor_is_refused(
    harness: Harness,
) -> None:
    """Only a session that passed the factor may turn it off: one started before the
    factor was enabled cannot (403), though it knows the password."""
    await harness.create_user("alice")
    before = await v12_login(harness)
    enrolling = await v12_login(harness)
    await enrol_totp_v12(harness, enrolling["access_token"])
    refused = await harness.client.post(
        "/api/v1/tfa/disable",
        json={"password": USER_PASSWORD},
        headers=bearer(before["access_token"]),
    )
    assert refused.status_code == 403
    # The enrolling session proved the factor at VERIFY, and so may (v12 answers 204),
    # with its current access token and with one its refresh issues.
    refreshed = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": enrolling["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    done = await harness.client.post(
        "/api/v1/tfa/disable",
        json={"password": USER_PASSWORD},
        headers=bearer(refreshed.json()["access_token"]),
    )
    assert done.status_code == 204, done.text


async def test_the_enrolling_access_token_may_turn_the_factor_off(harness: Harness) -> None:
    """v12: VERIFY enables the factor in the session that enrolls; its access token goes
    on working for credential changes (it proved the code), no sign-in needed."""
    await harness.create_user("alice")
    enrolling = (await v12_login(harness))["access_token"]
    await enrol_totp_v12(harness, enrolling)
    done = await harness.client.post(
        "/api/v1/tfa/disable", json={"password": USER_PASSWORD}, headers=bearer(enrolling)
    )
    assert done.status_code == 204, done.text


async def test_admin_disables_a_users_factor_by_id(harness: Harness) -> None:
    """routes.go POST /users/{id}/tfa/disable: ROLE_ADMIN only, the v12 id (UUID);
    unknown ids 404, ids that are no UUID 400 (handler's pathID); audited."""
    await alice_with_totp(harness)
    await harness.create_user("root", ADMIN_PASSWORD, admin=True)
    admin = bearer((await v12_login(harness, "root", ADMIN_PASSWORD))["access_token"])
    async with harness.services.db.session() as session:
        alice = await session.scalar(select(User).where(User.login == "alice"))
        assert alice is not None
        public_id = alice.public_id
    path = f"/api/v1/users/{public_id}/tfa/disable"
    await harness.create_user("bob")
    bob = bearer((await v12_login(harness, "bob"))["access_token"])
    assert (await harness.client.post(path, headers=bob)).status_code == 403
    unknown = await harness.client.post(
        "/api/v1/users/00000000-0000-4000-8000-000000000000/tfa/disable", headers=admin
    )
    assert unknown.status_code == 404
    assert list(unknown.json()) == ["error"]
    malformed = await harness.client.post("/api/v1/users/not-a-uuid/tfa/disable", headers=admin)
    assert (malformed.status_code, malformed.json()) == (400, {"error": "invalid id"})
    assert (await harness.client.post(path, headers=admin)).status_code == 204
    assert (await v12_login(harness))["access_token"]
    assert ("success", "reset_by_admin") in await _events(harness, "TFA_DISABLED")


# -- e-mail codes and secrets at rest ------------------------------------------------------------


def _last_code(recorder: MailRecorder) -> str:
    body = [m for m in recorder.messages() if m["To"] == "alice@example.com"][-1].get_content()
    found = re.search(r"\b(\d{6})\b", body)
    assert found is not None, body
    return found.group(1)


async def test_email_factor_end_to_end_and_codes_stored_hashed(
    tmp_path: Path, database_url: str
) -> None:
    """usecase/auth.go with tfa_type email: enrolment mails a code (INIT email_sent),
    the login mails another as the v10/v11 login does; better than v12, the codes are
    stored only as HMACs."""
    with running_smtp_server() as (recorder, port):
        async with harness_with(
            tmp_path,
            database_url,
            **smtp_settings(port),
        ) as harness:
            alice_id = await harness.create_user("alice")
            token = bearer((await v12_login(harness))["access_token"])
            init = await harness.client.post(
                ENROLL, json={"stage": "INIT", "type": "email"}, headers=token
            )
            assert init.status_code == 200, init.text
            assert init.json()["init"]["email_sent"] is True
            assert "qr_data_url" not in init.json()["init"]
            verify = await harness.client.post(
                ENROLL,
                json={"stage": "VERIFY", "type": "email", "code": _last_code(recorder)},
                headers=token,
            )
            assert verify.json()["verified"] is True
            complete = await harness.client.post(
                ENROLL, json={"stage": "COMPLETE", "type": "email"}, headers=token
            )
            assert complete.json()["enabled"] is True

            challenge = await v12_login(harness)
            assert challenge["tfa_type"] == "email"
            code = _last_code(recorder)
            async with harness.services.db.session() as session:
                rows = list(
                    await session.scalars(
                        select(OneTimeCode).where(
                            OneTimeCode.user_id == alice_id, OneTimeCode.purpose == "email_login"
                        )
                    )
                )
            assert len(rows) == 1
            assert re.fullmatch(r"[0-9a-f]{64}", rows[0].code_hash)
            assert code not in rows[0].code_hash
            response = await harness.client.post(
                VERIFY_CODE,
                json={"pre_auth_token": challenge["pre_auth_token"], "code": code},
            )
            assert response.status_code == 200, response.text
            assert response.json()["user"]["tfa_enabled"] is True


async def _alice_with_email_codes(harness: Harness) -> None:
    await harness.create_user("alice")
    async with harness.services.db.transaction() as session:
        alice = await session.scalar(select(User).where(User.login == "alice"))
        assert alice is not None
        await harness.services.second_factor.put_in_force(
            session, alice, ImportedFactor("EMAIL", None)
        )


async def test_a_code_that_cannot_be_mailed_is_503(tmp_path: Path, database_url: str) -> None:
    """handler/auth.go Login: ErrTfaMailUnavailable is 503. v12's code page takes six
    digits and cannot ask for another code, so the 200 ``tfa_type: "email"`` authgate
    answered with the SMTP server down left the user waiting for a code that never
    came. The v10/v11 login goes on as before (a recovery code works, and
    ``GET /api/tfa/refresh`` sends again)."""
    closed = 18351  # this helper's port range; nothing listens there
    async with harness_with(tmp_path, database_url, **smtp_settings(closed)) as harness:
        await _alice_with_email_codes(harness)
        refused = await harness.client.post(
            LOGIN, json={"login": "alice", "password": USER_PASSWORD}
        )
        assert refused.status_code == 503
        assert refused.json() == {
            "error": "the second factor is sent by email, and the code could not be sent; "
            "try again later"
        }
        assert refused.headers["Retry-After"] == "30"
        v11 = await harness.client.post(
            "/api/authenticate", json={"username": "alice", "password": USER_PASSWORD}
        )
        assert v11.status_code == 200, v11.text
        assert (v11.json()["authenticated"], v11.json()["method"]) == (False, "EMAIL")


async def test_without_a_mail_server_the_503_says_so(harness: Harness) -> None:
    """v12's words when no SMTP server is configured at all: the fix is in the
    configuration, not in the user's fingers (domain/errors.go)."""
    await _alice_with_email_codes(harness)
    refused = await harness.client.post(LOGIN, json={"login": "alice", "password": USER_PASSWORD})
    assert refused.status_code == 503
    assert refused.json() == {
        "error": "the second factor is sent by email, and no mail server is configured"
    }


async def test_an_email_enrolment_code_works_until_the_expiry_init_gives(
    tmp_path: Path, database_url: str
) -> None:
    """INIT of e-mail codes answers the code's true lifetime as ``expires_at`` (now +
    300 s; it said now + 120 s), and the code still verifies just before it."""
    with running_smtp_server() as (recorder, port):
        async with harness_with(tmp_path, database_url, **smtp_settings(port)) as harness:
            await harness.create_user("alice")
            token = bearer((await v12_login(harness))["access_token"])
            init = await harness.client.post(
                ENROLL, json={"stage": "INIT", "type": "email"}, headers=token
            )
            expires_at = datetime.fromisoformat(init.json()["init"]["expires_at"])
            assert expires_at == harness.clock() + timedelta(seconds=300)
            harness.clock.advance(seconds=299)
            verify = await harness.client.post(
                ENROLL,
                json={"stage": "VERIFY", "type": "email", "code": _last_code(recorder)},
                headers=token,
            )
            assert verify.json() == {"stage": "VERIFY", "verified": True}


async def test_totp_secrets_at_rest_are_aes_gcm_with_a_random_nonce(harness: Harness) -> None:
    """Better than v12 (CBC with a fixed IV): the stored secret is ``v1.`` + base64 of a
    12-byte nonce, the AES-GCM ciphertext and its 16-byte tag; encrypting the same
    secret again gives another ciphertext; it decrypts to the enrolled secret."""
    secret, _ = await alice_with_totp(harness)
    async with harness.services.db.transaction() as session:
        user = await session.scalar(select(User).where(User.login == "alice"))
        assert user is not None
        row = await session.get(SecondFactor, user.id)
        assert row is not None
        assert row.totp_secret is not None
        first = row.totp_secret
        assert first.startswith("v1.")
        assert secret not in first
        raw = base64.urlsafe_b64decode(first[3:])
        assert len(raw) == 12 + len(secret) + 16
        in_force = await harness.services.second_factor.factor_in_force(session, user)
        assert in_force == ImportedFactor("TOTP", secret)
        await harness.services.second_factor.put_in_force(session, user, in_force)
        await session.flush()
        second = row.totp_secret
    assert second is not None
    assert second != first
    assert base64.urlsafe_b64decode(second[3:])[:12] != raw[:12]
