"""The change feed: how every process learns that cached authentication state is stale.

A service that changes something authentication depends on (a logout, a password
change, a deactivation) records a :class:`Change` in the same transaction. After the
commit the change is applied to this process's caches at once; every other worker
and node picks it up by polling ``auth_changes`` by sequence number, a cheap indexed
query (four times a second by default), and at once when Redis is configured: the
commit rings a doorbell there that wakes every poller (``redis_link``). Handlers must
be idempotent: a change may be delivered more than once.

Sequence numbers can commit out of order on PostgreSQL (two concurrent transactions),
so the poller keeps a low-water mark below which it has seen everything and waits a
while for the gaps above it before giving up on them (a rolled-back transaction
leaves a permanent gap). A process's own changes count as seen once committed: they
were applied at the commit, and the poller does not deliver them again.

The feed only goes forward, unless the database is restored from a backup under running
processes: their low-water mark is then above every new change, which they would never
see (the backup review: a token logged out on a node started after a PostgreSQL restore
stayed valid on the others until it expired). Every few seconds the poller compares the
feed's last sequence number with its mark; when the feed went back it starts again from
there and tells its ``on_rewind`` hooks, which drop every cached state (what the restored
database holds is the truth) and reload the deny list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from authgate.clock import Clock
from authgate.services.ports import Database, StorageSession

log = logging.getLogger(__name__)


class ChangeKind(StrEnum):
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - subject: the token's jti
    USER_CHANGED = "user_changed"  # subject: the user id
    API_KEY_CHANGED = "api_key_changed"  # subject: the key's key_id (agk_<key_id>_...)
    ADDRESS_BLOCKED = (
        "client_blocked"  # the address block; subject: "<address>|<POSIX time the block ends>"
    )


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    subject: str


ChangeHandler = Callable[[Change], None]
RewindHook = Callable[[], Awaitable[None]]
# How often a poll checks that the feed did not go back (a restore under running nodes).
REWIND_CHECK_SECONDS = 5.0


@dataclass(slots=True)
class UnitOfWork:
    """One transaction of a use case, plus the changes it announces on commit; ``db``
    gives the repositories over its ``session`` (``work.db.users(work.session)``)."""

    session: StorageSession
    db: Database
    changes: list[Change] = field(default_factory=list)

    def publish(self, change: Change) -> None:
        self.changes.append(change)


class ChangeFeed:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        reader: Database | None = None,
        gap_timeout: float = 10.0,
        retention: timedelta = timedelta(days=1),
        batch_size: int = 1000,
    ) -> None:
        self._db = db
        # Polls read through a connection of their own: with every connection of the
        # requests' pool taken (a burst of logins, a slow query), a revocation made on
        # another node must still arrive within the poll interval, not after the pool's
        # 30 s checkout timeout.
        self._reader = reader or db
        self._clock = clock
        self._gap_timeout = gap_timeout
        self._retention = retention
        self._batch_size = batch_size
        self._handlers: list[ChangeHandler] = []
        self._rewind_hooks: list[RewindHook] = []
        self._next_rewind_check = 0.0
        # The last row this feed delivered: its number and when it was made. A restore
        # that took the feed back and new changes that numbered past the low-water mark
        # again leave another row under that number (the attack review).
        self._mark: tuple[int, datetime] | None = None
        self._after_commit: list[Callable[[], None]] = []
        self._low_water = 0
        self._seen_above: set[int] = set()
        self._gap_since: dict[int, float] = {}
        self._failing = False
        # One poll at a time: two overlapping polls would both deliver the same rows,
        # the slower one after the faster had returned (a change read "now" by an
        # explicit poll could still reach the handlers later and drop fresh caches).
        self._polling = asyncio.Lock()

    def subscribe(self, handler: ChangeHandler) -> None:
        self._handlers.append(handler)

    def on_rewind(self, hook: RewindHook) -> None:
        """Call ``hook`` (awaited) when the feed was found to have gone back: cached
        state may be anything; drop it."""
        self._rewind_hooks.append(hook)

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after every commit that published changes (must not block)."""
        self._after_commit.append(hook)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """A transaction whose published changes are stored with it and applied after commit."""
        async with self._db.transaction() as session:
            work = UnitOfWork(session, self._db)
            yield work
            changes = self._db.changes(session)
            now = self._clock()
            rows = [
                changes.append(kind=change.kind.value, subject=change.subject, now=now)
                for change in work.changes
            ]
        for change in work.changes:
            self._dispatch(change)
        # Applied here already: the poller need not deliver them again (a second delivery
        # would drop what a request cached in between, and count as a change to a load in
        # flight, which then is not cached).
        self._seen_above.update(row.seq for row in rows if row.seq > self._low_water)
        if work.changes:
            for hook in self._after_commit:
                hook()

    async def start_from_now(self) -> None:
        """Skip history: callers load current state right after this."""
        async with self._polling:
            self._low_water = await self._last_seq()
            self._seen_above.clear()
            self._gap_since.clear()
            self._mark = None

    async def poll_once(self) -> int:
        """Apply changes committed since the last poll; returns how many were new. A poll
        already running (the background loop's) finishes first: when this returns, every
        change committed before it was called has reached the handlers."""
        async with self._polling:
            return await self._poll()

    async def _poll(self) -> int:
        rows = await self._reader.changes_after(self._low_water, self._batch_size)
        # New rows after a restore may be numbered as the rows this feed delivered last
        # were: before moving past them, check that the last one is still there.
        if rows and await self._mark_replaced():
            await self._rewound(f"holds another change numbered {self._mark_seq()}")
            return 0
        fresh = [
            (row.seq, Change(ChangeKind(row.kind), row.subject))
            for row in rows
            if row.seq not in self._seen_above and row.kind in ChangeKind._value2member_map_
        ]
        seen_now = {row.seq for row in rows}
        if rows and (self._mark is None or rows[-1].seq > self._mark[0]):
            self._mark = (rows[-1].seq, rows[-1].created_at)
        for _, change in fresh:
            self._dispatch(change)
        self._seen_above |= seen_now
        now = time.monotonic()
        self._advance_low_water(now)
        if now >= self._next_rewind_check:
            self._next_rewind_check = now + REWIND_CHECK_SECONDS
            await self._check_rewind()
        return len(fresh)

    async def _check_rewind(self) -> None:
        """Start again from the feed's end if it went back: its end is below the
        low-water mark, or the last row delivered is now another row (made at another
        time). An empty feed (every row past its retention), or a delivered row deleted
        by it, is no rewind: there is nothing to miss."""
        last = await self._last_seq()
        if 0 < last < self._low_water:
            await self._rewound(f"went back from {self._low_water} to {last}", last)
        elif await self._mark_replaced():
            await self._rewound(f"holds another change numbered {self._mark_seq()}", last)

    def _mark_seq(self) -> int:
        return self._mark[0] if self._mark is not None else 0

    async def _mark_replaced(self) -> bool:
        """Whether the row this feed delivered last is now another one."""
        mark = self._mark
        if mark is None:
            return False
        made_at = await self._made_at(mark[0])
        return made_at is not None and made_at != mark[1]

    async def _rewound(self, what: str, last: int | None = None) -> None:
        """Start from the feed's end, dropping every cached state (the hooks)."""
        log.warning(
            "the change feed %s (the database restored from a backup?):"
            " dropping every cached credential state",
            what,
        )
        self._low_water = await self._last_seq() if last is None else last
        self._mark = None
        self._seen_above.clear()
        self._gap_since.clear()
        for hook in self._rewind_hooks:
            try:
                await hook()
            except Exception:  # one failing hook must not keep the others' caches
                log.exception("change feed rewind hook failed")

    async def _last_seq(self) -> int:
        """The feed's last sequence number, through the polls' own connection."""
        async with self._reader.session() as session:
            return await self._reader.changes(session).last_seq()

    async def _made_at(self, seq: int) -> datetime | None:
        async with self._reader.session() as session:
            return await self._reader.changes(session).created_at_of(seq)

    async def poll_logging_errors(self) -> None:
        """``poll_once`` for a background loop: failures are logged once, then retried."""
        try:
            await self.poll_once()
        except Exception as error:  # noqa: BLE001 - the next tick retries
            if not self._failing:
                log.warning("change feed polling failed: %s", type(error).__name__)
            self._failing = True
        else:
            if self._failing:
                log.info("change feed polling recovered")
            self._failing = False

    async def close(self) -> None:
        """Close the polls' own connection (the shared database is closed by its owner)."""
        if self._reader is not self._db:
            await self._reader.close()

    async def delete_old(self) -> int:
        """Drop feed rows older than the retention (every poller has long seen them)."""
        async with self._db.transaction() as session:
            return await self._db.changes(session).delete_before(self._clock() - self._retention)

    def _dispatch(self, change: Change) -> None:
        for handler in self._handlers:
            try:
                handler(change)
            except Exception:  # a broken handler must not stop the others
                log.exception("change handler failed for %s", change.kind.value)

    def _advance_low_water(self, now: float) -> None:
        if not self._seen_above:
            return
        highest = max(self._seen_above)
        expected = self._low_water + 1
        while expected <= highest:
            if expected in self._seen_above:
                self._seen_above.discard(expected)
            else:
                first_missed = self._gap_since.setdefault(expected, now)
                if now - first_missed < self._gap_timeout:
                    break  # maybe a transaction that has not committed yet
                del self._gap_since[expected]  # rolled back: never coming
            self._low_water = expected
            expected += 1
