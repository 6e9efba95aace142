"""Brute-force and credential-stuffing protection for every password check (logins,
and the current password of a password change).

Three counters, all over sliding windows, for every failed check (unknown usernames
count exactly like real ones, keyed by the name as typed, so throttling reveals
nothing about which accounts exist). An "address" is an IPv4 address, or an IPv6
address's /64 (``security.networks.throttle_network``): one machine may hold a whole
/64, so its addresses count as one.

* per address: ``ip_max_failures`` in ``ip_window`` blocks the address for
  ``ip_window`` from the failure that crossed the threshold (423, UTMStack's rule and
  message) — stops password spraying from one machine;
* per (account, address) pair: ``pair_max_failures`` blocks that pair for a delay that
  doubles with each consecutive block, from ``pair_base_delay`` up to ``pair_max_delay``
  (429 with Retry-After; Keycloak's model) — stops guessing one account from one place
  without touching anyone else;
* per account, from everywhere: past ``account_max_failures`` in ``account_window`` the
  account is under attack (until a window after its last such failure) and *slowed*,
  not locked: all the addresses that have not logged into it successfully (remembered
  ``known_ip_days``) share one turn, so the whole account gets one evaluation from them
  per ``account_slowdown`` seconds, doubling with each turn taken up to
  ``account_slowdown_max`` (429), however many addresses the attacker has; addresses the
  owner used pass untouched, so a distributed attack cannot lock the owner out.

Checks from one address are evaluated one at a time in each process (``evaluation``):
the next one reads the counters only after the one before it was counted, so a burst
sent at once is counted as if sent one by one (otherwise every request that arrived
while the first passwords were being hashed passed the check: 59 of 59 in a review).
What waits is bounded (``max_waiting``, the password-hashing queue's size: more could
not be hashed in time anyway; beyond, 429 at once). Across nodes a burst may still get
one extra evaluation per node before the counts meet.

A success clears the pair's counter and block and remembers the address as known;
a check from a known address may also use places of the password-hashing queue that
nothing else can take (``LoginAttempt.from_known_address``, ``password_hashing``).
Costs: ``check`` is one read (every block that may apply, and whether the pair has
failures counted, at once), plus one write when an unknown address takes the account's
turn during an attack; ``succeeded`` one write, or none when there is nothing to clear
and the address was made known less than ``KNOWN_REFRESH_SECONDS`` ago (the usual
login: same place, no failures).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from pydantic import BaseModel, ConfigDict, Field

from authgate.clock import Clock
from authgate.exceptions import ClientBlocked, Throttled
from authgate.reasons import Reason
from authgate.security.networks import throttle_network
from authgate.services.audit.events import Actor, EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.throttle_store import Block, ThrottleStore


class LoginLimits(BaseModel):
    """The thresholds above; ``Settings.login``, set by the ``AUTHGATE_LOGIN_*`` names
    (``authgate.settings_names``) or a ``[login]`` table. Windows and delays in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ip_max_failures: int = Field(default=10, ge=1, le=100_000)
    ip_window: int = Field(default=600, ge=1, le=86_400)
    pair_max_failures: int = Field(default=5, ge=1, le=1000)
    pair_window: int = Field(default=900, ge=1, le=86_400)
    pair_base_delay: int = Field(default=30, ge=1, le=86_400)
    pair_max_delay: int = Field(default=900, ge=1, le=86_400)
    account_max_failures: int = Field(default=20, ge=1, le=100_000)
    account_window: int = Field(default=900, ge=1, le=86_400)
    account_slowdown: int = Field(
        default=10,
        ge=1,
        le=3600,
        description="Under attack, the account's first turn for unknown addresses (all of "
        "them share one turn per period; doubled per turn taken).",
    )
    account_slowdown_max: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="The longest wait between two turns of unknown addresses under attack.",
    )
    known_ip_days: int = Field(default=30, ge=1, le=365)


# A success refreshes the address's "known" mark (``known_ip_days`` from now) only when
# the mark would end more than this much earlier than a fresh one: repeated logins from
# one place write at most once an hour, and the mark ends at most an hour early (the
# address is treated as unknown sooner: stricter, never laxer).
KNOWN_REFRESH_SECONDS = 3600

# Checks from one address that may wait for their turn in this process by default (the
# password-hashing queue's default size); more are refused at once.
MAX_WAITING_PER_ADDRESS = 64


class _Turns:
    """One address's checks in this process: a lock, and how many hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _InFlight:
    """One account's checks in this process: how many from addresses it does not know
    are being evaluated (let through, not yet counted) and how many have ended, how
    many read the counters or wait for room, and an event set while none is being
    evaluated."""

    __slots__ = ("ended", "evaluating", "idle", "reading", "waiting")

    def __init__(self) -> None:
        self.evaluating = 0
        self.ended = 0
        self.reading = 0
        self.waiting = 0
        self.idle = asyncio.Event()
        self.idle.set()


class _Hold:
    """An attempt's place among its account's evaluations, given back once."""

    __slots__ = ("account", "held")

    def __init__(self, account: str) -> None:
        self.account = account
        self.held = True


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One password check let through by :meth:`LoginProtection.check`: what it read,
    handed back to ``failed``/``succeeded`` so that they need no read of their own."""

    account: str
    network: str  # the address as counted (IPv4, or IPv6 /64)
    blocks: Mapping[str, Block]
    pair_counted: bool = True  # whether the pair had failures counted when read
    # The failures counted on the account (from everywhere) when read.
    account_failures: float = 0.0
    # Its place among the account's evaluations in this process (unknown addresses).
    hold: _Hold | None = field(default=None, compare=False)
    # The address logged into the account within ``known_ip_days``: its password check
    # may use the hashing queue's places kept for such checks (``password_hashing``).
    from_known_address: bool = False

    @property
    def ip(self) -> str:
        return f"ip:{self.network}"

    @property
    def pair(self) -> str:
        return f"pair:{self.account}|{self.network}"

    @property
    def known(self) -> str:
        return f"known:{self.account}|{self.network}"

    @property
    def attack(self) -> str:
        """The account is under attack while this block lasts."""
        return f"attack:{self.account}"

    @property
    def tally(self) -> str:
        """The account's failures from everywhere."""
        return f"acct:{self.account}"

    @property
    def turn(self) -> str:
        """The account's one turn shared by all addresses it does not know."""
        return f"slow:{self.account}"

    def in_force(self, subject: str, now: float) -> Block | None:
        block = self.blocks.get(subject)
        return block if block is not None and block.until > now else None


class LoginProtection:
    def __init__(
        self,
        *,
        store: ThrottleStore,
        limits: LoginLimits,
        clock: Clock,
        audit: AuditLog,
        max_waiting: int = MAX_WAITING_PER_ADDRESS,
        max_wait_seconds: float = 2.0,
    ) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._audit = audit
        self._max_waiting = max_waiting
        # How long a check may wait for room among its account's evaluations (the
        # password-hashing queue's deadline: a hash that waited longer is refused too).
        self._max_wait_seconds = max_wait_seconds
        # Only addresses with a check in progress: an entry goes with its last user.
        self._turns: dict[str, _Turns] = {}
        # Only accounts with a check in flight or waiting: an entry goes with its last.
        self._in_flight: dict[str, _InFlight] = {}

    @asynccontextmanager
    async def evaluation(self, client_ip: str | None) -> AsyncIterator[None]:
        """Hold the address's turn for one check (``check``, the password, then
        ``failed``/``succeeded``); ``Throttled`` at once when too many wait for it."""
        network = throttle_network(client_ip or "unknown")
        turns = self._turns.get(network)
        if turns is None:
            turns = self._turns[network] = _Turns()
        elif turns.users > self._max_waiting:
            raise Throttled(
                "Too many logins from this address at once; try again in a moment",
                retry_after=1,
                reason=Reason.CONCURRENT_LOGINS,
            )
        turns.users += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.users -= 1
            if not turns.users:
                del self._turns[network]

    async def check(self, account: str, client_ip: str | None) -> LoginAttempt:
        """The attempt, if it may be evaluated; else ``ClientBlocked``/``Throttled``
        (and the password must not be looked at). The caller ends it with ``failed``
        or ``succeeded``, or ``release`` when neither applies (an error)."""
        while True:
            attempt = await self._read(account, client_ip)
            if attempt is not None:
                return attempt

    async def _read(self, account: str, client_ip: str | None) -> LoginAttempt | None:
        """One look at the counters: the attempt, a refusal, or None after waiting for
        the account's evaluations in flight (then look again)."""
        flights = self._in_flight.get(account)
        if flights is None:
            flights = self._in_flight[account] = _InFlight()
        flights.reading += 1
        ended_before = flights.ended
        try:
            return await self._look(account, client_ip, flights, ended_before)
        finally:
            flights.reading -= 1
            self._forget_if_unused(account, flights)

    async def _look(
        self, account: str, client_ip: str | None, flights: _InFlight, ended_before: int
    ) -> LoginAttempt | None:
        now = self._clock().timestamp()
        attempt = LoginAttempt(account, throttle_network(client_ip or "unknown"), {})
        subjects = (attempt.ip, attempt.pair, attempt.known, attempt.attack, attempt.turn)
        blocks, pair_counted, failures = await self._store.blocks_counted_and_failures(
            subjects,
            attempt.pair,
            attempt.tally,
            window=self._limits.account_window,
            now=now,
        )
        attempt = LoginAttempt(account, attempt.network, blocks, pair_counted, failures)
        block = attempt.in_force(attempt.ip, now)
        if block is not None:
            raise ClientBlocked(
                f"Authentication blocked: IP {client_ip or 'unknown'} exceeded login "
                "attempt threshold",
                retry_after=int(block.until - now) + 1,
                reason=Reason.IP_BLOCKED,
            )
        block = attempt.in_force(attempt.pair, now)
        if block is not None:
            raise Throttled(
                "Too many failed logins for this account from this address",
                retry_after=int(block.until - now) + 1,
                reason=Reason.ACCOUNT_IP_BLOCKED,
            )
        if attempt.in_force(attempt.known, now) is not None:
            # The owner's place: never slowed, never held back, and its password check
            # is not refused for a hashing queue that others filled.
            return replace(attempt, from_known_address=True)
        if attempt.in_force(attempt.attack, now) is not None:
            await self._take_turn(attempt, now)
            return attempt
        return await self._evaluate_or_wait(attempt, flights, ended_before)

    async def _evaluate_or_wait(
        self, attempt: LoginAttempt, flights: _InFlight, ended_before: int
    ) -> LoginAttempt | None:
        """Let the attempt be evaluated if the account's allowance, less the checks of
        it already being evaluated in this process, leaves room; else wait until those
        have been counted (None: look again, when the account may be under attack).

        Without this, every check that arrived while the first passwords were being
        hashed read "not under attack": 80 wrong passwords sent at once from 80
        addresses got 69 evaluations where the account's threshold (20) and then its
        one shared turn should have stood. The count stays where it was (a failure is
        written once, by ``failed``; the usual login writes nothing): what is counted
        here lives in this process only, so across processes and nodes each may let
        the account's remaining allowance through at once (see README)."""
        room = self._limits.account_max_failures - attempt.account_failures
        # Evaluations that ended while the counters were being read may or may not be
        # in what was read: they count as still in flight (stricter, never laxer).
        in_flight = flights.evaluating + flights.ended - ended_before
        # At least one at a time, so that an account over its threshold with no attack
        # in force (its counts sliding down) still gets evaluated.
        if in_flight < max(1.0, room):
            flights.evaluating += 1
            flights.idle.clear()
            return replace(attempt, hold=_Hold(attempt.account))
        if flights.waiting >= self._max_waiting:
            raise Throttled(
                "Too many logins for this account at once; try again in a moment",
                retry_after=1,
                reason=Reason.CONCURRENT_LOGINS,
            )
        flights.waiting += 1
        try:
            # Bounded: room may never come while other checks keep ending without being
            # counted (errors, hashes refused as overloaded) and new ones take their place.
            async with asyncio.timeout(self._max_wait_seconds):
                await flights.idle.wait()
        except TimeoutError:
            raise Throttled(
                "Too many logins for this account at once; try again in a moment",
                retry_after=1,
                reason=Reason.CONCURRENT_LOGINS,
            ) from None
        finally:
            flights.waiting -= 1
        return None

    def release(self, attempt: LoginAttempt) -> None:
        """End the attempt's evaluation (once; ``failed`` and ``succeeded`` do it after
        counting): checks of its account waiting for room look again."""
        hold = attempt.hold
        if hold is None or not hold.held:
            return
        hold.held = False
        flights = self._in_flight.get(hold.account)
        if flights is None:
            return
        flights.evaluating -= 1
        flights.ended += 1
        if not flights.evaluating:
            flights.idle.set()
        self._forget_if_unused(hold.account, flights)

    def _forget_if_unused(self, account: str, flights: _InFlight) -> None:
        if not (flights.evaluating or flights.reading or flights.waiting):
            self._in_flight.pop(account, None)

    async def failed(self, attempt: LoginAttempt) -> None:
        """Count a failed check and block what crossed its threshold."""
        try:
            await self._count_failure(attempt)
        finally:
            self.release(attempt)

    async def _count_failure(self, attempt: LoginAttempt) -> None:
        limits = self._limits
        now = self._clock().timestamp()
        by_ip = await self._store.add_failure(attempt.ip, window=limits.ip_window, now=now)
        if by_ip >= limits.ip_max_failures:
            # A whole window from now: the counts slide, so the end of a clock-aligned
            # window could be seconds away and let the spraying resume at once.
            until = now + limits.ip_window
            await self._store.block(attempt.ip, until=until, strikes=1, now=now)
            self._lockout(attempt, Reason.IP_BLOCKED, {"retryAfter": limits.ip_window})
        by_pair = await self._store.add_failure(attempt.pair, window=limits.pair_window, now=now)
        if by_pair >= limits.pair_max_failures:
            previous = attempt.blocks.get(attempt.pair)
            strikes = previous.strikes + 1 if previous else 1
            delay = min(limits.pair_base_delay * 2 ** (strikes - 1), limits.pair_max_delay)
            await self._store.block(attempt.pair, until=now + delay, strikes=strikes, now=now)
            # Count afresh: the next pair_max_failures failures block again, twice as long.
            await self._store.reset_failures(attempt.pair)
            self._lockout(
                attempt, Reason.ACCOUNT_IP_BLOCKED, {"retryAfter": delay, "strikes": strikes}
            )
        by_account = await self._store.add_failure(
            attempt.tally, window=limits.account_window, now=now
        )
        if by_account >= limits.account_max_failures:
            # Under attack until a whole window passes without the threshold crossed.
            await self._store.block(
                attempt.attack, until=now + limits.account_window, strikes=0, now=now
            )
            if attempt.in_force(attempt.attack, now) is None:
                self._lockout(attempt, Reason.ACCOUNT_SLOWDOWN, {"failures": int(by_account)})

    async def succeeded(self, attempt: LoginAttempt) -> None:
        """Clear the pair (its failures and its block, strikes included) and make the
        address known. What ``check`` read decides what is written: a pair with neither
        failures counted nor a block (in force or ended) has nothing to clear, and a
        known mark at most ``KNOWN_REFRESH_SECONDS`` older than a fresh one is kept. A
        failure of the same pair counted while this password was being hashed is then
        not cleared by this success: it stays counted (stricter than clearing it)."""
        try:
            await self._clear(attempt)
        finally:
            self.release(attempt)

    async def _clear(self, attempt: LoginAttempt) -> None:
        now = self._clock().timestamp()
        until = now + self._limits.known_ip_days * 86_400
        clear = attempt.pair_counted or attempt.pair in attempt.blocks
        known = attempt.blocks.get(attempt.known)
        if not clear and known is not None and known.until >= until - KNOWN_REFRESH_SECONDS:
            return
        if not clear:
            await self._store.block(attempt.known, until=until, strikes=0, now=now)
            return
        # One transaction: the pair's failures are forgotten and the address is known.
        await self._store.forget_and_block(
            (attempt.pair,), attempt.known, until=until, strikes=0, now=now
        )

    async def _take_turn(self, attempt: LoginAttempt, now: float) -> None:
        """Under attack, the addresses the account does not know share one turn: the
        attempt that takes it is evaluated, every other one waits for the next turn."""
        limits = self._limits
        turn = attempt.blocks.get(attempt.turn)
        if turn is None or turn.until <= now:
            # Each turn taken while the attack goes on waits twice as long as the one
            # before; a quiet window starts over from the base.
            recent = turn is not None and turn.until > now - limits.account_window
            strikes = turn.strikes + 1 if turn is not None and recent else 1
            delay = min(limits.account_slowdown * 2 ** (strikes - 1), limits.account_slowdown_max)
            if await self._store.claim(attempt.turn, until=now + delay, strikes=strikes, now=now):
                return
            turn = await self._store.get_block(attempt.turn)  # another attempt took it
        wait = turn.until - now if turn is not None else limits.account_slowdown
        raise Throttled(
            "This account is under attack; slow down",
            retry_after=int(wait) + 1,
            reason=Reason.ACCOUNT_SLOWDOWN,
        )

    def _lockout(self, attempt: LoginAttempt, reason: Reason, details: dict[str, object]) -> None:
        self._audit.record(
            EventType.AUTH_LOCKOUT,
            "failure",
            actor=Actor(login=attempt.account),
            reason=reason,
            details=details,
        )
