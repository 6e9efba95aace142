"""Writes that race on one database (two nodes, or two workers) end as if one came after
the other: each test runs the second request while the first one's transaction is open,
at the point where it has read what it checks, and looks at the outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any

import httpx2
import pytest

from authgate.services import accounts, users
from authgate.storage.paging import PageRequest
from tests.api.test_api_keys import KEYS, key_header
from tests.conftest import Harness, bearer, format_instant

# How long the second request gets to finish inside the first one's transaction: one
# that waits for a lock does not finish then, and goes on once the first commits.
INSIDE_SECONDS = 0.5
OUTSIDE_SECONDS = 10.0  # a safety net once the first has committed, not a measured limit

Request = Callable[[], Coroutine[Any, Any, httpx2.Response]]


class Interleaving:
    """The second request, started inside the first one's transaction by a wrapped step of
    it (``wrap``), and its response once both are done (``second``)."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self._task: asyncio.Task[httpx2.Response] | None = None

    def wrap(self, step: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def with_second_request(*args: Any, **kwargs: Any) -> Any:
            result = await step(*args, **kwargs)
            if self._task is None:
                self._task = asyncio.ensure_future(self._request())
                await asyncio.wait({self._task}, timeout=INSIDE_SECONDS)
            return result

        return with_second_request

    async def second(self) -> httpx2.Response:
        assert self._task is not None, "the wrapped step never ran"
        return await asyncio.wait_for(self._task, OUTSIDE_SECONDS)


def key_body(harness: Harness, name: str) -> dict[str, Any]:
    expires_at = format_instant(harness.clock() + timedelta(days=1))
    return {"name": name, "allowedIp": ["127.0.0.1", "::1"], "expiresAt": expires_at}


REMEDIATIONS = {
    # what the admin (or the user) does; the step the second request runs after
    "password_reset": (users, "revoke_owner_keys"),
    "logout_all": (accounts, "revoke_owner_keys"),
    "deactivation": (users, "suspend_owner_keys"),
}


async def remediate(harness: Harness, how: str, admin_token: str, user_token: str) -> None:
    if how == "password_reset":
        response = await harness.client.put(
            "/api/users/alice/password",
            json={"newPassword": "a-fresh-password-for-her", "revokeApiKeys": True},
            headers=bearer(admin_token),
        )
    elif how == "logout_all":
        response = await harness.client.post(
            "/api/account/logout-all", json={"revokeApiKeys": True}, headers=bearer(user_token)
        )
    else:
        response = await harness.client.put(
            "/api/users/alice", json={"activated": False}, headers=bearer(admin_token)
        )
    assert response.status_code in (200, 204), response.text


@pytest.mark.parametrize("how", sorted(REMEDIATIONS))
async def test_a_key_created_during_a_remediation_does_not_survive_it(
    harness: Harness,
    admin_token: str,
    user_token: str,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """A key created with the user's session while a password reset or "log out
    everywhere" revokes their keys (or a deactivation suspends them) is refused (401:
    the session ended) or revoked/suspended with the others, never left working."""
    await harness.create_key(user_token, name="before")

    async def create() -> httpx2.Response:
        return await harness.client.post(
            KEYS, json=key_body(harness, "during"), headers=bearer(user_token)
        )

    interleaving = Interleaving(create)
    module, step = REMEDIATIONS[how]
    monkeypatch.setattr(module, step, interleaving.wrap(getattr(module, step)))
    await remediate(harness, how, admin_token, user_token)
    created = await interleaving.second()

    assert created.status_code in (201, 401), created.text
    if created.status_code == 201:
        refused = await harness.client.get(
            "/api/account", headers=key_header(created.json()["key"])
        )
        assert refused.status_code == 401
    alice = await harness.services.users.get_user("alice")
    page = await harness.services.api_keys.list_keys(
        None, PageRequest(size=100), owner_id=alice.id, include_revoked=True
    )
    for key in page.items:
        assert key.revoked_at is not None or key.suspended_at is not None, key.name
