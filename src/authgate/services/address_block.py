"""The address block: client addresses that sent too many bad API keys are refused.

``max_failures`` refused keys (or service credentials) from one address within
``window`` seconds block that address for key authentication for ``block_seconds``
(``AddressBlocked``, a ``Throttled``: 429). The check on every key request is a
dictionary lookup in memory: blocks are counted in the shared throttle store (database
or Redis) on the failure path only, and announced to every worker and node through the
change feed (``ChangeKind.ADDRESS_BLOCKED``).

One concept, one name in the code: "address block" (``AddressBlocker``,
``AddressBlockLimits``, ``Services.address_blocker``). What is outside the code keeps
its name: the ``AUTHGATE_KEY_IP_*`` settings and the ``[key_abuse]`` table, the
``IP_BLOCKED`` audit event, the reasons ``too_many_invalid_keys`` (the block) and
``ip_blocked_for_keys`` (a request refused by it), the ``blocked_addresses`` gauge and
the change feed's ``client_blocked`` kind (docs/architecture.md, "Vocabulary").
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from authgate.clock import Clock
from authgate.exceptions import AddressBlocked
from authgate.reasons import Reason
from authgate.security.networks import IPAddress, parse_address
from authgate.services.audit.events import EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.throttle_store import ThrottleStore

_PREFIX = "keyip:"
_MAX_BLOCKED = 100_000  # bounded: past this, expired entries are dropped first


class AddressBlockLimits(BaseModel):
    """``Settings.key_abuse``, set by the ``AUTHGATE_KEY_IP_*`` names
    (``authgate.settings_names``) or a ``[key_abuse]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_failures: int = Field(default=20, ge=1, le=100_000)
    window: int = Field(default=60, ge=1, le=86_400)
    block_seconds: int = Field(default=600, ge=1, le=86_400)


class AddressBlocker:
    """Blocks addresses that send too many bad keys, and refuses requests from them."""

    def __init__(
        self,
        *,
        store: ThrottleStore,
        feed: ChangeFeed,
        limits: AddressBlockLimits,
        clock: Clock,
        audit: AuditLog,
    ) -> None:
        self._store = store
        self._feed = feed
        self._limits = limits
        self._clock = clock
        self._audit = audit
        self._blocked: dict[IPAddress, float] = {}  # address -> POSIX time the block ends
        feed.subscribe(self._on_change)

    async def load(self) -> None:
        """Blocks already in force (at start-up)."""
        now = self._clock().timestamp()
        for subject, until in (await self._store.active_blocks(_PREFIX, now)).items():
            address = parse_address(subject[len(_PREFIX) :])
            if address is not None:
                self._blocked[address] = until

    def check(self, address: IPAddress | None, now: float) -> None:
        """Raise ``AddressBlocked`` if the address is blocked (the hot path: memory only)."""
        blocked = self._blocked
        if not blocked or address is None:  # nothing blocked: no address to hash
            return
        until = blocked.get(address)
        if until is not None and until > now:
            raise AddressBlocked(
                retry_after=int(until - now) + 1,
                reason=Reason.IP_BLOCKED_FOR_KEYS,
            )

    async def failed(self, address: IPAddress | None) -> None:
        """Count a refused key from ``address``; block the address past the threshold."""
        if address is None:
            return
        limits = self._limits
        now = self._clock().timestamp()
        subject = f"{_PREFIX}{address}"
        failures = await self._store.add_failure(subject, window=limits.window, now=now)
        if failures < limits.max_failures or self._blocked.get(address, 0) > now:
            return
        until = now + limits.block_seconds
        self._blocked[address] = until
        await self._store.block(subject, until=until, strikes=1, now=now)
        async with self._feed.unit_of_work() as work:
            work.publish(Change(ChangeKind.ADDRESS_BLOCKED, f"{address}|{until}"))
        self._audit.record(
            EventType.IP_BLOCKED,
            "failure",
            reason=Reason.TOO_MANY_INVALID_KEYS,
            details={"address": str(address), "blockedSeconds": limits.block_seconds},
        )

    def blocked_count(self) -> int:
        return len(self._blocked)

    def _on_change(self, change: Change) -> None:
        if change.kind is not ChangeKind.ADDRESS_BLOCKED:
            return
        text, _, until = change.subject.rpartition("|")
        address = parse_address(text)
        try:
            ends = float(until)
        except ValueError:
            return
        if address is not None:
            self._blocked[address] = ends
        if len(self._blocked) > _MAX_BLOCKED:
            now = self._clock().timestamp()
            self._blocked = {a: u for a, u in self._blocked.items() if u > now}
