"""Accepted API-key requests are aggregated, not logged one by one: per-minute rollups
exact after a flush, a bounded sample of raw requests, and only the security events of
accepted requests in the audit trail (first use, first use from an address, use after
inactivity), each once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any

import httpx2
import pytest
from sqlalchemy import select, text

from authgate.app import create_app
from authgate.container import Services
from authgate.services.gate import MAX_ADDRESSES_PER_KEY
from authgate.services.usage import UsageConfig, UsageEvent, UsageRecorder
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import ApiKey
from authgate.storage.paging import PageRequest
from tests.api.test_api_keys import KEYS, key_header
from tests.conftest import USER_PASSWORD, Harness, bearer

MINUTE = datetime(2026, 12, 4, 10, 15, tzinfo=UTC)


def use(key_id: int, at: datetime, *, status: int = 200, ip: str = "192.0.2.1") -> UsageEvent:
    return UsageEvent(
        api_key_id=key_id,
        api_key_name=f"key-{key_id}",
        user_id=1,
        occurred_at=at,
        method="GET",
        path=f"/api/things/{at.second}",
        status=status,
        client_ip=ip_address(ip),
        user_agent="test",
        latency_ms=1.0,
        failure_reason=None,
    )


def recorder(harness: Harness, *, sample_size: int = 3) -> UsageRecorder:
    return UsageRecorder(
        db=harness.services.db,
        clock=harness.clock,
        config=UsageConfig(flush_interval_seconds=60, retention_days=1, sample_per_key=sample_size),
    )


async def rollups(harness: Harness, key_id: int) -> list[tuple[Any, ...]]:
    async with harness.services.db.session() as session:
        result = await session.execute(
            text(
                "SELECT requests, status_2xx, status_3xx, status_4xx, status_5xx, distinct_ips, "
                "last_ip, last_path FROM api_key_usage_minutes WHERE api_key_id = :key "
                "ORDER BY minute"
            ),
            {"key": key_id},
        )
        return [tuple(row) for row in result.all()]


async def sampled_paths(harness: Harness, key_id: int) -> list[str]:
    async with harness.services.db.session() as session:
        result = await session.execute(
            text("SELECT path FROM api_key_usage WHERE api_key_id = :key ORDER BY id"),
            {"key": key_id},
        )
        return [row[0] for row in result.all()]


async def test_counts_are_exact_after_a_flush_and_add_up_across_flushes_and_workers(
    harness: Harness,
) -> None:
    """Two "workers" (recorders) and two flushes for the same key and minute add up to one
    row with exact counts by status class; another minute is another row."""
    first, second = recorder(harness), recorder(harness)
    for second_of_minute, status in enumerate([200, 201, 302, 404, 500, 200]):
        first.record(use(7, MINUTE + timedelta(seconds=second_of_minute), status=status))
    second.record(use(7, MINUTE + timedelta(seconds=30), ip="192.0.2.2"))
    await first.flush()
    await second.flush()
    first.record(use(7, MINUTE + timedelta(seconds=40), ip="192.0.2.3"))
    first.record(use(7, MINUTE + timedelta(minutes=1, seconds=5)))
    await first.flush()

    assert await rollups(harness, 7) == [
        (8, 5, 1, 1, 1, 2, "192.0.2.3", "/api/things/40"),
        (1, 1, 0, 0, 0, 1, "192.0.2.1", "/api/things/5"),
    ]


async def test_the_sample_keeps_only_the_most_recent_raw_requests_per_key(
    harness: Harness,
) -> None:
    usage = recorder(harness, sample_size=3)
    for second_of_minute in range(5):
        usage.record(use(8, MINUTE + timedelta(seconds=second_of_minute)))
    await usage.flush()
    assert await sampled_paths(harness, 8) == ["/api/things/2", "/api/things/3", "/api/things/4"]
    for second_of_minute in range(10, 12):
        usage.record(use(8, MINUTE + timedelta(seconds=second_of_minute)))
    await usage.flush()
    assert await sampled_paths(harness, 8) == ["/api/things/4", "/api/things/10", "/api/things/11"]
    assert (await rollups(harness, 8))[0][0] == 7


async def test_a_failed_flush_keeps_the_counts_for_the_next_one(harness: Harness) -> None:
    """Nothing accepted is lost when a write fails: the next flush writes it all, the
    requests counted while the failing write was under way and after it included."""
    usage = recorder(harness)
    usage.record(use(9, MINUTE))

    async def failing(*_args: Any) -> None:
        usage.record(use(9, MINUTE + timedelta(seconds=2)))  # a request meanwhile
        raise ConnectionError("database down")

    working = usage._write  # a failure injected for the test
    usage._write = failing  # type: ignore[method-assign, assignment]
    with pytest.raises(ConnectionError):
        await usage.flush()
    usage._write = working  # type: ignore[method-assign]
    usage.record(use(9, MINUTE + timedelta(seconds=1)))
    usage.record(use(9, MINUTE + timedelta(seconds=3)))
    await usage.flush()
    assert (await rollups(harness, 9))[0][0] == 4


async def test_a_use_check_that_fails_does_not_make_the_flush_write_again(
    harness: Harness,
) -> None:
    """A check called after the flush's commit that raises (a bug) is logged; the other
    checks still run, and the flush counts as done: its rows are not written twice."""
    usage = recorder(harness)
    usage.record(use(10, MINUTE))
    seen: list[datetime | None] = []

    def failing(_stored: datetime | None) -> None:
        raise RuntimeError("a bug")

    usage.confirm(10, failing)
    usage.confirm(10, seen.append)
    await usage.flush()
    await usage.flush()
    assert seen == [None]
    assert (await rollups(harness, 10))[0][0] == 1


async def test_accepted_requests_are_audited_only_as_security_events_each_once(
    harness: Harness, user_token: str
) -> None:
    """Many accepted requests leave: one first use, one first use from a second address,
    one use after an idle hour (with its length); refusals each their own record; the
    rollup counts every request; the usage endpoint still answers in UTMStack's shape."""
    created = await harness.create_key(user_token, allowedIp=["127.0.0.1", "198.51.100.9"])
    headers = key_header(created["key"])
    for _ in range(5):
        assert (await harness.client.get("/api/account", headers=headers)).status_code == 200
    async with harness.client_from("198.51.100.9") as other:
        for _ in range(3):
            assert (await other.get("/api/account", headers=headers)).status_code == 200
    async with harness.client_from("203.0.113.5") as outsider:
        assert (await outsider.get("/api/account", headers=headers)).status_code == 403
    harness.clock.advance(hours=2)
    assert (await harness.client.get("/api/account", headers=headers)).status_code == 200
    # The usage log first: its flush confirms the use after inactivity (for the cluster).
    await harness.services.usage.flush()
    await harness.services.audit.flush()

    page = await harness.services.audit.search(
        AuditFilter(event_types=("API_KEY_ACCESS_SUCCESS", "API_KEY_ACCESS_FAILURE")),
        PageRequest(size=100),
    )
    events = sorted(page.items, key=lambda entry: entry.id)
    # The refusal is recorded at once; an accepted key's security events once the usage
    # log's flush has confirmed them against the stored last use (``notable_use``), in
    # the order of the key's requests.
    assert [(e.event_type, e.reason, e.client_ip) for e in events] == [
        ("API_KEY_ACCESS_FAILURE", "ip_not_allowed", "203.0.113.5"),
        ("API_KEY_ACCESS_SUCCESS", "first_use", "127.0.0.1"),
        ("API_KEY_ACCESS_SUCCESS", "new_address", "198.51.100.9"),
        ("API_KEY_ACCESS_SUCCESS", "after_inactivity", "127.0.0.1"),
    ]
    assert events[-1].details == {"idleSeconds": 7200}

    async with harness.services.db.session() as session:
        key_pk = await session.scalar(
            text("SELECT id FROM api_keys WHERE public_id = :id"), {"id": created["id"]}
        )
    counts = [row[0] for row in await rollups(harness, key_pk)]
    assert sum(counts) == 9
    token = await harness.login("alice", USER_PASSWORD)  # the first one expired meanwhile
    usage = await harness.client.get(
        f"{KEYS}/usage", params={"apiKeyId": created["id"]}, headers=bearer(token)
    )
    assert usage.status_code == 200
    assert usage.headers["X-Total-Count"] == "10"  # 9 sampled successes and the refusal


async def test_the_sample_keeps_the_most_recent_requests_whatever_order_flushes_land_in(
    harness: Harness,
) -> None:
    """Two workers: the one that saw the older requests flushes last. The sample keeps
    the most recent requests by when they happened, not the rows written last."""
    older, newer = recorder(harness, sample_size=3), recorder(harness, sample_size=3)
    for second_of_minute in (1, 2, 3):
        older.record(use(10, MINUTE + timedelta(seconds=second_of_minute)))
    for second_of_minute in (10, 11, 12):
        newer.record(use(10, MINUTE + timedelta(seconds=second_of_minute)))
    await newer.flush()
    await older.flush()
    assert sorted(await sampled_paths(harness, 10)) == [
        "/api/things/10",
        "/api/things/11",
        "/api/things/12",
    ]


async def test_a_key_used_from_very_many_addresses_is_not_audited_on_every_request(
    harness: Harness, user_token: str
) -> None:
    """600 requests cycling through 300 addresses: a first use, a new address each up to
    the bound of addresses remembered per key, then one record saying the key is used
    from more than that many, and no more (it was 599 new_address records: the memory was
    cleared and every address was new again). After an hour, new addresses count again."""
    created = await harness.create_key(user_token, allowedIp=["10.0.0.0/16"])
    headers = key_header(created["key"])
    addresses = [f"10.0.{index // 200}.{index % 200 + 1}" for index in range(300)]
    for address in addresses * 2:
        await accepted_from(harness, address, headers)
    events = await success_events(harness)
    reasons = [event.reason for event in events]
    assert len(events) <= MAX_ADDRESSES_PER_KEY + 1
    assert reasons.count("many_addresses") == 1
    many = next(event for event in events if event.reason == "many_addresses")
    assert many.details == {"moreThan": MAX_ADDRESSES_PER_KEY, "quietSeconds": 3600}

    harness.clock.advance(minutes=61)
    for address in ("10.0.1.1", "10.0.1.2"):  # 10.0.1.1 within the hour, 10.0.1.2 not
        await accepted_from(harness, address, headers)
    later = [event.reason for event in await success_events(harness)][len(events) :]
    assert later == ["after_inactivity", "new_address"]  # in the order of the requests


async def test_many_addresses_in_one_ipv6_64_do_not_silence_new_networks(
    harness: Harness, user_token: str
) -> None:
    """The attack review: a stolen key used from 257 addresses of one /64 (cheap to
    have) reached the bound of addresses per key, and the key's new addresses then went
    unrecorded for an hour, from anywhere. A /64 is one network now: the key's uses from
    three other networks are each recorded, and the key_new_ip rule fires for each."""
    created = await harness.create_key(user_token, allowedIp=["0.0.0.0/0", "::/0"])
    headers = key_header(created["key"])
    for host in range(1, 258):
        await accepted_from(harness, f"2001:db8:1:2::{host:x}", headers)
    for address in ("192.0.2.77", "203.0.113.200", "2001:db8:9::1"):
        await accepted_from(harness, address, headers)
    events = await success_events(harness)
    assert [(event.reason, event.client_ip) for event in events] == [
        ("first_use", "2001:db8:1:2::1"),
        ("new_address", "192.0.2.77"),
        ("new_address", "203.0.113.200"),
        ("new_address", "2001:db8:9::1"),
    ]
    await harness.services.alerts.evaluate_new_events()
    async with harness.services.db.session() as session:
        subjects = (
            await session.scalars(text("SELECT subject FROM fired_alerts ORDER BY id"))
        ).all()
    assert [subject.rsplit("|", 1)[-1] for subject in subjects if "ip:" in subject] == [
        "ip:192.0.2.77",
        "ip:203.0.113.200",
        "ip:2001:db8:9::/64",
    ]


async def test_past_the_bound_a_new_network_is_still_recorded_once_a_minute(
    harness: Harness, user_token: str
) -> None:
    """A key driven past the bound of networks (257 IPv4 addresses): one many_addresses
    record, then for the hour after, one new network a minute is still recorded (it was
    none for an hour), and the others only count in the usage rollups."""
    created = await harness.create_key(user_token, allowedIp=["0.0.0.0/0"])
    headers = key_header(created["key"])
    for index in range(MAX_ADDRESSES_PER_KEY + 1):
        await accepted_from(harness, f"10.1.{index // 200}.{index % 200 + 1}", headers)
    before = len(await success_events(harness))
    for minute in range(3):
        harness.clock.advance(seconds=61)
        for host in (1, 2):
            await accepted_from(harness, f"198.51.{100 + minute}.{host}", headers)
    later = [(e.reason, e.client_ip) for e in (await success_events(harness))[before:]]
    assert later == [("new_address", f"198.51.{100 + minute}.1") for minute in range(3)]


async def accepted_from(harness: Harness, address: str, headers: dict[str, str]) -> None:
    """One request with the key from ``address``, accepted."""
    async with harness.client_from(address) as client:
        assert (await client.get("/api/account", headers=headers)).status_code == 200


async def success_events(harness: Harness) -> list[Any]:
    await harness.services.usage.flush()  # confirms the key's notable uses
    await harness.services.audit.flush()
    page = await harness.services.audit.search(
        AuditFilter(event_types=("API_KEY_ACCESS_SUCCESS",)), PageRequest(size=1000)
    )
    return sorted(page.items, key=lambda entry: entry.id)


@asynccontextmanager
async def second_node(
    harness: Harness, *, usage_flush_seconds: float | None = None
) -> AsyncIterator[tuple[Services, httpx2.AsyncClient]]:
    """A second node on the harness's database and clock (its usage log flushed every
    ``usage_flush_seconds`` if given), and a client whose requests come to it from
    198.51.100.9."""
    settings = harness.services.settings
    if usage_flush_seconds is not None:
        usage = settings.usage.model_copy(update={"flush_interval_seconds": usage_flush_seconds})
        settings = settings.model_copy(update={"usage": usage})
    other = create_app(settings, clock=harness.clock)
    async with other.router.lifespan_context(other):
        transport = httpx2.ASGITransport(app=other, client=("198.51.100.9", 50000))
        async with httpx2.AsyncClient(transport=transport, base_url="http://second") as client:
            yield other.state.services, client


async def test_a_key_in_use_on_another_node_is_not_reported_idle(
    harness: Harness, user_token: str
) -> None:
    """Two nodes on one database: the key is used once on the first, then once a minute
    for 70 minutes on the second, then on the first again. The first node saw no use for
    70 minutes, the cluster did: no after_inactivity (it was recorded with idleSeconds
    4200 although last_used_at was a minute old). After two idle hours the second node
    records it, with the idle time from the stored last use and the request's details."""
    created = await harness.create_key(user_token, allowedIp=["127.0.0.1", "198.51.100.9"])
    headers = key_header(created["key"])
    first = harness.services
    async with second_node(harness) as (second, client):
        assert (await harness.client.get("/api/account", headers=headers)).status_code == 200
        await first.usage.flush()
        for _ in range(70):
            harness.clock.advance(minutes=1)
            assert (await client.get("/api/account", headers=headers)).status_code == 200
            await second.usage.flush()
        harness.clock.advance(seconds=1)
        assert (await harness.client.get("/api/account", headers=headers)).status_code == 200
        await first.usage.flush()
        assert "after_inactivity" not in [e.reason for e in await success_events(harness)]

        harness.clock.advance(hours=2)
        idle_request_at = harness.clock()
        response = await client.get(
            "/api/account", headers={**headers, "User-Agent": "nightly-job/1.0"}
        )
        assert response.status_code == 200
        await second.usage.flush()
        await second.audit.flush()
    idle = [e for e in await success_events(harness) if e.reason == "after_inactivity"]
    assert [(e.details, e.client_ip, e.user_agent, e.request_path) for e in idle] == [
        ({"idleSeconds": 7200}, "198.51.100.9", "nightly-job/1.0", "/api/account")
    ]
    assert (idle[0].actor_login, idle[0].api_key_name) == ("alice", "ci-deploy")
    assert idle[0].occurred_at == idle_request_at


async def test_a_key_first_used_on_two_nodes_has_one_first_use(
    harness: Harness, user_token: str
) -> None:
    """Two nodes (or workers) on one database each see a key's first request before
    either wrote its last use: one first_use, from the node whose flush came first; the
    other node's first sight of the key is a use from an address new to it (it was a
    second first_use, recorded by each process). The key_new_ip rule judges that
    address against the whole trail."""
    created = await harness.create_key(user_token, allowedIp=["127.0.0.1", "198.51.100.9"])
    headers = key_header(created["key"])
    first = harness.services
    # The second node writes only when told: its flush must not come before the first's.
    async with second_node(harness, usage_flush_seconds=60) as (second, client):
        assert (await harness.client.get("/api/account", headers=headers)).status_code == 200
        harness.clock.advance(seconds=1)
        assert (await client.get("/api/account", headers=headers)).status_code == 200
        await first.usage.flush()
        await first.audit.flush()
        await second.usage.flush()
        await second.audit.flush()
    events = await success_events(harness)
    assert [(e.reason, e.client_ip) for e in events] == [
        ("first_use", "127.0.0.1"),
        ("new_address", "198.51.100.9"),
    ]


async def test_a_new_address_after_an_idle_time_the_cluster_does_not_confirm_is_recorded(
    harness: Harness, user_token: str
) -> None:
    """The first node saw the key 70 minutes ago, the second once a minute since; then
    the first node sees it from an address new to it. Not idle for the cluster, so no
    after_inactivity; the use is still recorded as from a new address (it vanished with
    the idle verdict, so the key_new_ip rule never saw that address: the diff review)."""
    allowed = ["127.0.0.1", "198.51.100.9", "203.0.113.66"]
    created = await harness.create_key(user_token, allowedIp=allowed)
    headers = key_header(created["key"])
    first = harness.services
    async with second_node(harness) as (second, client):
        assert (await harness.client.get("/api/account", headers=headers)).status_code == 200
        await first.usage.flush()
        await first.audit.flush()  # its first use before the second node's records
        for _ in range(70):
            harness.clock.advance(minutes=1)
            assert (await client.get("/api/account", headers=headers)).status_code == 200
            await second.usage.flush()
        await second.audit.flush()
        async with harness.client_from("203.0.113.66") as newcomer:
            for _ in range(3):
                assert (await newcomer.get("/api/account", headers=headers)).status_code == 200
    events = await success_events(harness)
    assert [(e.reason, e.client_ip) for e in events] == [
        ("first_use", "127.0.0.1"),
        ("new_address", "198.51.100.9"),
        ("new_address", "203.0.113.66"),
    ]


async def test_use_checks_stay_bounded_across_failed_flushes(harness: Harness) -> None:
    """Checks waiting for a flush are bounded by ``max_buffered`` also when flushes fail
    and give theirs back (each failed flush added up to the bound again): the newest
    beyond it are dropped and counted; the rest are called once the database answers."""
    usage = UsageRecorder(
        db=harness.services.db,
        clock=harness.clock,
        config=UsageConfig(flush_interval_seconds=60, retention_days=1),
        max_buffered=10,
    )
    called: list[int] = []

    def check(number: int) -> Callable[[datetime | None], None]:
        return lambda _stored: called.append(number)

    number = 0

    def requests_meanwhile() -> None:
        nonlocal number
        for _ in range(10):
            usage.confirm(11, check(number))
            number += 1

    async def failing(*_args: Any) -> None:
        requests_meanwhile()  # while the write is under way: the taken ones are not counted
        raise ConnectionError("database down")

    requests_meanwhile()
    working = usage._write  # a failure injected for the test
    usage._write = failing  # type: ignore[method-assign, assignment]
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await usage.flush()
        assert len(usage._use_checks) == 10
    usage._write = working  # type: ignore[method-assign]
    await usage.flush()

    assert called == list(range(10))  # the oldest; the 30 newer ones were dropped, counted
    assert usage.dropped == 30


async def test_checks_for_more_keys_than_one_statement_may_name_are_read_in_chunks(
    harness: Harness,
) -> None:
    """33,000 keys with a check in one flush (a fresh worker's first request of each, or
    an outage's backlog): their stored last uses are read in bounded statements (one
    statement naming them all was refused, past 32,767 parameters, and the usage log
    stopped for good, its failure taken for the database being down)."""
    usage = recorder(harness)
    called: list[datetime | None] = []
    for key_pk in range(1, 33_001):
        usage.confirm(key_pk, called.append)
    await usage.flush()
    assert len(called) == 33_000
    assert set(called) == {None}


async def stored_last_uses(harness: Harness) -> dict[int, tuple[datetime, str | None]]:
    async with harness.services.db.session() as session:
        result = await session.execute(
            select(ApiKey.id, ApiKey.last_used_at, ApiKey.last_used_ip).order_by(ApiKey.id)
        )
        return {row.id: (row.last_used_at, row.last_used_ip) for row in result.all()}


async def test_each_keys_last_use_moves_forward_only_whichever_flush_lands_last(
    harness: Harness, user_token: str
) -> None:
    """One flush writes the last use of every key it saw (one statement for all); a
    worker's flush of older uses landing after a newer one's moves no key back."""
    await harness.create_key(user_token, name="first")
    await harness.create_key(user_token, name="second")
    ids = sorted(await stored_last_uses(harness))
    assert len(ids) == 2
    newer, older = recorder(harness), recorder(harness)
    newer.record(use(ids[0], MINUTE + timedelta(seconds=50), ip="192.0.2.50"))
    newer.record(use(ids[1], MINUTE + timedelta(seconds=20), ip="192.0.2.20"))
    older.record(use(ids[0], MINUTE + timedelta(seconds=10), ip="192.0.2.10"))
    older.record(use(ids[1], MINUTE + timedelta(seconds=30), ip="192.0.2.30"))
    await newer.flush()
    await older.flush()
    assert await stored_last_uses(harness) == {
        ids[0]: (MINUTE + timedelta(seconds=50), "192.0.2.50"),
        ids[1]: (MINUTE + timedelta(seconds=30), "192.0.2.30"),
    }
