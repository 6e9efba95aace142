"""Housekeeping of v12 sessions (issue 17): expired and revoked sessions go, with their
refresh tokens, in bounded batches; live ones and the access-token deny list stay."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from authgate.storage.models import RefreshToken, Session
from tests.conftest import USER_PASSWORD, Harness, bearer

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


async def _login(harness: Harness) -> dict[str, Any]:
    response = await harness.client.post(LOGIN, json={"login": "alice", "password": USER_PASSWORD})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


async def _count(harness: Harness, model: type[Session] | type[RefreshToken]) -> int:
    async with harness.services.db.session() as read:
        return int(await read.scalar(select(func.count()).select_from(model)) or 0)


async def test_expired_and_revoked_sessions_are_purged_in_batches(harness: Harness) -> None:
    """Three ended sessions (one expired, one logged out, one revoked with a rotated
    token) are deleted one per transaction; the live session, its refresh token and
    the refusal of the logged-out session's access token remain."""
    await harness.create_user("alice")
    expired = await _login(harness)
    harness.clock.advance(seconds=harness.services.settings.tokens.remember_me_ttl_seconds + 1)
    logged_out = await _login(harness)
    revoked = await _login(harness)
    rotated = await harness.client.post(REFRESH, json={"refresh_token": revoked["refresh_token"]})
    assert rotated.status_code == 200
    live = await _login(harness)
    assert (
        await harness.client.post(
            "/api/v1/auth/logout", json={"refresh_token": logged_out["refresh_token"]}
        )
    ).status_code == 204
    sessions = await harness.client.get(
        "/api/v1/auth/sessions", headers=bearer(live["access_token"])
    )
    (revoked_id,) = [s["id"] for s in sessions.json() if not s["current"]]
    assert (
        await harness.client.delete(
            f"/api/v1/auth/sessions/{revoked_id}", headers=bearer(live["access_token"])
        )
    ).status_code == 204
    assert await _count(harness, Session) == 4
    assert await _count(harness, RefreshToken) == 5

    assert await harness.services.sessions.purge_ended(batch=1) == 3

    assert await _count(harness, Session) == 1
    assert await _count(harness, RefreshToken) == 1
    assert await harness.services.sessions.purge_ended() == 0
    refreshed = await harness.client.post(REFRESH, json={"refresh_token": live["refresh_token"]})
    assert refreshed.status_code == 200
    for ended in (expired, logged_out, revoked):
        again = await harness.client.post(REFRESH, json={"refresh_token": ended["refresh_token"]})
        assert again.status_code == 401
    still_refused = await harness.client.get(
        "/api/v1/auth/me", headers=bearer(logged_out["access_token"])
    )
    assert still_refused.status_code == 401
