"""The kinds of alert rule, each defined once: the audit events it counts, what it counts
them per (its subject), whether one event is enough, and how its alert reads.

The rule service validates against these, the engine counts and words alerts with them,
and the API and the Settings UI list them (with their descriptions) from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from authgate.reasons import Reason
from authgate.security.networks import throttle_network
from authgate.services.audit.events import EventType
from authgate.storage.models import AuditEvent

# The count of a counting kind's events filters on the record's column its subject names.
Column = Literal["actor_login", "client_ip", "api_key_id"]

# Refusals made before any password or key was looked at, because the address (or the
# pair, or the account from unknown addresses) was already throttled: the address is
# the attacker's, but the login on such a refusal is only what was typed, so these say
# nothing about that account. Counting them per account let one blocked address raise
# an alert for every name it typed (212 refused logins, 43 alerts).
UNCHECKED_REFUSALS: Final = frozenset(reason.value for reason in Reason if reason.throttled)


@dataclass(frozen=True, slots=True)
class Subject:
    """What a kind counts per: the subject an audit record belongs to (``None``: to none),
    and the record's column the count filters on (``None``: every record counts).

    Records whose reason is in ``ignored_reasons`` belong to no subject of the kind and
    are not counted for any. An address is counted per ``throttle_network`` (an IPv6
    address's /64, as brute-force protection counts it), so rotating addresses within
    one's own /64 is one subject, not 2**64."""

    of: Callable[[AuditEvent], str | None]
    column: Column | None
    ignored_reasons: frozenset[str] = frozenset()


def address_subject(client_ip: str | None) -> str | None:
    """``ip:<address>`` for IPv4, ``ip:<its /64>`` for IPv6; None without an address."""
    return client_ip and f"ip:{throttle_network(client_ip)}"


def _account(event: AuditEvent) -> str | None:
    if event.reason in UNCHECKED_REFUSALS:
        return None
    return event.actor_login and f"account:{event.actor_login}"


def _key_and_address(event: AuditEvent) -> str | None:
    if event.api_key_id is None:
        return None
    return f"key:{event.api_key_id}|{address_subject(event.client_ip) or 'ip:None'}"


ACCOUNT: Final = Subject(_account, "actor_login", UNCHECKED_REFUSALS)
ADDRESS: Final = Subject(lambda e: address_subject(e.client_ip), "client_ip")
KEY: Final = Subject(
    lambda e: None if e.api_key_id is None else f"key:{e.api_key_id}", "api_key_id"
)
# Single-event kinds: the engine judges the one event itself (no count filters).
KEY_AND_ADDRESS: Final = Subject(_key_and_address, None)
ACTOR: Final = Subject(lambda e: f"actor:{e.actor_login}", "actor_login")
EVERYTHING: Final = Subject(lambda e: "*", None)
# Every failed password check, together: refusals that checked none (a throttle's) are
# not spraying across accounts (one blocked address typing 40 names raised it).
CHECKED_EVERYWHERE: Final = Subject(
    lambda e: None if e.reason in UNCHECKED_REFUSALS else "*", None, UNCHECKED_REFUSALS
)

COUNTED: Final = "{rule}: {events} in {window} ({subject})"


@dataclass(frozen=True, slots=True)
class AlertKind:
    """One kind of alert rule.

    ``single_event`` kinds fire on one event (their threshold is always 1) that the
    engine judges by itself: a key's first use from an address, or after an idle window.
    ``summary`` is a ``str.format`` template over ``rule``, ``events`` ("3 events"),
    ``window`` ("5 minutes") and ``subject``.
    """

    name: str
    events: tuple[str, ...]
    subject: Subject
    single_event: bool
    summary: str
    description: str

    def summarize(self, *, rule: str, subject: str, count: int, window_seconds: int) -> str:
        events = "1 event" if count == 1 else f"{count} events"
        window = duration(window_seconds)
        return self.summary.format(rule=rule, events=events, window=window, subject=subject)


_ADMIN_EVENTS: Final = (
    EventType.USER_CREATED,
    EventType.USER_UPDATED,
    EventType.USER_DEACTIVATED,
    EventType.USER_DELETED,
    EventType.PASSWORD_RESET,
    EventType.ALERT_RULE_CHANGED,
    EventType.UTMSTACK_IMPORTED,
)

# name -> kind, in the order the API and the UI list them
KINDS: Final[Mapping[str, AlertKind]] = {
    kind.name: kind
    for kind in (
        AlertKind(
            "failed_logins_per_account", (EventType.AUTH_FAILURE.value,), ACCOUNT, False, COUNTED,
            "Failed logins for one account, from any address.",
        ),
        AlertKind(
            "failed_logins_per_ip", (EventType.AUTH_FAILURE.value,), ADDRESS, False, COUNTED,
            "Failed logins from one address, for any account.",
        ),
        AlertKind(
            "failed_logins_global", (EventType.AUTH_FAILURE.value,), CHECKED_EVERYWHERE, False,
            COUNTED,
            "Failed logins for all accounts together (password spraying); refusals made "
            "before any password was checked (a throttle's) do not count.",
        ),
        AlertKind(
            "failed_key_uses_per_key", (EventType.API_KEY_ACCESS_FAILURE.value,), KEY, False,
            COUNTED,
            "Refused requests with one genuine API key (wrong address, expired, out of scope).",
        ),
        AlertKind(
            "failed_key_uses_per_ip", (EventType.API_KEY_ACCESS_FAILURE.value,), ADDRESS, False,
            COUNTED,
            "Refused API-key requests from one address (unknown or invalid keys included).",
        ),
        AlertKind(
            "key_new_ip", (EventType.API_KEY_ACCESS_SUCCESS.value,), KEY_AND_ADDRESS, True,
            "API key used from a new address ({subject})",
            "An API key accepted from an address never seen for that key "
            "(the threshold is always 1).",
        ),
        AlertKind(
            "key_after_inactivity", (EventType.API_KEY_ACCESS_SUCCESS.value,), KEY, True,
            "API key used after more than {window} without use ({subject})",
            "An API key used again after being idle for the whole window "
            "(the threshold is always 1).",
        ),
        AlertKind(
            "lockouts", (EventType.AUTH_LOCKOUT.value, EventType.IP_BLOCKED.value), EVERYTHING,
            False, COUNTED,
            "Accounts locked or addresses blocked after repeated failures.",
        ),
        AlertKind(
            "failed_second_factors", (EventType.TFA_FAILURE.value,), ACCOUNT, False, COUNTED,
            "Wrong second-factor codes for one account (the password was right).",
        ),
        AlertKind(
            "admin_actions", tuple(event.value for event in _ADMIN_EVENTS), ACTOR, False,
            COUNTED,
            "User, password and alert-rule changes, per administrator.",
        ),
    )
}  # fmt: skip


def duration(seconds: int) -> str:
    """``seconds`` in the largest unit that holds it exactly: 300 -> "5 minutes"."""
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"
