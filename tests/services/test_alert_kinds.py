"""The kinds of alert rule: what each counts per, and how its alerts read."""

from __future__ import annotations

import pytest

from authgate.reasons import Reason
from authgate.services.alerts.kinds import KINDS, duration
from authgate.storage.models import AuditEvent


def event(
    *,
    login: str | None = None,
    ip: str | None = None,
    key: int | None = None,
    reason: Reason | None = None,
) -> AuditEvent:
    return AuditEvent(actor_login=login, client_ip=ip, api_key_id=key, reason=reason)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1, "1 second"),
        (90, "90 seconds"),
        (300, "5 minutes"),
        (3600, "1 hour"),
        (5400, "90 minutes"),
        (86_400, "1 day"),
        (30 * 86_400, "30 days"),
    ],
)
def test_a_window_reads_in_the_largest_exact_unit(seconds: int, expected: str) -> None:
    assert duration(seconds) == expected


def test_counting_kinds_name_the_rule_the_count_and_the_window() -> None:
    kind = KINDS["failed_logins_per_account"]
    one = kind.summarize(rule="Failed logins", subject="account:alice", count=1, window_seconds=300)
    many = kind.summarize(rule="Failed logins", subject="account:alice", count=7, window_seconds=60)
    assert one == "Failed logins: 1 event in 5 minutes (account:alice)"
    assert many == "Failed logins: 7 events in 1 minute (account:alice)"


def test_single_event_kinds_say_what_happened() -> None:
    new_ip = KINDS["key_new_ip"].summarize(
        rule="any", subject="key:5|ip:10.0.0.1", count=1, window_seconds=86_400
    )
    idle = KINDS["key_after_inactivity"].summarize(
        rule="any", subject="key:5", count=1, window_seconds=30 * 86_400
    )
    assert new_ip == "API key used from a new address (key:5|ip:10.0.0.1)"
    assert idle == "API key used after more than 30 days without use (key:5)"
    assert {name for name, kind in KINDS.items() if kind.single_event} == {
        "key_new_ip",
        "key_after_inactivity",
    }


def test_a_rule_name_with_braces_is_not_a_template() -> None:
    summary = KINDS["lockouts"].summarize(rule="{x}", subject="*", count=2, window_seconds=60)
    assert summary == "{x}: 2 events in 1 minute (*)"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("failed_logins_per_account", "account:alice"),
        ("failed_second_factors", "account:alice"),
        ("failed_logins_per_ip", "ip:10.0.0.1"),
        ("failed_key_uses_per_ip", "ip:10.0.0.1"),
        ("failed_key_uses_per_key", "key:5"),
        ("key_after_inactivity", "key:5"),
        ("key_new_ip", "key:5|ip:10.0.0.1"),
        ("admin_actions", "actor:alice"),
        ("failed_logins_global", "*"),
        ("lockouts", "*"),
    ],
)
def test_each_kind_counts_per_its_subject(kind: str, expected: str) -> None:
    assert KINDS[kind].subject.of(event(login="alice", ip="10.0.0.1", key=5)) == expected


@pytest.mark.parametrize(
    "kind",
    ["failed_logins_per_account", "failed_logins_per_ip", "failed_key_uses_per_key", "key_new_ip"],
)
def test_an_event_without_the_subject_counts_for_none(kind: str) -> None:
    assert KINDS[kind].subject.of(event()) is None


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("failed_logins_per_ip", "ip:2001:db8:1:2::/64"),
        ("failed_key_uses_per_ip", "ip:2001:db8:1:2::/64"),
        ("key_new_ip", "key:5|ip:2001:db8:1:2::/64"),
    ],
)
def test_an_ipv6_address_counts_as_its_64(kind: str, expected: str) -> None:
    """As brute-force protection counts it: rotating within one's /64 is one subject."""
    for address in ("2001:db8:1:2::1", "2001:db8:1:2:aaaa:bbbb:cccc:dddd"):
        assert KINDS[kind].subject.of(event(login="alice", ip=address, key=5)) == expected


def test_an_ipv4_mapped_address_counts_as_the_ipv4_address() -> None:
    subject = KINDS["failed_logins_per_ip"].subject.of(event(ip="::ffff:192.0.2.1"))
    assert subject == "ip:192.0.2.1"


@pytest.mark.parametrize("reason", [r for r in Reason if r.throttled])
@pytest.mark.parametrize("kind", ["failed_logins_per_account", "failed_second_factors"])
def test_a_refusal_before_any_password_check_belongs_to_no_account(
    kind: str, reason: Reason
) -> None:
    """The login on such a refusal is only what was typed: no account subject."""
    assert KINDS[kind].subject.of(event(login="alice", ip="10.0.0.1", reason=reason)) is None
    assert reason.value in KINDS[kind].subject.ignored_reasons


def test_a_checked_wrong_password_belongs_to_the_account() -> None:
    subject = KINDS["failed_logins_per_account"].subject.of(
        event(login="alice", reason=Reason.WRONG_PASSWORD)
    )
    assert subject == "account:alice"
