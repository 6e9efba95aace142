"""The account page's v12 sessions (issue 17): listed with device, address, created and
last use; revoked one at a time or all others, by CSRF-protected forms."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from authgate.web.display import device
from tests.api.v1.test_v12_second_factor import enrol_totp_v12
from tests.conftest import USER_PASSWORD, Harness
from tests.web.conftest import Browser, html, notice_of, redirect_target

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
ACCOUNT = "/settings/account"


async def v12_login(
    harness: Harness, login: str, *, user_agent: str, address: str = "127.0.0.1"
) -> dict[str, Any]:
    harness.clock.advance(seconds=1)  # the sessions are listed oldest first
    async with harness.client_from(address) as client:
        response = await client.post(
            "/api/v1/auth/login",
            json={"login": login, "password": USER_PASSWORD},
            headers={"User-Agent": user_agent},
        )
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


async def refresh_status(harness: Harness, pair: dict[str, Any]) -> int:
    response = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    return response.status_code


async def session_rows(browser: Browser) -> list[list[str]]:
    page = await browser.get(ACCOUNT)
    assert page.status_code == 200
    section = html(page).by_id("sessions")
    return [[cell.text for cell in row.find_all("td")] for row in section.find_all("tr")[1:]]


async def test_sessions_are_listed_and_revoked(harness: Harness, alice: Browser) -> None:
    """Each v12 login is a row; Revoke ends that one (its refresh token is refused),
    "Revoke all other sessions" the rest; someone else's session id ends nothing."""
    laptop = await v12_login(harness, "alice", user_agent=FIREFOX, address="203.0.113.7")
    script = await v12_login(harness, "alice", user_agent="authgate-client/0.1.0")
    third = await v12_login(harness, "alice", user_agent="curl/8.5.0")
    await harness.create_user("bob", USER_PASSWORD)
    bobs = await v12_login(harness, "bob", user_agent="curl/8.5.0")

    rows = await session_rows(alice)
    assert [row[:2] for row in rows] == [
        ["Firefox on Linux", "203.0.113.7"],
        ["authgate-client 0.1.0", "127.0.0.1"],
        ["curl 8.5.0", "127.0.0.1"],
    ]
    assert all(row[2].endswith("Z") and row[3].endswith("Z") for row in rows)

    page = html(await alice.get(ACCOUNT))
    forms = [f.attrs["action"] for f in page.by_id("sessions").find_all("form")]
    laptop_form = forms[0]
    refused = await alice.post(laptop_form, csrf=False)
    assert refused.status_code == 403
    assert await refresh_status(harness, laptop) == 200  # nothing was revoked

    revoked = await alice.post(laptop_form)
    assert redirect_target(revoked).startswith(ACCOUNT)
    assert notice_of(revoked) == "Session revoked."
    again = await alice.post(laptop_form)
    assert notice_of(again) == "That session had already ended."

    bobs_id = await _only_session_id(harness, bobs)
    foreign = await alice.post(f"{ACCOUNT}/sessions/{bobs_id}/revoke")
    assert notice_of(foreign) == "That session had already ended."
    assert await refresh_status(harness, bobs) == 200

    others = await alice.post(f"{ACCOUNT}/sessions/revoke-others")
    assert notice_of(others) == "2 sessions revoked."
    assert [await refresh_status(harness, p) for p in (script, third)] == [401, 401]
    empty = html(await alice.get(ACCOUNT)).by_id("sessions")
    assert empty.find(id="no-sessions").text == "No sessions."


async def _only_session_id(harness: Harness, pair: dict[str, Any]) -> str:
    response = await harness.client.get(
        "/api/v1/auth/sessions", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    (session,) = response.json()
    session_id: str = session["id"]
    return session_id


@pytest.mark.parametrize(
    ("user_agent", "shown"),
    [
        (FIREFOX, "Firefox on Linux"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15"
            " (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Safari on iOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko)"
            " Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome on Android",
        ),
        ("authgate-client/0.1.0", "authgate-client 0.1.0"),
        ("python-httpx/0.28.1", "python-httpx 0.28.1"),
        ("curl", "curl"),
        (None, "Unknown device"),
        ("  ", "Unknown device"),
        ("<script>", "Unknown device"),
    ],
)
def test_device_names_a_user_agent_as_people_do(user_agent: str | None, shown: str) -> None:
    assert device(user_agent) == shown


async def test_a_page_session_from_before_the_factor_cannot_end_the_others(
    harness: Harness, alice: Browser
) -> None:
    """As on /api/v1 (v12 review): the Settings UI session alice opened before a second
    factor was enabled (elsewhere) may not end the session that enabled it, one by one
    or all at once: 403, and that session still refreshes."""
    enrolling = await v12_login(harness, "alice", user_agent=FIREFOX)
    await enrol_totp_v12(harness, enrolling["access_token"])
    claims = jwt.decode(enrolling["access_token"], options={"verify_signature": False})
    for form in (
        f"{ACCOUNT}/sessions/{claims['sid']}/revoke",
        f"{ACCOUNT}/sessions/revoke-others",
        f"{ACCOUNT}/logout-all",  # (the second attack review: it ended them all)
    ):
        refused = await alice.post(form)
        assert refused.status_code == 403, (form, refused.status_code)
        assert "Sign out and in again with your second factor" in refused.text, form
    assert await refresh_status(harness, enrolling) == 200
