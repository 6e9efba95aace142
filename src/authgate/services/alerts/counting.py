"""Counting an audit record's subject over a rule's window, and judging the one record
of a single-event kind.

Addresses are counted per ``throttle_network``, as brute-force protection counts them:
an IPv4 address by itself (one indexed-range count), an IPv6 address with every other
address of its /64. Audit records keep the exact address, written canonically, so the
/64's records are narrowed down by the text they start with and then checked one
distinct address at a time.
"""

from __future__ import annotations

import json
from datetime import timedelta

from authgate.reasons import Reason
from authgate.security.networks import network_text_prefix, parse_address, throttle_network
from authgate.services.alerts.kinds import AlertKind
from authgate.services.ports import AlertRepo
from authgate.storage.models import AuditEvent


async def count_for_subject(
    repository: AlertRepo,
    kind: AlertKind,
    event: AuditEvent,
    window: timedelta,
    *,
    previous: AuditEvent | None = None,
) -> int:
    """Events of ``kind`` for the subject of ``event`` within ``window`` before it.
    ``previous``: the subject's record just before ``event``, when the caller has it
    (a single-event kind then needs no query for it)."""
    if kind.single_event:
        return await _single_event_count(repository, kind, event, window, previous)
    column = kind.subject.column
    since, until = event.occurred_at - window, event.occurred_at
    ignored = kind.subject.ignored_reasons
    if column == "client_ip" and event.client_ip is not None and _is_ipv6(event.client_ip):
        network = throttle_network(event.client_ip)
        per_address = await repository.count_events_per_address(
            kind.events,
            since=since,
            until=until,
            address_prefix=network_text_prefix(network),
            excluded_reasons=ignored,
        )
        return sum(n for address, n in per_address.items() if throttle_network(address) == network)
    return await repository.count_events(
        kind.events,
        since=since,
        until=until,
        actor_login=event.actor_login if column == "actor_login" else None,
        client_ip=event.client_ip if column == "client_ip" else None,
        api_key_id=event.api_key_id if column == "api_key_id" else None,
        excluded_reasons=ignored,
    )


async def _single_event_count(
    repository: AlertRepo,
    kind: AlertKind,
    event: AuditEvent,
    window: timedelta,
    previous: AuditEvent | None,
) -> int:
    if event.api_key_id is None:
        return 0
    if kind.name == "key_new_ip":
        if await repository.previous_key_success(event.api_key_id, before_id=event.id) is None:
            return 0  # the key's very first use: no address of it is "new" yet
        return 0 if await _network_seen(repository, event.api_key_id, event) else 1
    if event.reason is not None:
        # The gate audits an accepted request only when it is a security event; the
        # one after a long idle time says how long (exact, from the key's last use).
        if Reason.lookup(event.reason) is not Reason.AFTER_INACTIVITY or not event.details:
            return 0
        idle_seconds = json.loads(event.details).get("idleSeconds", 0)
        return 1 if idle_seconds >= window.total_seconds() else 0
    # Every accepted request audited (AUTHGATE_AUDIT_API_KEY_SUCCESSES): the previous one.
    if previous is None:
        previous = await repository.previous_key_success(event.api_key_id, before_id=event.id)
    idle = previous is not None and event.occurred_at - previous.occurred_at >= window
    return 1 if idle else 0


async def _network_seen(repository: AlertRepo, api_key_id: int, event: AuditEvent) -> bool:
    """Whether the key was accepted before ``event`` from the event's address (IPv4) or
    from any address of its /64 (IPv6: a client's privacy addresses are not "new")."""
    if event.client_ip is None or not _is_ipv6(event.client_ip):
        seen = await repository.previous_key_success(
            api_key_id, before_id=event.id, client_ip=event.client_ip
        )
        return seen is not None
    network = throttle_network(event.client_ip)
    addresses = await repository.key_success_addresses(
        api_key_id, before_id=event.id, address_prefix=network_text_prefix(network)
    )
    return any(throttle_network(address) == network for address in addresses)


def _is_ipv6(address: str) -> bool:
    parsed = parse_address(address)
    return parsed is not None and parsed.version == 6
