"""Where brute-force counters and blocks live, as the services see it: the
:class:`ThrottleStore` protocol. The stores themselves are storage's: the database by
default (``authgate.storage.throttle_store``), Redis when configured
(``authgate.storage.redis_throttle_store``), so every worker and node sees the same
counts; :class:`FallbackThrottleStore` uses the database while Redis does not answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from authgate.services.redis_link import RedisLink

T = TypeVar("T")


class Block(Protocol):
    """A subject's block (storage's ``Block`` records satisfy this)."""

    @property
    def until(self) -> float:  # POSIX seconds
        ...

    @property
    def strikes(self) -> int:  # how many times in a row the subject was blocked
        ...


class ThrottleStore(Protocol):
    async def add_failure(self, subject: str, *, window: int, now: float) -> float:
        """Count one failure; return the failures within the last ``window`` seconds."""
        ...

    async def failures(self, subject: str, *, window: int, now: float) -> float: ...

    async def refund_failure(self, subject: str, *, window: int, now: float) -> None:
        """Take back one failure counted at ``now`` (never below zero)."""
        ...

    async def block(self, subject: str, *, until: float, strikes: int, now: float) -> None: ...

    async def get_block(self, subject: str) -> Block | None: ...

    async def get_blocks(self, *subjects: str) -> Mapping[str, Block]:
        """The blocks of those ``subjects`` that have one, in one round trip."""
        ...

    async def blocks_and_counted(
        self, subjects: tuple[str, ...], counted: str
    ) -> tuple[Mapping[str, Block], bool]:
        """``get_blocks(*subjects)``, and whether the subject ``counted`` has failures
        counted (in any window, however old), in one round trip."""
        ...

    async def blocks_counted_and_failures(
        self, subjects: tuple[str, ...], counted: str, tallied: str, *, window: int, now: float
    ) -> tuple[Mapping[str, Block], bool, float]:
        """``blocks_and_counted(subjects, counted)`` and ``failures(tallied, window=...,
        now=...)``, in one round trip (a login's one read)."""
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


class FallbackThrottleStore:
    """Redis while it answers, the database while it does not (see ``redis_link``).

    Counts made during an outage live in the database and are not merged back: an
    attacker gains at most one window's worth of attempts, and protection never stops.
    Blocks are written to the database as well as to Redis (they are rare: a threshold
    crossed, a turn, a login from a new place), so a block set before an outage, or lost
    with a Redis restarted without persistence, still holds.
    """

    def __init__(self, primary: ThrottleStore, fallback: ThrottleStore, link: RedisLink):
        self._primary = primary
        self._fallback = fallback
        self._link = link

    def _use(self, call: Callable[[ThrottleStore], Awaitable[T]]) -> Awaitable[T]:
        return self._link.through(self._primary, self._fallback, call)

    async def add_failure(self, subject: str, *, window: int, now: float) -> float:
        return await self._use(lambda store: store.add_failure(subject, window=window, now=now))

    async def failures(self, subject: str, *, window: int, now: float) -> float:
        return await self._use(lambda store: store.failures(subject, window=window, now=now))

    async def refund_failure(self, subject: str, *, window: int, now: float) -> None:
        await self._use(lambda store: store.refund_failure(subject, window=window, now=now))

    async def block(self, subject: str, *, until: float, strikes: int, now: float) -> None:
        await self._fallback.block(subject, until=until, strikes=strikes, now=now)
        if self._link.available:
            await self._use(
                lambda store: store.block(subject, until=until, strikes=strikes, now=now)
            )

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

    async def get_blocks(self, *subjects: str) -> Mapping[str, Block]:
        blocks = dict(await self._use(lambda store: store.get_blocks(*subjects)))
        missing = tuple(subject for subject in subjects if subject not in blocks)
        if missing and not self._link.is_down:
            blocks.update(await self._fallback.get_blocks(*missing))  # set during an outage
        return blocks

    async def blocks_and_counted(
        self, subjects: tuple[str, ...], counted: str
    ) -> tuple[Mapping[str, Block], bool]:
        found, has_counted = await self._use(
            lambda store: store.blocks_and_counted(subjects, counted)
        )
        blocks = dict(found)
        if not self._link.is_down:
            # Blocks set and failures counted during an outage count after it.
            missing = tuple(subject for subject in subjects if subject not in blocks)
            fallback_blocks, fallback_counted = await self._fallback.blocks_and_counted(
                missing, counted
            )
            blocks.update(fallback_blocks)
            has_counted = has_counted or fallback_counted
        return blocks, has_counted

    async def blocks_counted_and_failures(
        self, subjects: tuple[str, ...], counted: str, tallied: str, *, window: int, now: float
    ) -> tuple[Mapping[str, Block], bool, float]:
        found, has_counted, failures = await self._use(
            lambda store: store.blocks_counted_and_failures(
                subjects, counted, tallied, window=window, now=now
            )
        )
        blocks = dict(found)
        if not self._link.is_down:
            # As blocks_and_counted; failures counted during an outage are not merged
            # with Redis's, but the larger count is taken (never laxer than either).
            missing = tuple(subject for subject in subjects if subject not in blocks)
            more, more_counted, more_failures = await self._fallback.blocks_counted_and_failures(
                missing, counted, tallied, window=window, now=now
            )
            blocks.update(more)
            has_counted = has_counted or more_counted
            failures = max(failures, more_failures)
        return blocks, has_counted, failures

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
