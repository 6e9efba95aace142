"""Repeated refusals in the audit trail (``services.audit.aggregation``): the first ones of
a minute per (event type, reason, client network, key) are records of their own, the
rest one summary record with their count once the minute is over or at shutdown; a
process-wide bound per minute holds against rotating addresses; the alert rules count
a summary by its count; a refusal summarized leaves no usage row; long paths and user
agents are cut."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from authgate.app import create_app
from authgate.container import Services
from authgate.security import keys
from authgate.services.alerts.rules import RuleSpec
from authgate.services.api_key_views import KeySpec
from authgate.services.audit.events import TRUNCATED
from authgate.services.user_fields import NewUser
from authgate.settings import Settings
from authgate.storage.models import ApiKeyUsage, AuditEvent, FiredAlert
from tests.conftest import ADMIN_PASSWORD, FakeClock, Harness, test_settings

PROTECTED = "/api/account"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Records are written only when a test flushes (or at shutdown)."""
    return test_settings(
        tmp_path / "data",
        database_url=database_url,
        audit_flush_interval_seconds=60,
        audit_refusals_per_minute=10,  # the default is 100: small figures, same logic
    )


def bounded_settings(tmp_path: Path, database_url: str, **bounds: int) -> Settings:
    """Settings whose records are written only when a test flushes, with ``bounds``."""
    return test_settings(
        tmp_path / "data", database_url=database_url, audit_flush_interval_seconds=60, **bounds
    )


async def stored(services: Services, event_type: str) -> list[AuditEvent]:
    """Every record of ``event_type``, in chain order."""
    async with services.db.session() as session:
        query = select(AuditEvent).where(AuditEvent.event_type == event_type)
        return list(await session.scalars(query.order_by(AuditEvent.id)))


def aggregate(event: AuditEvent) -> dict[str, Any] | None:
    details = json.loads(event.details) if event.details else {}
    found: dict[str, Any] | None = details.get("aggregate")
    return found


def represented(events: list[AuditEvent]) -> int:
    """How many refusals ``events`` stand for: one each, a summary its count."""
    return sum((aggregate(event) or {"count": 1})["count"] for event in events)


async def fired(services: Services, rule_name: str) -> list[tuple[str, int]]:
    """The (subject, count) of each alert the rule named ``rule_name`` fired."""
    async with services.db.session() as session:
        query = select(FiredAlert).where(FiredAlert.rule_name == rule_name)
        return [(alert.subject, alert.count) for alert in await session.scalars(query)]


async def minute_over(harness: Harness) -> None:
    """Let the fake clock leave the minute, then flush: its summaries are written."""
    harness.clock.advance(seconds=60)
    await harness.services.audit.flush()


async def test_repeated_refusals_from_one_address_are_one_summary_per_minute(
    harness: Harness,
) -> None:
    """25 requests without credentials from one address in one minute: 10 records of
    their own at once; when the minute is over, one summary of the other 15, with the
    address, the first and last time and a few paths. Nothing is lost: 25 in all."""
    for number in range(25):
        response = await harness.client.get(f"/api/users/probe-{number}")
        assert response.status_code == 401
    await harness.services.audit.flush()
    assert len(await stored(harness.services, "CREDENTIALS_MISSING")) == 10
    await minute_over(harness)
    events = await stored(harness.services, "CREDENTIALS_MISSING")
    assert len(events) == 11
    summary = events[-1]
    assert [aggregate(event) is None for event in events] == [True] * 10 + [False]
    counted = aggregate(summary)
    assert counted is not None
    assert counted["count"] == 15
    assert counted["scope"] == "network"
    assert counted["paths"] == [f"/api/users/probe-{n}" for n in range(10, 15)]
    assert (summary.client_ip, summary.reason, summary.outcome) == (
        "127.0.0.1",
        "credentials_missing",
        "failure",
    )
    assert summary.request_path is None  # the paths differed: examples only
    assert represented(events) == 25
    assert (await harness.services.audit.verify()).intact


async def test_each_minute_starts_again_with_records_of_their_own(harness: Harness) -> None:
    """12 refusals in each of two minutes: 10 + a summary of 2, twice."""
    for _minute in range(2):
        for _ in range(12):
            assert (await harness.client.get(PROTECTED)).status_code == 401
        harness.clock.advance(seconds=60)
    await harness.services.audit.flush()
    events = await stored(harness.services, "CREDENTIALS_MISSING")
    counts = [(aggregate(event) or {}).get("count") for event in events]
    assert counts == [None] * 10 + [2] + [None] * 10 + [2]


async def test_an_ipv6_64_is_one_client_network(harness: Harness) -> None:
    """15 addresses of one IPv6 /64 count as one client: 10 records, then a summary
    naming the /64 and a few of its addresses."""
    for host in range(1, 16):
        async with harness.client_from(f"2001:db8:1:2::{host:x}") as client:
            assert (await client.get(PROTECTED)).status_code == 401
    await minute_over(harness)
    events = await stored(harness.services, "CREDENTIALS_MISSING")
    assert len(events) == 11
    counted = aggregate(events[-1])
    assert counted is not None
    assert counted["count"] == 5
    assert events[-1].client_ip == "2001:db8:1:2::/64"
    assert counted["addresses"] == [f"2001:db8:1:2::{host:x}" for host in range(11, 16)]


async def test_rotating_addresses_are_bounded_by_the_process_total(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """With at most 5 records of their own a minute, 30 refusals from 30 addresses are
    5 records and one summary of 25 per (type, reason), whatever the addresses."""
    bounded = bounded_settings(tmp_path, database_url, audit_refusals_per_minute_total=5)
    async with serving(create_app(bounded, clock=clock)) as (app, services):
        for host in range(1, 31):
            async with peer(app, f"198.51.100.{host}") as client:
                assert (await client.get(PROTECTED)).status_code == 401
        clock.advance(seconds=60)
        await services.audit.flush()
        events = await stored(services, "CREDENTIALS_MISSING")
        assert len(events) == 6
        assert [event.client_ip for event in events[:5]] == [
            f"198.51.100.{host}" for host in range(1, 6)
        ]
        counted = aggregate(events[-1])
        assert counted is not None
        assert (counted["count"], counted["scope"]) == (25, "any address")
        assert events[-1].client_ip is None
        assert counted["addresses"] == [f"198.51.100.{host}" for host in range(6, 11)]


async def test_cheap_refusals_using_up_the_bound_cannot_hide_a_password_attack(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """The diff review's attack: refusals that cost nothing (no credentials) use up the
    process-wide bound, then wrong passwords for admin from another address. Those were
    checked, so they stay records with the account and the address (before: one
    address-less summary, and no alert)."""
    bounded = bounded_settings(
        tmp_path, database_url, audit_refusals_per_minute=10, audit_refusals_per_minute_total=20
    )
    async with serving(create_app(bounded, clock=clock)) as (app, services):
        await services.users.ensure_initial_admin(ADMIN_PASSWORD)
        await services.alert_rules.create(
            RuleSpec(
                name="Five for one account", kind="failed_logins_per_account", threshold=5,
                window_seconds=600,
            )
        )  # fmt: skip
        for host in range(1, 31):  # 20 records of their own and one summary of 10
            async with peer(app, f"198.51.100.{host}") as client:
                assert (await client.get(PROTECTED)).status_code == 401
        async with peer(app, "203.0.113.2") as attacker:
            for _ in range(5):
                response = await attacker.post(
                    "/api/authenticate", json={"username": "admin", "password": "wrong-guess"}
                )
                assert response.status_code == 401, response.text
        clock.advance(seconds=60)
        await services.audit.flush()
        failures = await stored(services, "AUTH_FAILURE")
        assert [(e.actor_login, e.client_ip, aggregate(e)) for e in failures] == [
            ("admin", "203.0.113.2", None)
        ] * 5
        await services.alerts.evaluate_new_events()
        assert await fired(services, "Five for one account") == [("account:admin", 5)]


async def test_refusals_still_counted_are_written_at_shutdown(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop within the minute writes its summary: 15 refusals, 10 records and one
    summary of 5 after the restart."""
    app = create_app(settings, clock=clock)

    async def until_stopped(stop: asyncio.Event) -> None:
        await stop.wait()  # no timed flush: only the one at shutdown

    monkeypatch.setattr(app.state.services.audit, "run", until_stopped)
    async with serving(app) as (_, services):
        async with peer(app, "203.0.113.50") as client:
            for _ in range(15):
                assert (await client.get(PROTECTED)).status_code == 401
        assert services.audit.summarized == 5
    async with serving(create_app(settings, clock=clock)) as (_, services):
        events = await stored(services, "CREDENTIALS_MISSING")
        assert [(aggregate(event) or {}).get("count") for event in events] == [None] * 10 + [5]
        assert (await services.audit.verify()).intact


@pytest.mark.parametrize(
    ("address", "subject"),
    [
        ("198.51.100.77", "ip:198.51.100.77"),
        # An IPv6 address's count is its /64's (the diff review: a summary counted as one).
        ("2001:db8:5:6::1", "ip:2001:db8:5:6::/64"),
    ],
)
async def test_an_alert_rule_counts_a_summary_by_its_count(
    harness: Harness, address: str, subject: str
) -> None:
    """30 failed logins from one address (30 usernames) are 21 records (10 unknown
    users, 10 refused while the address is blocked, one summary of 10 more): a rule for
    30 failed logins from one address fires, with the count 30."""
    await harness.services.alert_rules.create(
        RuleSpec(
            name="Thirty failed logins", kind="failed_logins_per_ip", threshold=30,
            window_seconds=600,
        )
    )  # fmt: skip
    async with harness.client_from(address) as attacker:
        for number in range(30):
            response = await attacker.post(
                "/api/authenticate", json={"username": f"guess{number}", "password": "guess"}
            )
            assert response.status_code in (401, 423), response.text
    await minute_over(harness)
    events = await stored(harness.services, "AUTH_FAILURE")
    assert (len(events), represented(events)) == (21, 30)
    await harness.services.alerts.evaluate_new_events()
    assert await fired(harness.services, "Thirty failed logins") == [(subject, 30)]


async def test_wrong_secrets_for_a_known_key_are_summarized_with_the_key(
    harness: Harness,
) -> None:
    """15 wrong secrets for a real key id from one address: 10 audit records and 10
    usage rows; the other 5 are one summary that names the key, and no usage rows."""
    await harness.create_user("admin", ADMIN_PASSWORD, admin=True)
    token = await harness.login("admin", ADMIN_PASSWORD)
    created = await harness.create_key(token)
    wrong = keys.generate_secret_for(created["key"][4:16]).plaintext
    for _ in range(15):
        response = await harness.client.get(PROTECTED, headers={"Utm-Api-Key": wrong})
        assert response.status_code == 401
    await minute_over(harness)
    await harness.services.usage.flush()
    events = [
        event
        for event in await stored(harness.services, "API_KEY_ACCESS_FAILURE")
        if event.reason == "wrong_secret"
    ]
    assert len(events) == 11
    assert {event.api_key_id for event in events} == {events[0].api_key_id}
    assert events[0].api_key_id is not None
    assert (aggregate(events[-1]) or {}).get("count") == 5
    async with harness.services.db.session() as session:
        usage_rows = await session.scalar(
            select(func.count())
            .select_from(ApiKeyUsage)
            .where(ApiKeyUsage.failure_reason == "wrong_secret")
        )
    assert usage_rows == 10


async def test_long_paths_and_user_agents_are_cut_and_marked(harness: Harness) -> None:
    """A 2,041-character path and a 512-character user agent are stored as 512 and 256
    characters, each ending with the truncation mark."""
    path = "/api/users/" + "x" * 2030
    response = await harness.client.get(path, headers={"User-Agent": "u" * 512})
    assert response.status_code == 401
    await harness.services.audit.flush()
    (event,) = await stored(harness.services, "CREDENTIALS_MISSING")
    assert event.request_path is not None
    assert event.user_agent is not None
    assert len(event.request_path) == 512
    assert event.request_path.startswith("/api/users/xxx")
    assert event.request_path.endswith(TRUNCATED)
    assert len(event.user_agent) == 256
    assert event.user_agent.endswith(TRUNCATED)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[tuple[FastAPI, Services]]:
    async with app.router.lifespan_context(app):
        yield app, app.state.services


@asynccontextmanager
async def peer(app: FastAPI, address: str) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app, client=(address, 50000))
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_cheap_refusals_using_up_the_bound_cannot_strip_a_key_from_its_refusals(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> None:
    """The attack review: refusals that cost nothing use up the process-wide bound, then
    a victim's IP-restricted key and the attacker's own are refused from outside their
    allow lists. The summary past the bound was one per (type, reason): it named neither
    key, and the per-key alert rule could not count it. Now one per key."""
    bounded = bounded_settings(tmp_path, database_url, audit_refusals_per_minute_total=5)
    async with serving(create_app(bounded, clock=clock)) as (app, services):
        harness_keys = []  # (owner id, key)
        for owner in ("victim", "attacker"):
            user = await services.users.create_user(
                NewUser(login=owner, email=f"{owner}@example.com", password=ADMIN_PASSWORD)
            )
            created = await services.api_keys.create(
                user.id,
                KeySpec(
                    name=f"{owner} key",
                    allowed_networks=["10.9.9.9"],
                    expires_at=clock() + timedelta(days=30),
                ),
            )
            harness_keys.append((user.id, created))
        for host in range(1, 11):  # 5 records of their own, then the bound is used up
            async with peer(app, f"198.51.100.{host}") as client:
                assert (await client.get(PROTECTED)).status_code == 401
        for number, (_, created) in enumerate(harness_keys):
            async with peer(app, f"192.0.2.{10 + number}") as client:
                for _ in range(2):
                    response = await client.get(
                        PROTECTED, headers={"Authorization": f"Bearer {created.plaintext}"}
                    )
                    assert response.status_code == 403, response.text
        clock.advance(seconds=60)
        await services.audit.flush()
        refused = await stored(services, "API_KEY_ACCESS_FAILURE")
        assert sorted(
            (e.api_key_id, e.reason, (aggregate(e) or {}).get("count")) for e in refused
        ) == sorted((created.view.key_pk, "ip_not_allowed", 2) for _, created in harness_keys)
