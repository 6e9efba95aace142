"""A read that started before a change must not be cached after it, also by a request
that joined the read (single-flight) once the change was applied: that request would
otherwise keep a revoked key or a deactivated user working on this node until the
cache entry expired (a helper's review found it; revocation must reach every node
within a second)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from authgate.exceptions import ApiKeyRejected
from authgate.services.key_refs import key_ref
from tests.conftest import Harness

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def held_reads(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str
) -> tuple[asyncio.Event, asyncio.Event]:
    """Make ``owner.name`` (a database read) stop after reading until released: the
    first event says a read is held, the second releases it."""
    held, release = asyncio.Event(), asyncio.Event()
    read = getattr(owner, name)

    async def holding(*args: Any, **kwargs: Any) -> Any:
        row = await read(*args, **kwargs)
        held.set()
        await release.wait()
        return row

    monkeypatch.setattr(owner, name, holding)
    return held, release


async def race(
    first: Awaitable[Any],
    change: Callable[[], Awaitable[Any]],
    joiner: Callable[[], Awaitable[Any]],
    held: asyncio.Event,
    release: asyncio.Event,
) -> None:
    """``first`` reads and is held; ``change`` commits (and is applied here); then
    ``joiner`` joins the held read; the read is released and both finish."""
    first_task = asyncio.ensure_future(first)
    await asyncio.wait_for(held.wait(), 10)
    await change()
    joined = asyncio.ensure_future(joiner())
    await asyncio.sleep(0)  # the joiner waits on the read in flight
    release.set()
    await asyncio.gather(first_task, joined, return_exceptions=True)


async def refusal(harness: Harness, key: str) -> str | None:
    try:
        await harness.services.key_auth.authenticate(key, LOOPBACK)
    except ApiKeyRejected as error:
        return error.code
    return None


async def test_a_key_read_before_its_revocation_is_not_cached_by_a_joiner(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await harness.create_key(user_token, name="raced")
    held, release = held_reads(monkeypatch, harness.services.db, "verification_row")

    await race(
        refusal(harness, created["key"]),
        lambda: harness.services.api_keys.revoke(None, key_ref(created["id"])),
        lambda: refusal(harness, created["key"]),
        held,
        release,
    )

    monkeypatch.undo()
    assert await refusal(harness, created["key"]) == "invalid_api_key"


async def test_a_user_read_before_a_deactivation_is_not_cached_by_a_joiner(
    harness: Harness, user_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await harness.create_key(user_token, name="owned")
    assert await refusal(harness, created["key"]) is None  # the key is cached, the user not
    user_states = harness.services.key_auth._users
    user_states._cache.clear()
    users = type(harness.services.db.users(None))  # type: ignore[arg-type]
    held, release = held_reads(monkeypatch, users, "get")
    owner = await harness.services.users.get_user("alice")

    await race(
        refusal(harness, created["key"]),
        lambda: harness.services.users.deactivate("alice", acting_user_id=None),
        lambda: user_states.load(owner.id, now=harness.clock().timestamp()),
        held,
        release,
    )

    monkeypatch.undo()
    cached = user_states.cached(owner.id, now=harness.clock().timestamp())
    assert cached is None or not cached.active  # the raced read was not kept
    # The owner's state is checked before the key's own suspension.
    assert await refusal(harness, created["key"]) == "api_key_owner_inactive"
