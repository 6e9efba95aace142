"""Brute-force counters and blocks in Redis, so every worker and node sees the same
counts; the database store (``throttle_store``) is the default and the fallback."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from authgate.storage.throttle_store import Block, sliding_count, window_start


class RedisThrottleStore:
    """The same in Redis: a hash per subject holding a count per window (``HINCRBY`` +
    ``EXPIRE``), a key per block. One key per subject, so forgetting a subject is a
    ``DEL``, never a scan of the keyspace."""

    def __init__(self, redis: Any, *, prefix: str = "authgate:throttle:") -> None:
        # ``redis.asyncio.Redis``; typed Any because redis is an optional extra.
        self._redis = redis
        self._prefix = prefix
        self._claim = redis.register_script(_CLAIM_SCRIPT)
        self._refund = redis.register_script(_REFUND_SCRIPT)

    async def add_failure(self, subject: str, *, window: int, now: float) -> float:
        start = window_start(now, window)
        key = self._windows(subject)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, str(start), 1)
            pipe.hget(key, str(start - window))
            pipe.hdel(key, str(start - 2 * window))  # out of every sliding window now
            pipe.expire(key, 2 * window)
            current, previous, _, _ = await pipe.execute()
        return sliding_count(int(current), int(previous or 0), window=window, now=now)

    async def failures(self, subject: str, *, window: int, now: float) -> float:
        start = window_start(now, window)
        current, previous = await self._redis.hmget(
            self._windows(subject), [str(start), str(start - window)]
        )
        return sliding_count(int(current or 0), int(previous or 0), window=window, now=now)

    async def refund_failure(self, subject: str, *, window: int, now: float) -> None:
        start = window_start(now, window)
        await self._refund(keys=[self._windows(subject)], args=[str(start)])

    async def block(self, subject: str, *, until: float, strikes: int, now: float) -> None:
        # Kept a day past its end: its strikes double the next block.
        ttl = max(1, math.ceil(until - now) + 86_400)
        await self._redis.set(f"{self._prefix}b:{subject}", f"{until}:{strikes}", ex=ttl)

    async def get_block(self, subject: str) -> Block | None:
        return _block_of(await self._redis.get(f"{self._prefix}b:{subject}"))

    async def claim(self, subject: str, *, until: float, strikes: int, now: float) -> bool:
        ttl = max(1, math.ceil(until - now) + 86_400)  # as block(): strikes outlive it
        claimed = await self._claim(
            keys=[f"{self._prefix}b:{subject}"], args=[repr(now), f"{until}:{strikes}", ttl]
        )
        return bool(claimed)

    async def get_blocks(self, *subjects: str) -> dict[str, Block]:
        values = await self._redis.mget([f"{self._prefix}b:{subject}" for subject in subjects])
        return _blocks_of(subjects, values)

    async def blocks_and_counted(
        self, subjects: tuple[str, ...], counted: str
    ) -> tuple[dict[str, Block], bool]:
        keys = [f"{self._prefix}b:{subject}" for subject in subjects]
        async with self._redis.pipeline(transaction=False) as pipe:
            if keys:
                pipe.mget(keys)
            pipe.exists(self._windows(counted))
            results = await pipe.execute()
        return _blocks_of(subjects, results[0] if keys else []), bool(results[-1])

    async def blocks_counted_and_failures(
        self, subjects: tuple[str, ...], counted: str, tallied: str, *, window: int, now: float
    ) -> tuple[dict[str, Block], bool, float]:
        start = window_start(now, window)
        keys = [f"{self._prefix}b:{subject}" for subject in subjects]
        async with self._redis.pipeline(transaction=False) as pipe:
            if keys:
                pipe.mget(keys)
            pipe.exists(self._windows(counted))
            pipe.hmget(self._windows(tallied), [str(start), str(start - window)])
            results = await pipe.execute()
        current, previous = results[-1]
        failures = sliding_count(int(current or 0), int(previous or 0), window=window, now=now)
        return _blocks_of(subjects, results[0] if keys else []), bool(results[-2]), failures

    async def forget_and_block(
        self, forget: tuple[str, ...], subject: str, *, until: float, strikes: int, now: float
    ) -> None:
        # One MULTI: nobody sees the counters forgotten and the block not yet set (a
        # second-factor attempt counted in between would be let in while locked).
        keys = [f"{self._prefix}b:{name}" for name in forget]
        keys += [self._windows(name) for name in forget]
        ttl = max(1, math.ceil(until - now) + 86_400)  # as block()
        async with self._redis.pipeline(transaction=True) as pipe:
            if keys:
                pipe.delete(*keys)
            pipe.set(f"{self._prefix}b:{subject}", f"{until}:{strikes}", ex=ttl)
            await pipe.execute()

    async def forget(self, *subjects: str) -> None:
        keys = [f"{self._prefix}b:{subject}" for subject in subjects]
        keys += [self._windows(subject) for subject in subjects]
        if keys:
            await self._redis.delete(*keys)

    async def active_blocks(self, prefix: str, now: float) -> dict[str, float]:
        found = {}
        pattern = f"{self._prefix}b:{_glob_escape(prefix)}*"
        async for key in self._redis.scan_iter(match=pattern):
            name = key.decode() if isinstance(key, bytes) else key
            block = await self.get_block(name[len(self._prefix) + 2 :])
            if block is not None and block.until > now:
                found[name[len(self._prefix) + 2 :]] = block.until
        return found

    async def reset_failures(self, subject: str) -> None:
        await self._redis.delete(self._windows(subject))

    def _windows(self, subject: str) -> str:
        # "h:" (not the former "w:<subject>:<start>" keys, which simply expire).
        return f"{self._prefix}h:{subject}"

    async def delete_expired(self, now: float) -> int:
        return 0  # Redis expires keys itself


# Runs atomically in Redis: set the block unless one is in force ("until:strikes").
_CLAIM_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local current_until = tonumber(string.match(current, '^([^:]+)'))
  if current_until and current_until > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


# Runs atomically in Redis: one failure of a window taken back, never below zero.
_REFUND_SCRIPT = """
local count = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if count > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
end
return 0
"""


def _blocks_of(subjects: Sequence[str], values: Sequence[Any]) -> dict[str, Block]:
    """The subjects that have a block, from their keys' values (in the same order)."""
    return {
        subject: block
        for subject, value in zip(subjects, values, strict=True)
        if (block := _block_of(value)) is not None
    }


def _block_of(value: bytes | str | None) -> Block | None:
    if value is None:
        return None
    until, _, strikes = (value.decode() if isinstance(value, bytes) else value).partition(":")
    return Block(until=float(until), strikes=int(strikes))


def _glob_escape(text: str) -> str:
    """Subjects hold user input (typed usernames): never let it act as a glob."""
    for special in ("\\", "*", "?", "[", "]"):
        text = text.replace(special, "\\" + special)
    return text
