"""Per-API-key rate limits, with the `limits` library.

A key may carry its own limit in `limits` notation — ``"100/minute"``, or several
separated by ``;`` for a burst plus a sustained rate, e.g. ``"10/second;1000/hour"`` —
or fall back to the configured default; keys without any limit cost nothing here.
Counting uses the sliding-window-counter strategy in memory per worker, or in Redis
(shared by every worker and node) when ``AUTHGATE_REDIS_URL`` is set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from authgate.exceptions import RateLimited

MAX_LIMIT_TEXT = 64


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """For the IETF RateLimit/RateLimit-Policy headers: the tightest of the key's limits."""

    limit: int
    window_seconds: int
    remaining: int
    reset_seconds: int


def parse_rate_limit(text: str) -> tuple[RateLimitItem, ...]:
    """Validate a limit such as ``100/minute`` or ``10/second;1000/hour``.

    Raises:
        ValueError: with a message for people.
    """
    if len(text) > MAX_LIMIT_TEXT:
        raise ValueError(f"A rate limit has at most {MAX_LIMIT_TEXT} characters.")
    try:
        items = tuple(parse_many(text))
    except ValueError:
        raise ValueError(
            'Invalid rate limit: use e.g. "100/minute" or "10/second;1000/hour".'
        ) from None
    if not items or any(item.amount <= 0 for item in items):
        raise ValueError("A rate limit needs a positive number of requests.")
    return items


class KeyRateLimits:
    def __init__(self, *, default: str | None, redis_url: str | None = None) -> None:
        self._default = default
        storage: Storage
        if redis_url:
            storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", key_prefix="authgate-limits"
            )
        else:
            storage = MemoryStorage()
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._parse = lru_cache(maxsize=1024)(parse_rate_limit)

    def applies(self, own_limit: str | None) -> bool:
        return own_limit is not None or self._default is not None

    async def hit(self, key_id: int, own_limit: str | None) -> tuple[RateLimitState, bool]:
        """Count one request of the key (call only when ``applies``): the state for the
        headers, and whether the request is within every limit."""
        text = own_limit or self._default
        if text is None:
            raise ValueError("no rate limit applies")
        items = self._parse(text)
        identifier = str(key_id)
        allowed = True
        for item in items:
            if not await self._limiter.hit(item, "key", identifier):
                allowed = False
        return await self._tightest(items, identifier), allowed

    async def _tightest(self, items: tuple[RateLimitItem, ...], identifier: str) -> RateLimitState:
        # `limits` keeps time with the wall clock, so its reset times are compared with it.
        now = time.time()
        best: RateLimitState | None = None
        for item in items:
            stats = await self._limiter.get_window_stats(item, "key", identifier)
            state = RateLimitState(
                limit=item.amount,
                window_seconds=item.get_expiry(),
                remaining=max(0, stats.remaining),
                reset_seconds=max(0, math.ceil(stats.reset_time - now)),
            )
            if best is None or state.remaining < best.remaining:
                best = state
        if best is None:
            raise ValueError("a rate limit needs at least one item")
        return best


def exceeded(state: RateLimitState) -> RateLimited:
    return RateLimited(
        "API key rate limit exceeded",
        retry_after=max(1, state.reset_seconds),
        reason="rate_limited",
    )
