"""Repeated refusals counted in one summary record instead of one record each.

Every refusal is recorded, but a flood of them must not grow the trail without bound: a
refused request costs the caller nothing, its record costs a chained row. So, per
(event type, reason, client network, API key) and clock minute, the first
``per_group`` refusals are records of their own, with every detail; further ones in that
minute are counted, and written as **one summary record** when the minute is over (or
at shutdown): the same event type and reason, the count, the first and last time, a few
of the paths and addresses as examples, and every field the counted refusals shared
(the account, the key, the address, the user agent). A "network" is an IPv4 address or
an IPv6 /64, as brute-force protection counts them (``throttle_network``).

A process also writes at most ``per_minute`` refusals as records of their own per
minute, whatever their groups: past that, every refusal that does not belong to a
group already being summarized is counted per (event type, reason, API key) only, so
rotating addresses buys no rows, and a key's refusals still name the key. A minute thus
costs at most ``per_minute`` records, plus one summary per group that overflowed (at
most ``per_minute / per_group``), plus one per (event type, reason, key) counted past
the bound (the keys are those that exist: a key is named only once its id was found).

Refusals whose password or second-factor code was checked (``AUTH_FAILURE`` and
``TFA_FAILURE`` for any reason that is not a throttle's) are outside that bound: they
still count per group, but never toward ``per_minute`` nor into its address-less
summary. Otherwise a flood of refusals that cost nothing (no credentials, malformed
tokens) could use up the bound and then hide a password-guessing attack's account and
address from the trail and from the alert rules. Their number is bounded by the
hashing pool instead (each costs a password hash or a code check behind one).

A summary's ``details`` are ``{"aggregate": {"count": n, "first": ..., "last": ...,
"paths": [...], ...}}`` (``storage.audit_repository.aggregated_count`` reads it back):
``count`` is the number of refusals it stands for, none of which has a record of its
own. Summaries are chained like any other record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Literal

from authgate.clock import format_utc
from authgate.reasons import Reason
from authgate.security.networks import throttle_network
from authgate.services.audit.events import EventType
from authgate.storage.audit_repository import AGGREGATE, AuditRow

# The refusals of requests (outcome "failure"); lockouts, blocks and the chain's own
# records stay one record each (each already marks a state change, not a request).
REFUSALS: Final = frozenset(
    event.value
    for event in (
        EventType.AUTH_FAILURE,
        EventType.TOKEN_REJECTED,
        EventType.CREDENTIALS_MISSING,
        EventType.API_KEY_ACCESS_FAILURE,
        EventType.FORWARD_AUTH_REFUSED,
        EventType.INTERNAL_CALL_REFUSED,
        EventType.TFA_FAILURE,
        EventType.PASSWORD_RESET_REQUESTED,
    )
)

# Refusals of a password or second-factor check that ran: outside the process-wide
# bound (see the module's doc), unless a throttle refused them before any check.
_CHECKED: Final = frozenset({EventType.AUTH_FAILURE.value, EventType.TFA_FAILURE.value})


def _throttled(reason: str | None) -> bool:
    known = Reason.lookup(reason) if reason is not None else None
    return known is not None and known.throttled


# Distinct examples a summary keeps (paths, addresses).
EXAMPLES: Final = 5

# The fields a summary keeps when every refusal it counts had the same value.
_SHARED: Final = (
    "actor_login",
    "actor_user_id",
    "api_key_id",
    "api_key_name",
    "client_ip",
    "user_agent",
    "request_path",
)

Scope = Literal["network", "any address"]
_GroupKey = tuple[str, str | None, str | None, int | None]
_OverflowKey = tuple[str, str | None, int | None]


@dataclass(slots=True)
class _Summary:
    """The refusals of one group (or one type and reason) counted in one minute."""

    first: AuditRow
    scope: Scope
    network: str | None
    count: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    differing: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)

    def add(self, row: AuditRow) -> None:
        self.count += 1
        at = row.occurred_at
        if self.first_at is None or at < self.first_at:
            self.first_at = at
        if self.last_at is None or at > self.last_at:
            self.last_at = at
        first = self.first
        for name in _SHARED:
            if name not in self.differing and getattr(row, name) != getattr(first, name):
                self.differing.add(name)
        _example(self.paths, row.request_path)
        _example(self.addresses, row.client_ip)

    def row(self) -> AuditRow:
        """The summary record."""
        first = self.first
        kept: dict[str, Any] = {
            name: None if name in self.differing else getattr(first, name) for name in _SHARED
        }
        if kept["client_ip"] is None and self.scope == "network":
            kept["client_ip"] = self.network  # an IPv6 /64 whose addresses varied
        aggregate: dict[str, object] = {
            "count": self.count,
            "first": format_utc(self.first_at or first.occurred_at, timespec="microseconds"),
            "last": format_utc(self.last_at or first.occurred_at, timespec="microseconds"),
            "scope": self.scope,
            "paths": self.paths,
        }
        if "client_ip" in self.differing:
            aggregate["addresses"] = self.addresses
        return replace(
            first,
            occurred_at=self.last_at or first.occurred_at,
            correlation_id=None,
            details=json.dumps({AGGREGATE: aggregate}, sort_keys=True),
            **kept,
        )


def _example(examples: list[str], value: str | None) -> None:
    if value is not None and len(examples) < EXAMPLES and value not in examples:
        examples.append(value)


@dataclass(slots=True)
class _Group:
    written: int = 0  # refusals of this group written as records of their own this minute
    summary: _Summary | None = None


class RefusalAggregator:
    """Decides, per refusal, whether it is a record of its own or counted in a summary;
    hands out the summaries of the minutes that are over. O(1) per refusal, no I/O;
    memory is bounded by ``per_minute`` groups (plus one per type, reason and key)."""

    def __init__(self, *, per_group: int, per_minute: int) -> None:
        self._per_group = per_group
        self._per_minute = per_minute
        self._minute: int | None = None
        self._written = 0
        self._groups: dict[_GroupKey, _Group] = {}
        self._overflow: dict[_OverflowKey, _Summary] = {}
        self._done: list[AuditRow] = []

    def admit(self, row: AuditRow) -> bool:
        """Whether ``row`` (a refusal) is written as a record of its own; if not, it is
        counted in its minute's summary."""
        minute = _minute(row.occurred_at)
        if self._minute is None or minute > self._minute:
            self._close()  # nothing to close when ``closed`` was asked first
            self._minute = minute
        # A refusal dated in a minute already closed (clocks of concurrent requests) is
        # counted in the current one.
        address = row.client_ip
        network = throttle_network(address) if address and ":" in address else address
        key = (row.event_type, row.reason, network, row.api_key_id)
        group = self._groups.get(key)
        if group is not None and group.summary is not None:
            group.summary.add(row)
            return False
        checked = row.event_type in _CHECKED and not _throttled(row.reason)
        if checked or self._written < self._per_minute:
            if group is None:
                group = self._groups[key] = _Group()
            if group.written < self._per_group:
                group.written += 1
                if not checked:
                    self._written += 1
                return True
            group.summary = _Summary(row, "network", network)
            group.summary.add(row)
            return False
        # Per key too: a key's refusals keep naming it (and its owner) in the summary, so
        # that cheap refusals using up the bound cannot strip a stolen or revoked key's
        # uses of the key (the attack review); their number is bounded by the keys.
        overflow_key = (row.event_type, row.reason, row.api_key_id)
        summary = self._overflow.get(overflow_key)
        if summary is None:
            summary = self._overflow[overflow_key] = _Summary(row, "any address", None)
        summary.add(row)
        return False

    def closed(self, now: datetime) -> list[AuditRow]:
        """The summaries of the minutes before ``now``'s, once each."""
        if self._minute is not None and _minute(now) > self._minute:
            self._close()
            self._minute = None
        done, self._done = self._done, []
        return done

    def close_all(self) -> list[AuditRow]:
        """Every summary, the current minute's too (at shutdown: nothing is left)."""
        self._close()
        self._minute = None
        done, self._done = self._done, []
        return done

    @property
    def counting(self) -> int:
        """Refusals counted in summaries not handed out yet."""
        groups = sum(g.summary.count for g in self._groups.values() if g.summary is not None)
        return groups + sum(summary.count for summary in self._overflow.values())

    def _close(self) -> None:
        for group in self._groups.values():
            if group.summary is not None:
                self._done.append(group.summary.row())
        self._done.extend(summary.row() for summary in self._overflow.values())
        self._groups = {}
        self._overflow = {}
        self._written = 0


def _minute(at: datetime) -> int:
    return int(at.timestamp() // 60)
