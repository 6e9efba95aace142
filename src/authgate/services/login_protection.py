"""Brute-force and credential-stuffing protection for logins.

Three counters, all over sliding windows, for every failed login (unknown usernames
count exactly like real ones, keyed by the name as typed, so throttling reveals
nothing about which accounts exist):

* per client address: ``ip_max_failures`` in ``ip_window`` blocks the address for the
  rest of the window (423, UTMStack's rule and message) — stops password spraying from
  one machine;
* per (account, address) pair: ``pair_max_failures`` blocks that pair for a delay that
  doubles with each consecutive block, from ``pair_base_delay`` up to ``pair_max_delay``
  (429 with Retry-After; Keycloak's model) — stops guessing one account from one place
  without touching anyone else;
* per account, from everywhere: past ``account_max_failures`` the account is *slowed*,
  not locked: an address that has not logged into it successfully before may try once
  per ``account_slowdown`` seconds, while addresses the owner used (remembered
  ``known_ip_days``) pass — so a distributed attack cannot lock the owner out.

A success clears the pair's counter and block and remembers the address as known.
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate.clock import Clock
from authgate.exceptions import ClientBlocked, Throttled
from authgate.services.audit import Actor, AuditLog, EventType
from authgate.services.throttle_store import ThrottleStore


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginLimits:
    ip_max_failures: int = 10
    ip_window: int = 600
    pair_max_failures: int = 5
    pair_window: int = 900
    pair_base_delay: int = 30
    pair_max_delay: int = 900
    account_max_failures: int = 20
    account_window: int = 900
    account_slowdown: int = 10
    known_ip_days: int = 30


class LoginProtection:
    def __init__(
        self, *, store: ThrottleStore, limits: LoginLimits, clock: Clock, audit: AuditLog
    ) -> None:
        self._store = store
        self._limits = limits
        self._clock = clock
        self._audit = audit

    async def check(self, account: str, client_ip: str | None) -> None:
        """Raise ``ClientBlocked``/``Throttled`` if this attempt must not be evaluated."""
        now = self._clock().timestamp()
        ip = client_ip or "unknown"
        # One read for every block that may apply (the known-address mark too: it costs
        # nothing extra here, and only matters under attack).
        blocks = await self._store.get_blocks(f"ip:{ip}", _pair(account, ip), _known(account, ip))
        block = blocks.get(f"ip:{ip}")
        if block is not None and block.until > now:
            raise ClientBlocked(
                f"Authentication blocked: IP {ip} exceeded login attempt threshold",
                retry_after=int(block.until - now) + 1,
                reason="ip_blocked",
            )
        block = blocks.get(_pair(account, ip))
        if block is not None and block.until > now:
            raise Throttled(
                "Too many failed logins for this account from this address",
                retry_after=int(block.until - now) + 1,
                reason="account_ip_blocked",
            )
        limits = self._limits
        failures = await self._store.failures(
            f"acct:{account}", window=limits.account_window, now=now
        )
        if failures >= limits.account_max_failures:
            known = blocks.get(_known(account, ip))
            if known is None or known.until <= now:
                await self._slow_down(account, ip, now)

    async def failed(self, account: str, client_ip: str | None) -> None:
        """Count a failed login and block what crossed its threshold."""
        limits = self._limits
        now = self._clock().timestamp()
        ip = client_ip or "unknown"
        by_ip = await self._store.add_failure(f"ip:{ip}", window=limits.ip_window, now=now)
        if by_ip >= limits.ip_max_failures:
            until = (now // limits.ip_window + 1) * limits.ip_window
            await self._store.block(f"ip:{ip}", until=until, strikes=1, now=now)
            self._audit.record(
                EventType.AUTH_LOCKOUT,
                "failure",
                actor=Actor(login=account),
                reason="ip_blocked",
                details={"retryAfter": int(until - now)},
            )
        by_pair = await self._store.add_failure(
            _pair(account, ip), window=limits.pair_window, now=now
        )
        if by_pair >= limits.pair_max_failures:
            previous = await self._store.get_block(_pair(account, ip))
            strikes = previous.strikes + 1 if previous else 1
            delay = min(limits.pair_base_delay * 2 ** (strikes - 1), limits.pair_max_delay)
            await self._store.block(_pair(account, ip), until=now + delay, strikes=strikes, now=now)
            # Count afresh: the next pair_max_failures failures block again, twice as long.
            await self._store.reset_failures(_pair(account, ip))
            self._audit.record(
                EventType.AUTH_LOCKOUT,
                "failure",
                actor=Actor(login=account),
                reason="account_ip_blocked",
                details={"retryAfter": delay, "strikes": strikes},
            )
        await self._store.add_failure(f"acct:{account}", window=limits.account_window, now=now)

    async def succeeded(self, account: str, client_ip: str | None) -> None:
        now = self._clock().timestamp()
        ip = client_ip or "unknown"
        until = now + self._limits.known_ip_days * 86_400
        # One transaction: the pair's failures are forgotten and the address is known.
        await self._store.forget_and_block(
            (_pair(account, ip),), _known(account, ip), until=until, strikes=0, now=now
        )

    async def _slow_down(self, account: str, ip: str, now: float) -> None:
        """Under attack, an unknown address gets one attempt per slowdown period."""
        subject = f"slow:{account}|{ip}"
        block = await self._store.get_block(subject)
        if block is not None and block.until > now:
            raise Throttled(
                "This account is under attack; slow down",
                retry_after=int(block.until - now) + 1,
                reason="account_slowdown",
            )
        until = now + self._limits.account_slowdown
        await self._store.block(subject, until=until, strikes=0, now=now)


def _pair(account: str, ip: str) -> str:
    return f"pair:{account}|{ip}"


def _known(account: str, ip: str) -> str:
    return f"known:{account}|{ip}"
