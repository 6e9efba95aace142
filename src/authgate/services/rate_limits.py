"""Per-API-key rate limits, with the `limits` library.

A key may carry its own limit in `limits` notation — ``"100/minute"``, or several
separated by ``;`` for a burst plus a sustained rate, e.g. ``"10/second;1000/hour"`` —
or fall back to the configured default; keys without any limit cost nothing here.
Counting uses the sliding-window-counter strategy in memory per worker, or in Redis
(shared by every worker and node) when ``AUTHGATE_REDIS_URL`` is set. Should Redis fail,
each worker counts in memory until it answers again (behind the same breaker as
throttling, see ``redis_link``): limits stay enforced, per worker, during the outage.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, cast

from limits import RateLimitItem, parse_many
from limits.aio.storage import (
    MemoryStorage,
    RedisStorage,
    SlidingWindowCounterSupport,
    Storage,
)
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from authgate.exceptions import RateLimited
from authgate.reasons import Reason

if TYPE_CHECKING:
    from authgate.services.redis_link import RedisLink

MAX_LIMIT_TEXT = 64
# A rate, not a quota: counts live in each worker's memory while Redis is down and
# are lost at a restart, so a window of a week or a month would promise a budget that
# is not kept. `limits` also counts a window longer than the time since 1970 twice
# (its previous and current windows are then the same counter), and the count goes
# into the RateLimit headers, whose integers have at most 15 digits (RFC 9651).
MAX_WINDOW_SECONDS = 86_400
MAX_REQUESTS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """For the IETF RateLimit/RateLimit-Policy headers: the tightest of the key's limits
    (for a refusal, the refusing limit with the longest wait)."""

    limit: int
    window_seconds: int
    remaining: int
    reset_seconds: int


def parse_rate_limit(text: str) -> tuple[RateLimitItem, ...]:
    """Read a limit such as ``100/minute`` or ``10/second;1000/hour``, as stored.

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


# A window of zero units ("1/0 second", "5 per 00 minutes").
_ZERO_MULTIPLE = re.compile(r"(?:/|\bper\b)\s*0+\s*[a-z]", re.IGNORECASE)


def check_rate_limit(text: str) -> tuple[RateLimitItem, ...]:
    """Validate a new limit: readable (:func:`parse_rate_limit`), within
    ``MAX_REQUESTS`` requests per window and ``MAX_WINDOW_SECONDS`` a window.

    Raises:
        ValueError: with a message for people.
    """
    if _ZERO_MULTIPLE.search(text):  # `limits` reads "1/0 second" as "1/second"
        raise ValueError('A rate limit\'s window is at least one unit ("1/0 second" is none).')
    items = parse_rate_limit(text)
    if any(item.amount > MAX_REQUESTS for item in items):
        raise ValueError(f"A rate limit allows at most {MAX_REQUESTS:,} requests a window.")
    if any(item.get_expiry() > MAX_WINDOW_SECONDS for item in items):
        raise ValueError("A rate limit's window is at most one day (e.g. 10000/day).")
    return items


class KeyRateLimits:
    def __init__(self, *, default: str | None, link: RedisLink | None = None) -> None:
        """With ``link`` (the Redis client behind the breaker shared with the rest of
        the Redis use), counts are kept in Redis through that client's connections; while
        the breaker is open, in memory."""
        self._default = default
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis: SlidingWindowCounterRateLimiter | None = None
        self._link = link
        if link is not None:
            storage: Storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix="authgate-limits",
                connection_pool=link.client.connection_pool,
            )
            self._redis = SlidingWindowCounterRateLimiter(storage)
        # Not check_rate_limit: a key stored before the bounds keeps its limit rather
        # than failing each request.
        self._parse = lru_cache(maxsize=1024)(parse_rate_limit)

    def applies(self, own_limit: str | None) -> bool:
        return own_limit is not None or self._default is not None

    async def hit(self, key_pk: int, own_limit: str | None) -> tuple[RateLimitState, bool]:
        """Count one request of the key (call only when ``applies``): the state for the
        headers, and whether the request is within every limit. A refused request is
        not counted; its state is the refusing limit that frees up last."""
        text = own_limit or self._default
        if text is None:
            raise ValueError("no rate limit applies")
        items = self._parse(text)
        identifier = str(key_pk)
        # Test every limit before counting anything: a refused request is not served,
        # so it must not use up the budget of the limits that would have let it through
        # (with "2/minute;10/hour", refusals by the minute would otherwise drain the hour).
        if self._redis is None or self._link is None:
            return await self._hit(self._memory, items, identifier)
        # Redis while it answers, this worker's memory while it does not.
        return await self._link.through(
            self._redis, self._memory, lambda limiter: self._hit(limiter, items, identifier)
        )

    async def _hit(
        self,
        limiter: SlidingWindowCounterRateLimiter,
        items: tuple[RateLimitItem, ...],
        identifier: str,
    ) -> tuple[RateLimitState, bool]:
        refused = [item for item in items if not await limiter.test(item, "key", identifier)]
        if not refused:
            for taken, item in enumerate(items):
                if not await limiter.hit(item, "key", identifier):
                    # Another request took the last slot between the test and the hit
                    # (requests interleave on Redis's round trips). The slots this one
                    # took of the limits before are given back: refused, it uses up
                    # none (the rate-limit review: with "50/hour;5/second", bursts
                    # refused by the second used up the hour with 20 served). A hit of
                    # cost -1 is the library's own arithmetic run backwards, in one
                    # step (its Lua script on Redis); tests/services/test_rate_limits.py
                    # holds it to that on both storages.
                    for earlier in items[:taken]:
                        await _give_back(limiter, earlier, identifier)
                    refused = [item]
                    break
        if refused:
            states = await _states(limiter, refused, identifier)
            # Retry-After must wait for every limit that refuses, not just the first.
            return max(states, key=lambda state: state.reset_seconds), False
        states = await _states(limiter, items, identifier)
        # The tightest limit; on a tie the one that takes longer to recover.
        return min(states, key=lambda state: (state.remaining, -state.reset_seconds)), True


async def _give_back(
    limiter: SlidingWindowCounterRateLimiter, item: RateLimitItem, identifier: str
) -> None:
    """Give back the slot a refused request took of ``item``, unless the window it was
    taken in is over (the attack review: on Redis the library moves its counter on at
    the next hit, so the give-back itself started the new window at -1, and one more
    request was served there). Such a slot stays counted in the window before, which
    the sliding window weighs in for one window more: stricter, never laxer. Left: when
    another request moved the counter on between this one's hit and its give-back, the
    give-back takes one of the new window's slots (one request more there; it takes a
    window's edge within a round trip, and requests interleaving then)."""
    expiry = item.get_expiry()
    storage = cast(SlidingWindowCounterSupport, limiter.storage)
    _, _, current, current_expires_in = await storage.get_sliding_window(
        item.key_for("key", identifier), expiry
    )
    # The counter stored as current lives two windows from its window's start: with less
    # than one left, its window is over.
    if current > 0 and current_expires_in > expiry:
        await limiter.hit(item, "key", identifier, cost=-1)


async def _states(
    limiter: SlidingWindowCounterRateLimiter, items: Sequence[RateLimitItem], identifier: str
) -> list[RateLimitState]:
    # `limits` keeps time with the wall clock, so its reset times are compared with it.
    now = time.time()
    states = []
    for item in items:
        stats = await limiter.get_window_stats(item, "key", identifier)
        states.append(
            RateLimitState(
                limit=item.amount,
                window_seconds=item.get_expiry(),
                remaining=max(0, stats.remaining),
                reset_seconds=max(0, math.ceil(stats.reset_time - now)),
            )
        )
    return states


def exceeded(state: RateLimitState) -> RateLimited:
    return RateLimited(
        "API key rate limit exceeded",
        retry_after=max(1, state.reset_seconds),
        reason=Reason.RATE_LIMITED,
    )
