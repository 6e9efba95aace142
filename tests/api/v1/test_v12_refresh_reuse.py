"""Refreshes with one refresh token at once (v12's web client in several tabs) and the
reuse interval (``AUTHGATE_REFRESH_REUSE_INTERVAL_SECONDS``).

v12's client keeps its tokens in localStorage, shared by every tab of the browser, and
makes one tab's refreshes one (``frontend/src/shared/lib/api-client.ts``: one
``refreshPromise`` per tab), so tabs whose access token expired together refresh with
the same refresh token at once. v12's backend lets all of them through (its Refresh
finds, issues, then revokes, not atomically); authgate took every one but the first for
a stolen token and ended the session, which logged every tab out. The refreshes here
run concurrently through the app (``asyncio.gather``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import pytest

from authgate.services.sessions import MAX_LIVE_REFRESH_TOKENS, SessionService, TokenPair
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.api.test_second_factor import harness_with
from tests.conftest import USER_PASSWORD, Harness, bearer

REFRESH = "/api/v1/auth/refresh"
TABS = 8


async def _login(harness: Harness) -> Any:
    response = await harness.client.post(
        "/api/v1/auth/login", json={"login": "alice", "password": USER_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _refresh(harness: Harness, refresh_token: str) -> httpx2.Response:
    return await harness.client.post(REFRESH, json={"refresh_token": refresh_token})


async def _at_once(harness: Harness, refresh_token: str, count: int) -> list[httpx2.Response]:
    return list(await asyncio.gather(*(_refresh(harness, refresh_token) for _ in range(count))))


async def _me(harness: Harness, access_token: str) -> int:
    return (await harness.client.get("/api/v1/auth/me", headers=bearer(access_token))).status_code


async def _reuse_events(harness: Harness) -> int:
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("REFRESH_TOKEN_REUSED",)), PageRequest(size=10)
    )
    return len(page.items)


def _interval(harness: Harness) -> int:
    return harness.services.settings.tokens.refresh_reuse_interval_seconds


async def test_tabs_refreshing_with_one_token_at_once_all_stay_signed_in(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight refreshes with one refresh token at once (all in the service together):
    each gets a pair of the same session, every access token works, nothing is taken
    for reuse, and the last new refresh token refreshes (the review: one 200 and seven
    401, then the winner's access token refused as revoked)."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    refresh, in_flight, most = SessionService.refresh, 0, 0

    async def counted(service: SessionService, refresh_token: str) -> TokenPair:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await refresh(service, refresh_token)
        finally:
            in_flight -= 1

    monkeypatch.setattr(SessionService, "refresh", counted)
    answers = await _at_once(harness, body["refresh_token"], TABS)
    assert most == TABS  # truly at once, not one after the other
    assert [a.status_code for a in answers] == [200] * TABS, [a.text for a in answers]
    pairs = [a.json() for a in answers]
    assert len({p["refresh_token"] for p in pairs}) == TABS
    for pair in pairs:
        assert await _me(harness, pair["access_token"]) == 200
    listed = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(pairs[0]["access_token"])
    )
    assert len(listed.json()) == 1
    assert await _reuse_events(harness) == 0
    # Whichever pair the tabs kept last in localStorage goes on refreshing.
    again = await _refresh(harness, pairs[-1]["refresh_token"])
    assert again.status_code == 200, again.text


async def test_the_next_exchange_retires_the_other_live_tokens(harness: Harness) -> None:
    """The session does not keep every token handed out in a burst: the next exchange of
    one retires the others. Presented within the interval a retired one still gets a
    pair; after it, it is reuse, and the session ends (the access tokens too)."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    first, second = (a.json() for a in await _at_once(harness, body["refresh_token"], 2))
    harness.clock.advance(seconds=_interval(harness) + 1)
    kept = (await _refresh(harness, first["refresh_token"])).json()
    assert (await _refresh(harness, second["refresh_token"])).status_code == 200
    harness.clock.advance(seconds=_interval(harness))
    late = await _refresh(harness, second["refresh_token"])
    assert late.status_code == 401
    assert await _me(harness, kept["access_token"]) == 401
    assert (await _refresh(harness, kept["refresh_token"])).status_code == 401
    assert await _reuse_events(harness) == 1


async def test_reuse_after_the_interval_ends_the_session(harness: Harness) -> None:
    """A token exchanged longer ago than the interval is reuse, as before: refused, the
    session revoked (the newest tokens too) and ``REFRESH_TOKEN_REUSED`` audited."""
    await harness.create_user("alice", USER_PASSWORD)
    stolen = await _login(harness)
    newest = (await _refresh(harness, stolen["refresh_token"])).json()
    harness.clock.advance(seconds=_interval(harness))
    assert (await _refresh(harness, stolen["refresh_token"])).status_code == 401
    assert (await _refresh(harness, newest["refresh_token"])).status_code == 401
    assert await _me(harness, newest["access_token"]) == 401
    assert await _reuse_events(harness) == 1


async def test_an_ended_session_refuses_its_tokens_within_the_interval(
    harness: Harness,
) -> None:
    """The interval never revives a session: after logout, or a password change, a
    token exchanged a moment ago is refused like the newest one."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    newest = (await _refresh(harness, body["refresh_token"])).json()
    out = await harness.client.post(
        "/api/v1/auth/logout", json={"refresh_token": newest["refresh_token"]}
    )
    assert out.status_code == 204
    assert (await _refresh(harness, body["refresh_token"])).status_code == 401

    other = await _login(harness)
    rotated = (await _refresh(harness, other["refresh_token"])).json()
    harness.clock.advance(seconds=1)
    changed = await harness.client.post(
        "/api/v1/auth/change-password",
        json={"current_password": USER_PASSWORD, "new_password": "a-brand-new-password"},
        headers=bearer(rotated["access_token"]),
    )
    assert changed.status_code == 204
    for token in (other["refresh_token"], rotated["refresh_token"]):
        assert (await _refresh(harness, token)).status_code == 401


async def test_exchanges_within_the_interval_are_bounded(harness: Harness) -> None:
    """At most ``MAX_LIVE_REFRESH_TOKENS`` live tokens per session: one token exchanged
    again and again within the interval is, past that, a replay, and ends the session."""
    await harness.create_user("alice", USER_PASSWORD)
    body = await _login(harness)
    statuses = [
        (await _refresh(harness, body["refresh_token"])).status_code
        for _ in range(MAX_LIVE_REFRESH_TOKENS + 1)
    ]
    assert statuses == [200] * MAX_LIVE_REFRESH_TOKENS + [401]
    assert await _reuse_events(harness) == 1


async def test_an_interval_of_zero_makes_any_second_exchange_reuse(
    tmp_path: Path, database_url: str
) -> None:
    """``AUTHGATE_REFRESH_REUSE_INTERVAL_SECONDS=0``: the strict rotation of before,
    where of refreshes at once one goes through and the session ends."""
    async with harness_with(tmp_path, database_url, refresh_reuse_interval_seconds=0) as harness:
        await harness.create_user("alice", USER_PASSWORD)
        body = await _login(harness)
        answers = await _at_once(harness, body["refresh_token"], 3)
        assert sorted(a.status_code for a in answers) == [200, 401, 401]
        winner = next(a.json() for a in answers if a.status_code == 200)
        assert await _me(harness, winner["access_token"]) == 401
