"""Per-key rate limits with several limits ("50/hour;5/second"): a refused request uses
up none of them, also when concurrent requests interleave on Redis's round trips."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, cast

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, SlidingWindowCounterSupport
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import from_url

from authgate.services.rate_limits import KeyRateLimits, _give_back
from authgate.services.redis_link import RedisLink


def _key() -> int:
    return secrets.randbelow(10**12) + 10**12  # no other test's key


async def _remaining(limits: KeyRateLimits, key: int, text: str) -> int:
    """What is left of the longest limit of ``text`` (the first one)."""
    limiter = limits._redis or limits._memory  # (the storage in use)
    stats = await limiter.get_window_stats(parse(text.split(";")[0]), "key", str(key))
    return stats.remaining


async def test_refused_bursts_use_up_no_longer_limit_on_redis(redis_url: str) -> None:
    """The rate-limit review: with "50/hour;5/second" on Redis, requests that passed the
    test of both limits took an hour slot, then were refused by the second: 8 bursts of
    40 served 20 requests and used up the whole hour. The slots taken before a refusal
    are given back."""
    client = from_url(redis_url)
    limits = KeyRateLimits(default=None, link=RedisLink(client))
    key, text = _key(), "50/hour;5/second"
    try:
        outcomes = await asyncio.gather(*(limits.hit(key, text) for _ in range(40)))
        served = sum(allowed for _, allowed in outcomes)
        assert 1 <= served <= 5
        assert await _remaining(limits, key, text) == 50 - served
    finally:
        await client.aclose()


async def _gives_a_slot_back(limiter: SlidingWindowCounterRateLimiter) -> None:
    item, key = parse("3/hour"), str(_key())
    assert [await limiter.hit(item, "key", key) for _ in range(4)] == [True, True, True, False]
    assert await limiter.hit(item, "key", key, cost=-1)
    assert (await limiter.get_window_stats(item, "key", key)).remaining == 1
    assert await limiter.hit(item, "key", key)
    assert not await limiter.hit(item, "key", key)


async def test_a_hit_of_cost_minus_one_gives_a_slot_back_in_memory() -> None:
    """What the refund above relies on, in the pinned ``limits``: a negative cost runs the
    sliding-window arithmetic backwards (in memory here, in its Lua script on Redis)."""
    await _gives_a_slot_back(SlidingWindowCounterRateLimiter(MemoryStorage()))


async def test_a_hit_of_cost_minus_one_gives_a_slot_back_on_redis(redis_url: str) -> None:
    client = from_url(redis_url)
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        connection_pool=client.connection_pool,  # type: ignore[arg-type]
    )
    try:
        await _gives_a_slot_back(SlidingWindowCounterRateLimiter(storage))
    finally:
        await client.aclose()


async def _redis_limiter(client: Any) -> SlidingWindowCounterRateLimiter:
    storage = RedisStorage(
        "async+redis://", implementation="redispy", connection_pool=client.connection_pool
    )
    return SlidingWindowCounterRateLimiter(storage)


async def _current_count(limiter: SlidingWindowCounterRateLimiter, item: Any, key: str) -> int:
    storage = cast(SlidingWindowCounterSupport, limiter.storage)
    window = await storage.get_sliding_window(item.key_for("key", key), item.get_expiry())
    return int(window[2])


async def test_a_slot_is_not_given_back_to_a_window_that_is_over(redis_url: str) -> None:
    """The attack review: the give-back of a slot, run once the limit's window was over
    (a slow round trip at a window's edge), started the next window at -1 on Redis, so
    it served one request more than its limit. Now a slot is given back only while its
    window lasts."""
    client = from_url(redis_url)
    try:
        limiter = await _redis_limiter(client)
        item, key = parse("3/second"), str(_key())
        assert await limiter.hit(item, "key", key)
        await _give_back(limiter, item, key)
        assert await _current_count(limiter, item, key) == 0  # within the window: given back
        assert await limiter.hit(item, "key", key)
        await asyncio.sleep(1.1)  # the window is over
        await _give_back(limiter, item, key)
        await asyncio.sleep(1.1)  # the slot taken before no longer weighs in
        served = [await limiter.hit(item, "key", key) for _ in range(5)]
        assert served == [True, True, True, False, False]
    finally:
        await client.aclose()
