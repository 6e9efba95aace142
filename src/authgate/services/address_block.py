"""The address block: client addresses that sent too many bad API keys are refused.

``max_failures`` refused keys (or service credentials) from one address within
``window`` seconds block that address for key authentication for ``block_seconds``
(``AddressBlocked``, a ``Throttled``: 429). The check on every key request is a
dictionary lookup in memory: blocks are counted in the shared throttle store (database
or Redis) on the failure path only, and announced to every worker and node through the
change feed (``ChangeKind.ADDRESS_BLOCKED``). Every process counting the address may
cross the threshold; an atomic claim in the throttle store lets one of them block,
announce and record it (``IP_BLOCKED`` once per block, not once per process).

An IPv6 client is counted and blocked by its /64, as logins are
(``security.networks.throttle_network``): one machine may hold a whole /64, and a new
address within it must not start afresh.

A trusted proxy's address (``AUTHGATE_TRUSTED_PROXIES``) is never counted or blocked:
when it is the client address (a proxy that sent no forwarding header, or the
``clientIp`` a v12 service reports when its clients reach it through a proxy or NAT,
as UTMStack's log-input does behind Docker swarm's routing mesh), it stands for every
client behind it, and blocking it would refuse every key there for anyone who sends 20
bad ones. The refusals are still audited
(and alerted on) one by one.

One concept, one name in the code: "address block" (``AddressBlocker``,
``AddressBlockLimits``, ``Services.address_blocker``). What is outside the code keeps
its name: the ``AUTHGATE_KEY_IP_*`` settings and the ``[key_abuse]`` table, the
``IP_BLOCKED`` audit event, the reasons ``too_many_invalid_keys`` (the block) and
``ip_blocked_for_keys`` (a request refused by it), the ``blocked_addresses`` gauge and
the change feed's ``client_blocked`` kind (docs/architecture.md, "Vocabulary").
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field

from authgate.clock import Clock
from authgate.exceptions import AddressBlocked
from authgate.reasons import Reason
from authgate.security.networks import (
    IPV6_THROTTLE_PREFIX,
    IPAddress,
    TrustedProxies,
    parse_address,
)
from authgate.services.audit.events import EventType
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.services.throttle_store import ThrottleStore

_PREFIX = "keyip:"
_MAX_BLOCKED = 100_000  # bounded: past this, expired entries are dropped first

# What is blocked: an IPv4 address, or an IPv6 /64 as the int of its first 64 bits (one
# shift on the hot path, no network object; never equal to an address key).
_Unit = IPAddress | int


def _unit(address: IPAddress) -> _Unit:
    return address if address.version == 4 else int(address) >> 64


def _unit_text(address: IPAddress) -> str:
    """The unit as the throttle store and the change feed name it (``2001:db8::/64``)."""
    if address.version == 4:
        return str(address)
    return str(ipaddress.IPv6Network((int(address) >> 64 << 64, IPV6_THROTTLE_PREFIX)))


def _unit_of_text(text: str) -> _Unit | None:
    """The unit named by ``_unit_text`` (or, from an older node, by an IPv6 address)."""
    if "/" in text:
        try:
            network = ipaddress.IPv6Network(text)
        except ValueError:
            return None
        return int(network.network_address) >> 64
    address = parse_address(text)
    return _unit(address) if address is not None else None


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
        never_blocked: TrustedProxies | None = None,
    ) -> None:
        self._store = store
        self._never_blocked = never_blocked
        self._feed = feed
        self._limits = limits
        self._clock = clock
        self._audit = audit
        self._blocked: dict[_Unit, float] = {}  # unit -> POSIX time the block ends
        feed.subscribe(self._on_change)

    async def load(self) -> None:
        """Blocks already in force (at start-up)."""
        now = self._clock().timestamp()
        for subject, until in (await self._store.active_blocks(_PREFIX, now)).items():
            unit = _unit_of_text(subject[len(_PREFIX) :])
            if unit is not None:
                self._blocked[unit] = until

    def check(self, address: IPAddress | None, now: float) -> None:
        """Raise ``AddressBlocked`` if the address is blocked (the hot path: memory only)."""
        blocked = self._blocked
        if not blocked or address is None:  # nothing blocked: no address to hash
            return
        until = blocked.get(_unit(address))
        if until is not None and until > now and not self._trusted(address):
            raise AddressBlocked(
                retry_after=int(until - now) + 1,
                reason=Reason.IP_BLOCKED_FOR_KEYS,
            )

    async def failed(self, address: IPAddress | None) -> None:
        """Count a refused key from ``address``; block the address past the threshold
        (never a trusted proxy's: see the module docstring)."""
        if address is None or self._trusted(address):
            return
        limits = self._limits
        now = self._clock().timestamp()
        unit, text = _unit(address), _unit_text(address)
        subject = f"{_PREFIX}{text}"
        failures = await self._store.add_failure(subject, window=limits.window, now=now)
        if failures < limits.max_failures or self._blocked.get(unit, 0) > now:
            return
        until = now + limits.block_seconds
        self._blocked[unit] = until
        # Every process counting this address crosses the threshold: the one whose
        # claim wins blocks, announces and records it; the others learn the block's
        # end through the change feed (once per block, not once per process).
        if not await self._store.claim(subject, until=until, strikes=1, now=now):
            return
        await self._store.block(subject, until=until, strikes=1, now=now)
        async with self._feed.unit_of_work() as work:
            work.publish(Change(ChangeKind.ADDRESS_BLOCKED, f"{text}|{until}"))
        self._audit.record(
            EventType.IP_BLOCKED,
            "failure",
            reason=Reason.TOO_MANY_INVALID_KEYS,
            details={"address": text, "blockedSeconds": limits.block_seconds},
        )

    def _trusted(self, address: IPAddress) -> bool:
        """A trusted proxy's address: never counted, and never refused for a block it
        got before it was trusted (a block stored then, or announced by an older node)."""
        never_blocked = self._never_blocked
        return never_blocked is not None and never_blocked.trusts(address)

    def blocked_count(self) -> int:
        return len(self._blocked)

    def _on_change(self, change: Change) -> None:
        if change.kind is not ChangeKind.ADDRESS_BLOCKED:
            return
        text, _, until = change.subject.rpartition("|")
        unit = _unit_of_text(text)
        try:
            ends = float(until)
        except ValueError:
            return
        if unit is not None:
            self._blocked[unit] = ends
        if len(self._blocked) > _MAX_BLOCKED:
            now = self._clock().timestamp()
            self._blocked = {a: u for a, u in self._blocked.items() if u > now}
