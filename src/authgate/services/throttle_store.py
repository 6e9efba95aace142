"""Where brute-force counters and blocks live: the database by default, Redis when
configured, so every worker and node sees the same counts.

Counting uses a sliding window approximated from two fixed windows (the current one,
plus the previous one weighted by how much of it still overlaps), the method
Cloudflare and `limits` use: constant memory per subject, and within a few percent of
an exact sliding log.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from authgate.storage.db import Database
from authgate.storage.models import ThrottleBlock, ThrottleWindow

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Block:
    until: float  # POSIX seconds
    strikes: int  # how many times in a row the subject was blocked


class ThrottleStore(Protocol):
    async def add_failure(self, subject: str, *, window: int, now: float) -> float:
        """Count one failure; return the failures within the last ``window`` seconds."""
        ...

    async def failures(self, subject: str, *, window: int, now: float) -> float: ...

    async def block(self, subject: str, *, until: float, strikes: int, now: float) -> None: ...

    async def get_block(self, subject: str) -> Block | None: ...

    async def get_blocks(self, *subjects: str) -> dict[str, Block]:
        """The blocks of those ``subjects`` that have one, in one round trip."""
        ...

    async def claim(self, subject: str, *, until: float, strikes: int, now: float) -> bool:
        """Block ``subject`` until ``until`` if no block of it is in force at ``now``,
        atomically: of several callers racing for a free subject exactly one gets True.
        A turn-taking lock: whoever claims it may go ahead, the others wait."""
        ...

    async def forget(self, *subjects: str) -> None:
        """Drop counters and blocks of the subjects (after a success)."""
        ...

    async def forget_and_block(
        self, forget: tuple[str, ...], subject: str, *, until: float, strikes: int, now: float
    ) -> None:
        """``forget(*forget)`` then ``block(subject, ...)``, in one round trip."""
        ...

    async def reset_failures(self, subject: str) -> None:
        """Drop the subject's counters, keeping its block."""
        ...

    async def active_blocks(self, prefix: str, now: float) -> dict[str, float]:
        """Subjects starting with ``prefix`` blocked after ``now``, and until when."""
        ...

    async def delete_expired(self, now: float) -> int: ...


def sliding_count(current: int, previous: int, *, window: int, now: float) -> float:
    elapsed = (now % window) / window
    return current + previous * (1.0 - elapsed)


class DatabaseThrottleStore:
    """Counters in ``throttle_windows``, blocks in ``throttle_blocks``.

    A login makes a few of these calls, so the statements are built once with bound
    parameters (building and caching a statement per call cost ~0.4 ms of event-loop
    CPU each, measured on aiosqlite), and run on bare connections rather than ORM
    sessions.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
        count_failure = insert(ThrottleWindow).values(
            subject=bindparam("subject"),
            window_start=bindparam("start"),
            count=1,
            expires_at=bindparam("expires"),
        )
        self._count_failure = count_failure.on_conflict_do_update(
            index_elements=["subject", "window_start"],
            set_={"count": ThrottleWindow.count + 1},
        )
        upsert_block = insert(ThrottleBlock).values(
            subject=bindparam("subject"),
            blocked_until=bindparam("until"),
            strikes=bindparam("strikes"),
        )
        self._upsert_block = upsert_block.on_conflict_do_update(
            index_elements=["subject"],
            set_={
                "blocked_until": upsert_block.excluded.blocked_until,
                "strikes": upsert_block.excluded.strikes,
            },
        )
        # Claiming: insert, or take over a block that has ended; a block still in force
        # is left alone (the statement then changes no row).
        claim_block = insert(ThrottleBlock).values(
            subject=bindparam("subject"),
            blocked_until=bindparam("until"),
            strikes=bindparam("strikes"),
        )
        self._claim_block = claim_block.on_conflict_do_update(
            index_elements=["subject"],
            set_={
                "blocked_until": claim_block.excluded.blocked_until,
                "strikes": claim_block.excluded.strikes,
            },
            where=ThrottleBlock.blocked_until <= bindparam("now"),
        )
        self._read_windows = select(ThrottleWindow.window_start, ThrottleWindow.count).where(
            ThrottleWindow.subject == bindparam("subject"),
            ThrottleWindow.window_start.in_(bindparam("starts", expanding=True)),
        )
        self._read_blocks = select(
            ThrottleBlock.subject, ThrottleBlock.blocked_until, ThrottleBlock.strikes
        ).where(ThrottleBlock.subject.in_(bindparam("subjects", expanding=True)))
        self._forget_windows = delete(ThrottleWindow).where(
            ThrottleWindow.subject.in_(bindparam("subjects", expanding=True))
        )
        self._forget_blocks = delete(ThrottleBlock).where(
            ThrottleBlock.subject.in_(bindparam("subjects", expanding=True))
        )
        # PostgreSQL: forget and block in one statement (data-modifying CTEs), one round
        # trip in autocommit instead of BEGIN, three statements and COMMIT. SQLite's
        # WITH takes no DELETE.
        self._forget_and_block = (
            self._upsert_block.add_cte(self._forget_windows.cte("forgotten_windows")).add_cte(
                self._forget_blocks.cte("forgotten_blocks")
            )
            if db.dialect == "postgresql"
            else None
        )

    async def add_failure(self, subject: str, *, window: int, now: float) -> float:
        start = int(now // window * window)
        expires = datetime.fromtimestamp(start + 2 * window, UTC)
        async with self._db.begin() as connection:
            await connection.execute(
                self._count_failure, {"subject": subject, "start": start, "expires": expires}
            )
        return await self.failures(subject, window=window, now=now)

    async def failures(self, subject: str, *, window: int, now: float) -> float:
        start = int(now // window * window)
        async with self._db.connection() as connection:
            rows = await connection.execute(
                self._read_windows, {"subject": subject, "starts": [start, start - window]}
            )
            counts: dict[int, int] = {row[0]: row[1] for row in rows}
        return sliding_count(
            counts.get(start, 0), counts.get(start - window, 0), window=window, now=now
        )

    async def block(self, subject: str, *, until: float, strikes: int, now: float) -> None:
        async with self._db.begin() as connection:
            await self._block(connection, subject, until=until, strikes=strikes)

    async def _block(self, connection: Any, subject: str, *, until: float, strikes: int) -> None:
        moment = datetime.fromtimestamp(until, UTC)
        await connection.execute(
            self._upsert_block, {"subject": subject, "until": moment, "strikes": strikes}
        )

    async def get_block(self, subject: str) -> Block | None:
        return (await self.get_blocks(subject)).get(subject)

    async def claim(self, subject: str, *, until: float, strikes: int, now: float) -> bool:
        parameters = {
            "subject": subject,
            "until": datetime.fromtimestamp(until, UTC),
            "strikes": strikes,
            "now": datetime.fromtimestamp(now, UTC),
        }
        async with self._db.begin() as connection:
            result = await connection.execute(self._claim_block, parameters)
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def get_blocks(self, *subjects: str) -> dict[str, Block]:
        async with self._db.connection() as connection:
            rows = await connection.execute(self._read_blocks, {"subjects": list(subjects)})
            return {
                row.subject: Block(until=row.blocked_until.timestamp(), strikes=row.strikes)
                for row in rows
            }

    async def forget(self, *subjects: str) -> None:
        async with self._db.begin() as connection:
            await self._forget(connection, subjects)

    async def forget_and_block(
        self, forget: tuple[str, ...], subject: str, *, until: float, strikes: int, now: float
    ) -> None:
        if self._forget_and_block is not None and subject not in forget:
            # One statement sees one snapshot: a row it deletes cannot also be upserted,
            # so forgetting the blocked subject itself takes the transaction below.
            parameters = {
                "subjects": list(forget),
                "subject": subject,
                "until": datetime.fromtimestamp(until, UTC),
                "strikes": strikes,
            }
            async with self._db.connection() as connection:
                await connection.execute(self._forget_and_block, parameters)
            return
        async with self._db.begin() as connection:
            await self._forget(connection, forget)
            await self._block(connection, subject, until=until, strikes=strikes)

    async def _forget(self, connection: Any, subjects: tuple[str, ...]) -> None:
        parameters = {"subjects": list(subjects)}
        await connection.execute(self._forget_windows, parameters)
        await connection.execute(self._forget_blocks, parameters)

    async def active_blocks(self, prefix: str, now: float) -> dict[str, float]:
        moment = datetime.fromtimestamp(now, UTC)
        async with self._db.session() as session:
            rows = await session.execute(
                select(ThrottleBlock.subject, ThrottleBlock.blocked_until).where(
                    ThrottleBlock.subject.startswith(prefix, autoescape=True),
                    ThrottleBlock.blocked_until > moment,
                )
            )
            return {row[0]: row[1].timestamp() for row in rows}

    async def reset_failures(self, subject: str) -> None:
        async with self._db.transaction() as session:
            await session.execute(delete(ThrottleWindow).where(ThrottleWindow.subject == subject))

    async def delete_expired(self, now: float) -> int:
        moment = datetime.fromtimestamp(now, UTC)
        async with self._db.transaction() as session:
            windows = await session.execute(
                delete(ThrottleWindow).where(ThrottleWindow.expires_at < moment)
            )
            # A block is kept a day past its end: its strikes double the next one.
            blocks = await session.execute(
                delete(ThrottleBlock).where(
                    ThrottleBlock.blocked_until < datetime.fromtimestamp(now - 86_400, UTC)
                )
            )
        return int(getattr(windows, "rowcount", 0) or 0) + int(getattr(blocks, "rowcount", 0) or 0)


class RedisThrottleStore:
    """The same in Redis: a hash per subject holding a count per window (``HINCRBY`` +
    ``EXPIRE``), a key per block. One key per subject, so forgetting a subject is a
    ``DEL``, never a scan of the keyspace."""

    def __init__(self, redis: Any, *, prefix: str = "authgate:throttle:") -> None:
        # ``redis.asyncio.Redis``; typed Any because redis is an optional extra.
        self._redis = redis
        self._prefix = prefix
        self._claim = redis.register_script(_CLAIM_SCRIPT)

    async def add_failure(self, subject: str, *, window: int, now: float) -> float:
        start = int(now // window * window)
        key = self._windows(subject)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, str(start), 1)
            pipe.hget(key, str(start - window))
            pipe.hdel(key, str(start - 2 * window))  # out of every sliding window now
            pipe.expire(key, 2 * window)
            current, previous, _, _ = await pipe.execute()
        return sliding_count(int(current), int(previous or 0), window=window, now=now)

    async def failures(self, subject: str, *, window: int, now: float) -> float:
        start = int(now // window * window)
        current, previous = await self._redis.hmget(
            self._windows(subject), [str(start), str(start - window)]
        )
        return sliding_count(int(current or 0), int(previous or 0), window=window, now=now)

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
        blocks = {
            subject: _block_of(value) for subject, value in zip(subjects, values, strict=True)
        }
        return {subject: block for subject, block in blocks.items() if block is not None}

    async def forget_and_block(
        self, forget: tuple[str, ...], subject: str, *, until: float, strikes: int, now: float
    ) -> None:
        await self.forget(*forget)
        await self.block(subject, until=until, strikes=strikes, now=now)

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


class FallbackThrottleStore:
    """Redis while it answers, the database while it does not (see ``redis_link``).

    Counts made during an outage live in the database and are not merged back: an
    attacker gains at most one window's worth of attempts, and protection never stops.
    """

    def __init__(self, primary: RedisThrottleStore, fallback: DatabaseThrottleStore, link: Any):
        self._primary = primary
        self._fallback = fallback
        self._link = link

    async def _use(self, call: Callable[[ThrottleStore], Awaitable[T]]) -> T:
        if self._link.available:
            try:
                result = await call(self._primary)
            except Exception as error:  # noqa: BLE001 - any Redis failure: use the database
                self._link.failed(error)
            else:
                self._link.succeeded()
                return result
        return await call(self._fallback)

    async def add_failure(self, subject: str, *, window: int, now: float) -> float:
        return await self._use(lambda store: store.add_failure(subject, window=window, now=now))

    async def failures(self, subject: str, *, window: int, now: float) -> float:
        return await self._use(lambda store: store.failures(subject, window=window, now=now))

    async def block(self, subject: str, *, until: float, strikes: int, now: float) -> None:
        await self._use(lambda store: store.block(subject, until=until, strikes=strikes, now=now))

    async def get_block(self, subject: str) -> Block | None:
        # A block set during an outage stays in force after it.
        block = await self._use(lambda store: store.get_block(subject))
        if block is None and not self._link.is_down:
            block = await self._fallback.get_block(subject)
        return block

    async def claim(self, subject: str, *, until: float, strikes: int, now: float) -> bool:
        # A block claimed in the database during an outage holds after it (get_blocks
        # reads it there), so a claim in Redis could briefly double a turn: one attempt.
        return await self._use(
            lambda store: store.claim(subject, until=until, strikes=strikes, now=now)
        )

    async def get_blocks(self, *subjects: str) -> dict[str, Block]:
        blocks = await self._use(lambda store: store.get_blocks(*subjects))
        missing = tuple(subject for subject in subjects if subject not in blocks)
        if missing and not self._link.is_down:
            blocks.update(await self._fallback.get_blocks(*missing))  # set during an outage
        return blocks

    async def forget(self, *subjects: str) -> None:
        await self._use(lambda store: store.forget(*subjects))
        await self._fallback.forget(*subjects)

    async def forget_and_block(
        self, forget: tuple[str, ...], subject: str, *, until: float, strikes: int, now: float
    ) -> None:
        await self._use(
            lambda store: store.forget_and_block(
                forget, subject, until=until, strikes=strikes, now=now
            )
        )
        await self._fallback.forget(*forget)

    async def reset_failures(self, subject: str) -> None:
        await self._use(lambda store: store.reset_failures(subject))
        await self._fallback.reset_failures(subject)

    async def active_blocks(self, prefix: str, now: float) -> dict[str, float]:
        blocks = await self._fallback.active_blocks(prefix, now)
        blocks.update(await self._use(lambda store: store.active_blocks(prefix, now)))
        return blocks

    async def delete_expired(self, now: float) -> int:
        return await self._fallback.delete_expired(now)
