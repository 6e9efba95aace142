"""Evaluating alert rules against audit records: alert volume stays bounded whatever
subjects an attacker makes up (the attack review's repros, as audit records):

* at most ``max_subjects_per_window`` alerts per rule and window, the rest rolled up
  into one summary alert, updated at most once;
* refusals of an address already blocked create no account subjects;
* an IPv6 address is counted with its /64, as brute-force protection counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authgate.container import Services
from authgate.reasons import Reason
from authgate.security.principal import KeyReference, Principal
from authgate.services.alerts.engine import AlertEngine, FiredAlertView
from authgate.services.alerts.rollup import SUMMARY_SUBJECTS
from authgate.services.alerts.rules import RuleSpec
from authgate.services.audit.events import Actor, EventType, current_request
from authgate.settings import Settings
from authgate.storage.paging import PageRequest
from tests.conftest import FakeClock, test_settings
from tests.services.test_audit import node

PER_ACCOUNT = "Failed logins for one account"
PER_ADDRESS = "Failed logins from one address"
BAD_KEYS = "Invalid API keys from one address"
NEW_ADDRESS = "API key used from a new address"
KEY = KeyReference(key_pk=4242, name="deploy", owner_id=1)


@dataclass(frozen=True)
class FakeRequest:
    """What the HTTP layer tells the audit trail about a request."""

    client_ip: str | None
    user_agent: str | None = None
    path: str | None = "/api/authenticate"
    correlation_id: str | None = None
    principal: Principal | None = None


@contextmanager
def request_from(address: str) -> Iterator[None]:
    token = current_request.set(FakeRequest(address))
    try:
        yield
    finally:
        current_request.reset(token)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # Every refusal a record of its own: these tests are about subjects and counts; a
    # summary of repeated refusals counted by its count is tests/services/
    # test_audit_aggregation.py's.
    return test_settings(
        tmp_path / "data",
        database_url=database_url,
        audit_flush_interval_seconds=60,
        audit_refusals_per_minute=100_000,
        audit_refusals_per_minute_total=1_000_000,
    )


@pytest.fixture
async def services(settings: Settings, clock: FakeClock) -> AsyncIterator[Services]:
    async with node(settings, clock) as built:
        for rule in await built.alert_rules.list():
            await built.alert_rules.delete(rule.id)
        for spec in (
            RuleSpec(name=PER_ACCOUNT, kind="failed_logins_per_account", threshold=5,
                     window_seconds=300, severity="high"),
            RuleSpec(name=PER_ADDRESS, kind="failed_logins_per_ip", threshold=10,
                     window_seconds=600, severity="high"),
            RuleSpec(name=BAD_KEYS, kind="failed_key_uses_per_ip", threshold=20,
                     window_seconds=60, severity="high"),
            RuleSpec(name=NEW_ADDRESS, kind="key_new_ip", threshold=1,
                     window_seconds=86_400, severity="medium"),
        ):  # fmt: skip
            await built.alert_rules.create(spec, audited=False)
        await evaluate(built)  # past what setting up wrote
        yield built


def failed_login(services: Services, login: str, address: str, reason: Reason) -> None:
    with request_from(address):
        services.audit.record(
            EventType.AUTH_FAILURE, "failure", actor=Actor(login=login), reason=reason
        )


def refused_key(services: Services, address: str, reason: Reason) -> None:
    with request_from(address):
        services.audit.record(EventType.API_KEY_ACCESS_FAILURE, "failure", reason=reason)


def accepted_key(services: Services, address: str) -> None:
    with request_from(address):
        services.audit.record(
            EventType.API_KEY_ACCESS_SUCCESS,
            "success",
            actor=Actor(login="deployer", user_id=1, key=KEY),
            reason=Reason.NEW_ADDRESS,
        )


async def evaluate(services: Services, engine: AlertEngine | None = None) -> int:
    await services.audit.flush()
    return await (engine or services.alerts).evaluate_new_events()


async def fired(services: Services, rule: str) -> list[FiredAlertView]:
    page = await services.alerts.recent(PageRequest(size=1000))
    return sorted((a for a in page.items if a.rule_name == rule), key=lambda a: a.id)


def another_engine(services: Services, clock: FakeClock, max_subjects: int) -> AlertEngine:
    """An engine like the app's, with another bound, reading from now on."""
    return AlertEngine(
        db=services.db,
        clock=clock,
        audit=services.audit,
        dispatcher=services.alert_dispatcher,
        max_subjects_per_window=max_subjects,
    )


# --- the bound per rule and window --------------------------------------------------------------


async def test_subjects_beyond_the_bound_are_rolled_up_into_one_summary(
    services: Services,
) -> None:
    """40 accounts with 5 wrong passwords each (one rule, one window): 10 alerts in the
    usual shape, then one summary "+30 more subjects" naming a few of them: 11 alerts,
    not 40."""
    for number in range(40):
        for _ in range(5):
            failed_login(services, f"victim-{number}", f"192.0.2.{number + 1}", Reason.UNKNOWN_USER)

    assert await evaluate(services) == 11

    alerts = await fired(services, PER_ACCOUNT)
    normal = [a for a in alerts if a.subject not in SUMMARY_SUBJECTS]
    assert len(normal) == 10
    assert {a.subject for a in normal} <= {f"account:victim-{n}" for n in range(40)}
    assert all(a.count == 5 and a.kind == "failed_logins_per_account" for a in normal)
    [summary] = [a for a in alerts if a.subject in SUMMARY_SUBJECTS]
    assert summary.subject == "more subjects"
    assert summary.count == 30
    assert summary.severity == "high"
    assert summary.summary.startswith(f"{PER_ACCOUNT}: +30 more subjects reached the threshold")
    assert "beyond the 10 alerted on (e.g. account:victim-" in summary.summary
    # The subjects alerted on and the ones rolled up are apart.
    examples = summary.summary.split("(e.g. ")[1].rstrip(")").split(", ")
    assert len(examples) == 3
    assert not set(examples) & {a.subject for a in normal}


async def test_the_summary_is_updated_at_most_once_per_window(
    services: Services, clock: FakeClock
) -> None:
    """Subjects that keep coming after the summary: one update once their number has
    doubled (and grown by the bound), then nothing more in that window; the next window
    alerts afresh."""

    async def attack(first: int, accounts: int) -> int:
        for number in range(first, first + accounts):
            for _ in range(5):
                failed_login(
                    services, f"victim-{number}", f"198.51.100.{number}", Reason.UNKNOWN_USER
                )
        return await evaluate(services)

    clock.advance(seconds=300 - clock().timestamp() % 300)  # at a window's start
    assert await attack(0, 15) == 11  # 10 alerts, "+5 more"
    assert await attack(15, 5) == 0  # +10: grown, but not by the bound yet
    assert await attack(20, 10) == 1  # +20: at least doubled and grown by 10: the update
    assert await attack(30, 100) == 0  # +120: nothing more in this window

    alerts = await fired(services, PER_ACCOUNT)
    summaries = [(a.subject, a.count) for a in alerts if a.subject in SUMMARY_SUBJECTS]
    assert summaries == [("more subjects", 5), ("more subjects (update)", 20)]
    assert len(alerts) == 12

    clock.advance(minutes=5)
    assert await attack(200, 3) == 3  # a new window: alerts as usual
    assert len(await fired(services, PER_ACCOUNT)) == 15


async def test_the_bound_is_a_setting(services: Services, clock: FakeClock) -> None:
    """With a bound of 2, the third subject is rolled up."""
    engine = another_engine(services, clock, max_subjects=2)
    await engine.start_from_now()
    for number in range(3):
        for _ in range(5):
            failed_login(services, f"user-{number}", f"192.0.2.{number}", Reason.WRONG_PASSWORD)

    assert await evaluate(services, engine) == 3

    subjects = [a.subject for a in await fired(services, PER_ACCOUNT)]
    assert len(subjects) == 3
    assert subjects[2] == "more subjects"


async def test_a_second_node_or_a_restart_sends_no_second_summary(
    services: Services, clock: FakeClock
) -> None:
    """Another engine evaluating the same records (another node, or this one after a
    restart that forgot what it rolled up) sends neither the alerts nor the summary
    again: they are deduplicated in the database."""
    other = another_engine(services, clock, max_subjects=10)
    await other.start_from_now()
    for number in range(20):
        for _ in range(5):
            failed_login(services, f"victim-{number}", f"203.0.113.{number}", Reason.UNKNOWN_USER)

    assert await evaluate(services) == 11
    assert await evaluate(services, other) == 0

    assert len(await fired(services, PER_ACCOUNT)) == 11


# --- refusals of a blocked address --------------------------------------------------------------


@pytest.mark.parametrize(
    "reason", [Reason.IP_BLOCKED, Reason.ACCOUNT_IP_BLOCKED, Reason.CONCURRENT_LOGINS]
)
async def test_refusals_before_any_password_check_create_no_account_subject(
    services: Services, reason: Reason
) -> None:
    """Repro A: an address already blocked sends 5 wrong logins each for 40 usernames.
    No password was looked at: no account alert (before: one per username); the
    address's own rule counts them under the address."""
    for number in range(40):
        for _ in range(5):
            failed_login(services, f"victim-{number}", "203.0.113.7", reason)

    await evaluate(services)

    assert await fired(services, PER_ACCOUNT) == []
    [alert] = await fired(services, PER_ADDRESS)
    assert (alert.subject, alert.count) == ("ip:203.0.113.7", 200)


async def test_refusals_of_a_blocked_address_do_not_count_for_a_real_account(
    services: Services,
) -> None:
    """Two checked wrong passwords plus refusals while blocked stay under the account
    rule's threshold of 5: only checked passwords count for the account."""
    for _ in range(2):
        failed_login(services, "alice", "192.0.2.50", Reason.WRONG_PASSWORD)
    for _ in range(10):
        failed_login(services, "alice", "192.0.2.50", Reason.IP_BLOCKED)

    await evaluate(services)

    assert await fired(services, PER_ACCOUNT) == []


async def test_refusals_of_a_blocked_address_are_no_password_spraying(
    services: Services,
) -> None:
    """The re-check of the fixes: 10 checked wrong passwords and 40 names typed while the
    address was blocked reached a global threshold of 50 ("Password spraying", critical).
    Only checked passwords count for it: 10 + 40 blocked fire nothing; 40 more checked
    ones from elsewhere fire with the count 50."""
    await services.alert_rules.create(
        RuleSpec(name="Spraying", kind="failed_logins_global", threshold=50,
                 window_seconds=300, severity="critical"),
        audited=False,
    )  # fmt: skip
    for number in range(10):
        failed_login(services, f"guess-{number}", "198.51.100.9", Reason.UNKNOWN_USER)
    for number in range(40):
        failed_login(services, f"victim-{number}", "198.51.100.9", Reason.IP_BLOCKED)
    await evaluate(services)
    assert await fired(services, "Spraying") == []
    for number in range(40):
        failed_login(services, f"other-{number}", f"192.0.2.{number + 1}", Reason.WRONG_PASSWORD)
    await evaluate(services)
    [alert] = await fired(services, "Spraying")
    assert (alert.subject, alert.count) == ("*", 50)


# --- IPv6: one /64, one subject -----------------------------------------------------------------


async def test_an_ipv6_64_is_one_address_subject(services: Services) -> None:
    """Repro B: 30 addresses of one /64 each send one unknown key (threshold 20): one
    alert about the /64 with all 30 counted (before: none, each address had one); an
    address of another /64 is another subject, not counted with it."""
    for host in range(1, 31):
        refused_key(services, f"2001:db8:0:7::{host:x}", Reason.UNKNOWN_KEY)
    for _ in range(3):
        refused_key(services, "2001:db8:0:8::1", Reason.UNKNOWN_KEY)
    for _ in range(2):
        refused_key(services, "192.0.2.1", Reason.UNKNOWN_KEY)

    await evaluate(services)

    [alert] = await fired(services, BAD_KEYS)
    assert (alert.subject, alert.count) == ("ip:2001:db8:0:7::/64", 30)


async def test_blocked_refusals_from_a_64_count_for_the_64_only(services: Services) -> None:
    """Repro B's tail: refusals of a blocked /64 from 30 of its addresses, 20 each: one
    alert about the /64 (before: one per address, 30)."""
    for host in range(1, 31):
        for _ in range(20):
            refused_key(services, f"2001:db8:1:2::{host:x}", Reason.IP_BLOCKED_FOR_KEYS)

    await evaluate(services)

    [alert] = await fired(services, BAD_KEYS)
    assert (alert.subject, alert.count) == ("ip:2001:db8:1:2::/64", 600)


async def test_a_key_used_from_new_addresses_of_a_known_64_is_not_new(
    services: Services,
) -> None:
    """A key used from 40 more addresses of the /64 it was first used from: no "new
    address" alert (before: 40, or 10 and a summary); from another /64: one, about it."""
    accepted_key(services, "2001:db8:5:6::1")
    await evaluate(services)
    for host in range(2, 42):
        accepted_key(services, f"2001:db8:5:6::{host:x}")
    await evaluate(services)

    assert await fired(services, NEW_ADDRESS) == []

    accepted_key(services, "2001:db8:5:7::1")
    accepted_key(services, "2001:db8:5:7::2")
    await evaluate(services)

    [alert] = await fired(services, NEW_ADDRESS)
    assert alert.subject == f"key:{KEY.key_pk}|ip:2001:db8:5:7::/64"


async def test_a_key_used_from_many_ipv4_addresses_alerts_a_bounded_number_of_times(
    services: Services,
) -> None:
    """The low-privilege variant: one valid key from 300 IPv4 addresses: 10 alerts and
    one summary, not 299."""
    for host in range(300):
        accepted_key(services, f"10.{host // 250}.{host % 250}.1")

    assert await evaluate(services) == 11

    alerts = await fired(services, NEW_ADDRESS)
    assert [a.count for a in alerts if a.subject == "more subjects"] == [289]


# --- a long idle time ending after a shorter one, in one batch ----------------------------------

AFTER_IDLE = "API key used after 30 idle days"


async def after_idle_rule(services: Services) -> None:
    await services.alert_rules.create(
        RuleSpec(name=AFTER_IDLE, kind="key_after_inactivity", threshold=1,
                 window_seconds=30 * 86_400, severity="low"),
        audited=False,
    )  # fmt: skip


def key_use(services: Services, reason: Reason | None, idle_days: float | None = None) -> None:
    with request_from("203.0.113.50"):
        services.audit.record(
            EventType.API_KEY_ACCESS_SUCCESS,
            "success",
            actor=Actor(login="deployer", user_id=1, key=KEY),
            reason=reason,
            details={"idleSeconds": int(idle_days * 86_400)} if idle_days is not None else None,
        )


async def test_a_long_idle_time_after_a_shorter_one_in_one_batch_fires(
    services: Services, clock: FakeClock
) -> None:
    """The key's first use, a use after 29 idle days (audited: over the gate's one hour)
    and one after 31 more, all evaluated in one batch (an engine catching up, or a clock
    set forward): the 31 days fire the rule once (before: only the batch's first record
    of the key was judged, so none fired)."""
    await after_idle_rule(services)
    key_use(services, Reason.FIRST_USE)
    clock.advance(days=29)
    key_use(services, Reason.AFTER_INACTIVITY, idle_days=29)
    clock.advance(days=31)
    key_use(services, Reason.AFTER_INACTIVITY, idle_days=31)

    assert await evaluate(services) == 1

    [alert] = await fired(services, AFTER_IDLE)
    assert alert.subject == f"key:{KEY.key_pk}"
    assert alert.kind == "key_after_inactivity"


async def test_every_accepted_request_audited_idle_time_is_judged_from_the_batch(
    services: Services, clock: FakeClock
) -> None:
    """With every accepted request audited (no reason on the ordinary ones), uses an hour
    apart and then one after 31 idle days, in one batch: the idle time is measured from
    the use before it in the batch, and fires once; a gap under the window does not."""
    await after_idle_rule(services)
    for _ in range(3):
        key_use(services, None)
        clock.advance(hours=1)
    clock.advance(days=29)
    key_use(services, None)  # 29 days: under the window
    clock.advance(days=31)
    key_use(services, None)
    key_use(services, None)

    assert await evaluate(services) == 1

    [alert] = await fired(services, AFTER_IDLE)
    assert alert.subject == f"key:{KEY.key_pk}"


async def test_long_idle_times_in_two_windows_of_one_batch_each_fire(
    services: Services, clock: FakeClock
) -> None:
    """Two uses after 31 idle days each, 31 days apart (two of the rule's windows), in one
    batch: each fires (the first alert ended the key's records in the batch)."""
    await after_idle_rule(services)
    key_use(services, Reason.FIRST_USE)
    for _ in range(2):
        clock.advance(days=31)
        key_use(services, Reason.AFTER_INACTIVITY, idle_days=31)

    assert await evaluate(services) == 2


async def test_an_evaluation_returns_once_a_running_one_has_stored_its_alerts(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The background evaluation moves the cursor past the records it read before it
    stores their alerts. A second caller (a test, the admin's "evaluate now") used to find
    nothing new and return while the first was still storing: the alerts were not there
    yet. Now it waits for the running evaluation (the full suite's flaky
    ``test_cheap_refusals_using_up_the_bound_cannot_hide_a_password_attack``)."""
    for _ in range(5):
        failed_login(services, "admin", "203.0.113.9", Reason.WRONG_PASSWORD)
    await services.audit.flush()
    engine = services.alerts
    storing, release = asyncio.Event(), asyncio.Event()
    fire = engine._fire

    async def slow_fire(**alert: Any) -> bool:
        storing.set()
        await release.wait()
        return await fire(**alert)

    monkeypatch.setattr(engine, "_fire", slow_fire)
    first = asyncio.create_task(engine.evaluate_new_events())
    await asyncio.wait_for(storing.wait(), 5)
    second = asyncio.create_task(engine.evaluate_new_events())
    # Before, it found nothing new after one read and returned 0 at once.
    done, _ = await asyncio.wait({second}, timeout=1)
    assert not done  # it waits for the first, which has the records
    release.set()
    assert await asyncio.wait_for(first, 5) == 1
    assert await asyncio.wait_for(second, 5) == 0
    assert [(a.subject, a.count) for a in await fired(services, PER_ACCOUNT)] == [
        ("account:admin", 5)
    ]
