"""Brute-force counters and blocks in the database (``throttle_windows``,
``throttle_blocks``); ``redis_throttle_store`` keeps the same in Redis. Both satisfy
``authgate.services.throttle_store.ThrottleStore``, the protocol the services use.

Counting uses a sliding window approximated from two fixed windows (the current one,
plus the previous one weighted by how much of it still overlaps), the method
Cloudflare and `limits` use: constant memory per subject, and within a few percent of
an exact sliding log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, literal_column, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from authgate.storage.db import Database
from authgate.storage.models import ThrottleBlock, ThrottleWindow


@dataclass(frozen=True, slots=True)
class Block:
    until: float  # POSIX seconds
    strikes: int  # how many times in a row the subject was blocked


def window_start(now: float, window: int) -> int:
    """The start (POSIX seconds) of the fixed window of ``window`` seconds holding ``now``."""
    return int(now // window * window)


def sliding_count(current: int, previous: int, *, window: int, now: float) -> float:
    elapsed = (now % window) / window
    return current + previous * (1.0 - elapsed)


def _subjects_in(column: Any, count: int) -> Any:
    """``column IN (:s0, ..., :s<count - 1>)``."""
    return column.in_([bindparam(f"s{index}") for index in range(count)])


def _subject_parameters(subjects: tuple[str, ...]) -> dict[str, str]:
    return {f"s{index}": subject for index, subject in enumerate(subjects)}


# Statements over a list of subjects are built once per length of the list (a login's
# lists are always as long): fixed bound parameters compile once, where an expanding one
# is rewritten at every execution (~30 µs of CPU each, three per login). A few lengths
# are kept; another is built again when used.
LIST_LENGTHS_KEPT = 16


@lru_cache(maxsize=LIST_LENGTHS_KEPT)
def _reading(count: int) -> Any:
    """The blocks of ``count`` subjects."""
    return select(ThrottleBlock.subject, ThrottleBlock.blocked_until, ThrottleBlock.strikes).where(
        _subjects_in(ThrottleBlock.subject, count)
    )


@lru_cache(maxsize=LIST_LENGTHS_KEPT)
def _reading_with_counted(count: int) -> Any:
    """The blocks of ``count`` subjects, and a row per counter window of the subject
    ``counted`` (``counted`` 1, no block), in one statement."""
    blocks: Any = select(
        ThrottleBlock.subject,
        ThrottleBlock.blocked_until,
        ThrottleBlock.strikes,
        literal_column("0").label("counted"),
    ).where(_subjects_in(ThrottleBlock.subject, count))
    windows: Any = select(
        ThrottleWindow.subject, null(), null(), literal_column("1").label("counted")
    ).where(ThrottleWindow.subject == bindparam("counted"))
    return blocks.union_all(windows)


@lru_cache(maxsize=LIST_LENGTHS_KEPT)
def _reading_for_login(count: int) -> Any:
    """The blocks of ``count`` subjects, and the counter windows of the subjects
    ``counted`` and ``tallied`` (rows without ``blocked_until``), in one statement."""
    blocks: Any = select(
        ThrottleBlock.subject,
        ThrottleBlock.blocked_until,
        ThrottleBlock.strikes,
        null().label("window_start"),
        null().label("count"),
    ).where(_subjects_in(ThrottleBlock.subject, count))
    windows: Any = select(
        ThrottleWindow.subject, null(), null(), ThrottleWindow.window_start, ThrottleWindow.count
    ).where(ThrottleWindow.subject.in_([bindparam("counted"), bindparam("tallied")]))
    return blocks.union_all(windows)


def _login_reading_of(
    rows: Iterable[Any], counted: str, window: int, now: float
) -> tuple[dict[str, Block], bool, float]:
    """Of a login's one read (``_reading_for_login``): the blocks of its subjects,
    whether ``counted`` has failures counted, and ``tallied``'s failures in the last
    window."""
    start = window_start(now, window)
    blocks: dict[str, Block] = {}
    has_counted = False
    current = previous = 0
    for row in rows:
        if row.blocked_until is not None:
            blocks[row.subject] = Block(until=row.blocked_until.timestamp(), strikes=row.strikes)
        elif row.subject == counted:
            has_counted = True
        elif row.window_start == start:
            current = row[4]  # the window's count (``row.count`` is the tuple's method)
        elif row.window_start == start - window:
            previous = row[4]
    return blocks, has_counted, sliding_count(current, previous, window=window, now=now)


def _blocks_and_counted(
    connection: Connection, subjects: tuple[str, ...], counted: str
) -> tuple[dict[str, Block], bool]:
    """The blocks of ``subjects`` and whether ``counted`` has failures counted (a login's
    one read, run by ``Database.read``)."""
    rows = connection.execute(
        _reading_with_counted(len(subjects)), {**_subject_parameters(subjects), "counted": counted}
    )
    blocks: dict[str, Block] = {}
    has_counted = False
    for row in rows:
        if row.counted:
            has_counted = True
        else:
            blocks[row.subject] = Block(until=row.blocked_until.timestamp(), strikes=row.strikes)
    return blocks, has_counted


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

        def write_block(where: Any = None) -> Any:
            """Insert a block, or overwrite the subject's (only where ``where`` holds)."""
            block = insert(ThrottleBlock).values(
                subject=bindparam("subject"),
                blocked_until=bindparam("until"),
                strikes=bindparam("strikes"),
            )
            return block.on_conflict_do_update(
                index_elements=["subject"],
                set_={
                    "blocked_until": block.excluded.blocked_until,
                    "strikes": block.excluded.strikes,
                },
                where=where,
            )

        self._upsert_block = write_block()
        # Claiming: insert, or take over a block that has ended; a block still in force
        # is left alone (the statement then changes no row).
        self._claim_block = write_block(ThrottleBlock.blocked_until <= bindparam("now"))
        self._refund = (
            update(ThrottleWindow)
            .where(
                ThrottleWindow.subject == bindparam("w_subject"),
                ThrottleWindow.window_start == bindparam("w_start"),
                ThrottleWindow.count > 0,
            )
            .values(count=ThrottleWindow.count - 1)
        )
        self._read_windows = select(ThrottleWindow.window_start, ThrottleWindow.count).where(
            ThrottleWindow.subject == bindparam("subject"),
            ThrottleWindow.window_start.in_(bindparam("starts", expanding=True)),
        )
        self._postgresql = db.dialect == "postgresql"
        # The forgetting statements, per length of list (``LIST_LENGTHS_KEPT``).
        self._forgetting = lru_cache(maxsize=LIST_LENGTHS_KEPT)(self._forget_statements)

    def _forget_statements(self, count: int) -> tuple[Any, Any, Any]:
        """Deleting the windows, deleting the blocks and, on PostgreSQL, both with the
        block upsert in one statement (data-modifying CTEs: one round trip in autocommit
        instead of BEGIN, three statements and COMMIT; SQLite's WITH takes no DELETE)."""
        windows = delete(ThrottleWindow).where(_subjects_in(ThrottleWindow.subject, count))
        blocks = delete(ThrottleBlock).where(_subjects_in(ThrottleBlock.subject, count))
        combined = (
            self._upsert_block.add_cte(windows.cte("forgotten_windows")).add_cte(
                blocks.cte("forgotten_blocks")
            )
            if self._postgresql
            else None
        )
        return windows, blocks, combined

    async def add_failure(self, subject: str, *, window: int, now: float) -> float:
        """Count one failure and read the count in the same transaction: the row stays
        locked (PostgreSQL) or the database's writer is this one (SQLite) until the
        commit, so the count returned is the one this increment made, never one that
        failures counted meanwhile inflated (callers number attempts by it)."""
        start = window_start(now, window)
        expires = datetime.fromtimestamp(start + 2 * window, UTC)
        async with self._db.begin() as connection:
            await connection.execute(
                self._count_failure, {"subject": subject, "start": start, "expires": expires}
            )
            return await self._count(connection, subject, window=window, now=now)

    async def failures(self, subject: str, *, window: int, now: float) -> float:
        async with self._db.connection() as connection:
            return await self._count(connection, subject, window=window, now=now)

    async def _count(self, connection: Any, subject: str, *, window: int, now: float) -> float:
        """The subject's failures within the last ``window`` seconds, from its current
        and previous windows' rows."""
        start = window_start(now, window)
        rows = await connection.execute(
            self._read_windows, {"subject": subject, "starts": [start, start - window]}
        )
        counts: dict[int, int] = {row[0]: row[1] for row in rows}
        return sliding_count(
            counts.get(start, 0), counts.get(start - window, 0), window=window, now=now
        )

    async def refund_failure(self, subject: str, *, window: int, now: float) -> None:
        async with self._db.begin() as connection:
            await connection.execute(
                self._refund, {"w_subject": subject, "w_start": window_start(now, window)}
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
        if not subjects:
            return {}
        async with self._db.connection() as connection:
            rows = await connection.execute(_reading(len(subjects)), _subject_parameters(subjects))
            return {
                row.subject: Block(until=row.blocked_until.timestamp(), strikes=row.strikes)
                for row in rows
            }

    async def blocks_and_counted(
        self, subjects: tuple[str, ...], counted: str
    ) -> tuple[dict[str, Block], bool]:
        return await self._db.read(_blocks_and_counted, subjects, counted)

    async def blocks_counted_and_failures(
        self, subjects: tuple[str, ...], counted: str, tallied: str, *, window: int, now: float
    ) -> tuple[dict[str, Block], bool, float]:
        rows = await self._db.point_rows(
            _reading_for_login(len(subjects)),
            {**_subject_parameters(subjects), "counted": counted, "tallied": tallied},
        )
        return _login_reading_of(rows, counted, window, now)

    async def forget(self, *subjects: str) -> None:
        async with self._db.begin() as connection:
            await self._forget(connection, subjects)

    async def forget_and_block(
        self, forget: tuple[str, ...], subject: str, *, until: float, strikes: int, now: float
    ) -> None:
        combined = self._forgetting(len(forget))[2] if forget else None
        if combined is not None and subject not in forget:
            # One statement sees one snapshot: a row it deletes cannot also be upserted,
            # so forgetting the blocked subject itself takes the transaction below.
            parameters = {
                **_subject_parameters(forget),
                "subject": subject,
                "until": datetime.fromtimestamp(until, UTC),
                "strikes": strikes,
            }
            async with self._db.connection() as connection:
                await connection.execute(combined, parameters)
            return
        async with self._db.begin() as connection:
            await self._forget(connection, forget)
            await self._block(connection, subject, until=until, strikes=strikes)

    async def _forget(self, connection: Any, subjects: tuple[str, ...]) -> None:
        if not subjects:
            return
        windows, blocks, _ = self._forgetting(len(subjects))
        parameters = _subject_parameters(subjects)
        await connection.execute(windows, parameters)
        await connection.execute(blocks, parameters)

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
