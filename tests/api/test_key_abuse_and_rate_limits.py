"""Protection of API-key authentication through the HTTP API: blocking addresses that
try many bad keys (on every instance, through the change feed), the hot path's lack of
database round trips, per-key rate limits with the IETF RateLimit headers, and state
shared through Redis by several instances."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import event, text, update

from authgate.app import create_app
from authgate.exceptions import AddressBlocked, Throttled
from authgate.reasons import Reason
from authgate.security import keys
from authgate.services.address_block import AddressBlocker
from authgate.services.api_key_views import KeySpec
from authgate.services.changes import ChangeFeed, ChangeKind
from authgate.services.user_fields import NewUser
from authgate.settings import Settings
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.models import ApiKey
from authgate.storage.paging import PageRequest
from tests.conftest import USER_PASSWORD, FakeClock, test_settings

# Answers from the principal alone (GET /api/account reads the user from the database).
WHO_AM_I = "/api/authenticate"
WAIT_SECONDS = 30.0  # patience for another instance to learn of a change (loops end on success)

LIMITS: dict[str, Any] = {
    "key_ip_max_failures": 5,
    "key_ip_window_seconds": 60,
    "key_ip_block_seconds": 120,
}


@dataclass
class Node:
    """One running app instance, and HTTP clients arriving from chosen addresses."""

    app: Any
    clock: FakeClock
    stack: AsyncExitStack
    clients: dict[str, httpx2.AsyncClient] = field(default_factory=dict)

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def client(self, address: str) -> httpx2.AsyncClient:
        client = self.clients.get(address)
        if client is None:
            transport = httpx2.ASGITransport(
                app=self.app, client=(address, 50000), raise_app_exceptions=False
            )
            client = await self.stack.enter_async_context(
                httpx2.AsyncClient(transport=transport, base_url="http://testserver")
            )
            self.clients[address] = client
        return client

    async def call(self, key: str, address: str = "127.0.0.1") -> httpx2.Response:
        """GET /api/authenticate with ``key`` in UTMStack's header, from ``address``."""
        return await (await self.client(address)).get(WHO_AM_I, headers={"Utm-Api-Key": key})

    async def login(self, address: str, username: str, password: str) -> httpx2.Response:
        return await (await self.client(address)).post(
            "/api/authenticate", json={"username": username, "password": password}
        )

    async def create_user(self, login: str = "alice") -> int:
        user = await self.services.users.create_user(
            NewUser(login=login, email=f"{login}@example.com", password=USER_PASSWORD)
        )
        return int(user.id)

    async def create_key(self, owner_id: int, name: str, rate_limit: str | None = None) -> Any:
        """A key usable from any address; returns the service's ``CreatedKey``."""
        spec = KeySpec(
            name=name,
            allowed_networks=[],
            expires_at=self.clock() + timedelta(days=30),
            rate_limit=rate_limit,
        )
        return await self.services.api_keys.create(owner_id, spec)

    async def set_rate_limit(self, created: Any, rate_limit: str) -> None:
        spec = KeySpec(
            name=created.view.name,
            allowed_networks=[],
            expires_at=self.clock() + timedelta(days=30),
            rate_limit=rate_limit,
        )
        await self.services.api_keys.replace(None, created.view.key_pk, spec)

    async def audit(self, *event_types: str) -> list[Any]:
        await self.services.audit.flush()
        page = await self.services.audit.search(
            AuditFilter(event_types=event_types), PageRequest(size=500)
        )
        return list(page.items)


@asynccontextmanager
async def running(settings: Settings, clock: FakeClock) -> AsyncIterator[Node]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app), AsyncExitStack() as stack:
        yield Node(app=app, clock=clock, stack=stack)


StartNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start_node(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> AsyncIterator[StartNode]:
    """Starts an instance with ``LIMITS`` plus overrides; every instance of a test shares
    the database and the data dir (so the key pepper)."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Node:
            settings = test_settings(
                tmp_path / "data", database_url=database_url, **{**LIMITS, **overrides}
            )
            return await stack.enter_async_context(running(settings, clock))

        yield start


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    return await start_node()


def bad_checksum(key: str) -> str:
    last = "A" if key[-1] != "A" else "B"
    return key[:-1] + last


def unknown_key() -> str:
    return keys.generate_key().plaintext


def retry_after(response: httpx2.Response) -> int:
    value = response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)


RATE_LIMIT = re.compile(r'"key";r=(\d+);t=(\d+)')


def rate_limit_header(response: httpx2.Response) -> tuple[int, int]:
    """(remaining, seconds until reset) from ``RateLimit``."""
    match = RATE_LIMIT.fullmatch(response.headers["RateLimit"])
    assert match is not None, response.headers["RateLimit"]
    return int(match[1]), int(match[2])


async def clear_of_minute_boundary() -> None:
    """`limits` counts by the wall clock in fixed windows it then slides; requests that
    straddle a minute boundary see fractional counts. Start well inside a minute."""
    into = time.time() % 60
    if into > 55:
        await asyncio.sleep(60 - into + 0.1)


# -- addresses trying many bad keys ---------------------------------------------------------


async def test_invalid_keys_block_the_address_even_for_a_valid_key(node: Node) -> None:
    """key_ip_max_failures refused keys (bad checksum, unknown id) from one address get it
    429 for every key, the valid one included; another address is unaffected; after
    key_ip_block_seconds the address is accepted again."""
    owner = await node.create_user()
    valid = (await node.create_key(owner, "ci")).plaintext
    attacker, bystander = "203.0.113.5", "203.0.113.6"

    for index in range(LIMITS["key_ip_max_failures"] - 1):
        wrong = bad_checksum(valid) if index % 2 else unknown_key()
        response = await node.call(wrong, attacker)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "invalid_api_key"
    assert (await node.call(valid, attacker)).status_code == 200  # one below the threshold

    assert (await node.call(unknown_key(), attacker)).status_code == 401
    blocked = await node.call(valid, attacker)
    assert blocked.status_code == 429, blocked.text
    body = blocked.json()
    assert body["message"] == "Too many invalid API keys from this address"
    assert body["code"] == "too_many_attempts"
    assert blocked.headers["X-UtmStack-error"] == body["message"]
    block = LIMITS["key_ip_block_seconds"]
    assert retry_after(blocked) in (block, block + 1)
    as_bearer = await (await node.client(attacker)).get(
        WHO_AM_I, headers={"Authorization": f"Bearer {valid}"}
    )
    assert as_bearer.status_code == 429

    assert (await node.call(valid, bystander)).status_code == 200

    node.clock.advance(seconds=block - 1)
    assert (await node.call(valid, attacker)).status_code == 429
    node.clock.advance(seconds=2)
    assert (await node.call(valid, attacker)).status_code == 200


async def test_address_block_is_audited(node: Node) -> None:
    """Blocking an address is one IP_BLOCKED event naming the address and duration."""
    owner = await node.create_user()
    valid = (await node.create_key(owner, "ci")).plaintext
    for _ in range(LIMITS["key_ip_max_failures"]):
        await node.call(bad_checksum(valid), "203.0.113.5")
    assert (await node.call(valid, "203.0.113.5")).status_code == 429

    blocks = await node.audit("IP_BLOCKED")
    assert len(blocks) == 1
    (entry,) = blocks
    assert entry.outcome == "failure"
    assert entry.reason == "too_many_invalid_keys"
    assert entry.client_ip == "203.0.113.5"
    assert entry.details == {
        "address": "203.0.113.5",
        "blockedSeconds": LIMITS["key_ip_block_seconds"],
    }
    refusals = [e for e in await node.audit("API_KEY_ACCESS_FAILURE") if e.reason]
    assert {e.reason for e in refusals} >= {"bad_checksum", "ip_blocked_for_keys"}


async def test_a_block_is_audited_once_whichever_processes_see_the_threshold(
    start_node: StartNode,
) -> None:
    """Two processes counting the same address in one throttle store: the one that
    crosses the threshold first blocks and records IP_BLOCKED; the other, which has not
    heard of the block yet and counts past the threshold too, records nothing (it was
    once per process: 26 records for 7 blocks on 2 nodes of 2 workers)."""
    await two_processes_block_once(await start_node())


async def test_a_block_is_audited_once_across_processes_sharing_redis(
    start_node: StartNode, redis_url: str
) -> None:
    """As above, the counts and the claim in Redis."""
    await two_processes_block_once(await start_node(redis_url=redis_url))


async def two_processes_block_once(node: Node) -> None:
    services = node.services

    def blocker() -> AddressBlocker:
        # A process of its own: its own memory of blocks, a change feed nobody polls.
        return AddressBlocker(
            store=services.throttle,
            feed=ChangeFeed(services.db, clock=node.clock),
            limits=services.settings.key_abuse,
            clock=node.clock,
            audit=services.audit,
        )

    first, second = blocker(), blocker()
    attacker = ip_address("203.0.113.9")
    for _ in range(LIMITS["key_ip_max_failures"]):
        await first.failed(attacker)
    await second.failed(attacker)
    await second.failed(attacker)
    now = node.clock().timestamp()
    for process in (first, second):
        with pytest.raises(AddressBlocked):
            process.check(attacker, now)
    assert len(await node.audit("IP_BLOCKED")) == 1

    node.clock.advance(seconds=LIMITS["key_ip_block_seconds"] + 1)
    for _ in range(LIMITS["key_ip_max_failures"]):
        await second.failed(attacker)
    assert len(await node.audit("IP_BLOCKED")) == 2  # a new block, recorded again


async def test_block_reaches_other_instances(start_node: StartNode) -> None:
    """A block decided by one instance reaches a running instance through the change
    feed, and an instance started afterwards loads it."""
    first = await start_node()
    second = await start_node()
    owner = await first.create_user()
    valid = (await first.create_key(owner, "ci")).plaintext
    attacker = "203.0.113.5"
    assert (await second.call(valid, attacker)).status_code == 200

    for _ in range(LIMITS["key_ip_max_failures"]):
        assert (await first.call(unknown_key(), attacker)).status_code == 401
    assert (await first.call(valid, attacker)).status_code == 429

    deadline = time.monotonic() + WAIT_SECONDS
    while (status := (await second.call(valid, attacker)).status_code) == 200:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert status == 429
    assert (await second.call(valid, "203.0.113.6")).status_code == 200

    third = await start_node()
    assert (await third.call(valid, attacker)).status_code == 429
    assert (await third.call(valid, "203.0.113.6")).status_code == 200


async def test_an_ipv6_client_is_blocked_by_its_64(start_node: StartNode) -> None:
    """A new IPv6 address for each bad key does not start afresh: the /64 is counted and
    blocked, as logins are; the next /64 is not. Other instances learn the block through
    the change feed and load it at start, as a /64 too."""
    first = await start_node()
    second = await start_node()
    owner = await first.create_user()
    valid = (await first.create_key(owner, "ci")).plaintext
    for index in range(LIMITS["key_ip_max_failures"]):
        rotated = f"2001:db8:1:3::{index + 1:x}"
        assert (await first.call(unknown_key(), rotated)).status_code == 401
    for neighbour in ("2001:db8:1:3::ffff", "2001:db8:1:3:abcd::1"):
        assert (await first.call(valid, neighbour)).status_code == 429, neighbour
    assert (await first.call(valid, "2001:db8:1:4::1")).status_code == 200

    (entry,) = await first.audit("IP_BLOCKED")
    assert entry.details == {
        "address": "2001:db8:1:3::/64",
        "blockedSeconds": LIMITS["key_ip_block_seconds"],
    }
    deadline = time.monotonic() + WAIT_SECONDS
    while (status := (await second.call(valid, "2001:db8:1:3::77")).status_code) == 200:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert status == 429
    third = await start_node()
    assert (await third.call(valid, "2001:db8:1:3::88")).status_code == 429
    assert (await third.call(valid, "2001:db8:1:4::1")).status_code == 200


# -- the hot path ------------------------------------------------------------------------------


async def test_cached_key_requests_make_no_database_round_trip(start_node: StartNode) -> None:
    """50 successful requests with a cached key execute no SQL statement (the change-feed
    poller's queries on auth_changes aside); an uncached key does (the probe works)."""
    node = await start_node(audit_flush_interval_seconds=60, usage_flush_interval_seconds=60)
    owner = await node.create_user()
    valid = (await node.create_key(owner, "ci")).plaintext
    # A poll of the background loop that read the creation back before it counted as
    # seen may still deliver it (dropping the cached key): a poll of our own waits for
    # that one to finish.
    await node.services.feed.poll_once()
    response = await node.call(valid)  # loads the key and its owner
    assert response.status_code == 200
    assert response.text == "alice"

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = node.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(50):
            assert (await node.call(valid)).status_code == 200
        ours = [s for s in statements if "auth_changes" not in s]
        assert ours == []

        assert (await node.call(unknown_key())).status_code == 401
        assert [s for s in statements if "auth_changes" not in s]
    finally:
        event.remove(engine, "before_cursor_execute", record)


# -- per-key rate limits ----------------------------------------------------------------------


async def test_key_rate_limit_counts_down_then_refuses(node: Node) -> None:
    """A key limited to 3/minute: three 200s with RateLimit-Policy and RateLimit headers
    counting down 2, 1, 0, then 429 rate_limited with Retry-After."""
    owner = await node.create_user()
    key = (await node.create_key(owner, "limited", rate_limit="3/minute")).plaintext
    await clear_of_minute_boundary()
    for remaining in (2, 1, 0):
        response = await node.call(key)
        assert response.status_code == 200, response.text
        assert response.headers["RateLimit-Policy"] == '"key";q=3;w=60'
        left, reset = rate_limit_header(response)
        assert left == remaining
        assert 0 <= reset <= 60

    refused = await node.call(key)
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["message"] == "API key rate limit exceeded"
    assert 1 <= retry_after(refused) <= 60
    assert refused.headers["RateLimit-Policy"] == '"key";q=3;w=60'
    assert rate_limit_header(refused)[0] == 0


async def test_rate_limit_is_per_key(node: Node) -> None:
    """One key's exhausted limit leaves another key of the same owner untouched, and a
    key without any limit carries no RateLimit headers."""
    owner = await node.create_user()
    limited = (await node.create_key(owner, "limited", rate_limit="1/minute")).plaintext
    other = (await node.create_key(owner, "other", rate_limit="1/minute")).plaintext
    free = (await node.create_key(owner, "free")).plaintext
    await clear_of_minute_boundary()
    assert (await node.call(limited)).status_code == 200
    assert (await node.call(limited)).status_code == 429
    assert (await node.call(other)).status_code == 200
    for _ in range(5):
        response = await node.call(free)
        assert response.status_code == 200
        assert "RateLimit" not in response.headers
        assert "RateLimit-Policy" not in response.headers


async def test_default_rate_limit_applies_to_keys_without_their_own(
    start_node: StartNode,
) -> None:
    """api_key_default_rate_limit limits keys without a limit; a key's own limit wins."""
    node = await start_node(api_key_default_rate_limit="2/minute")
    owner = await node.create_user()
    plain = (await node.create_key(owner, "plain")).plaintext
    own = (await node.create_key(owner, "own", rate_limit="5/minute")).plaintext
    await clear_of_minute_boundary()

    first = await node.call(plain)
    assert first.headers["RateLimit-Policy"] == '"key";q=2;w=60'
    assert rate_limit_header(first)[0] == 1
    assert (await node.call(plain)).status_code == 200
    assert (await node.call(plain)).status_code == 429

    mine = await node.call(own)
    assert mine.status_code == 200
    assert mine.headers["RateLimit-Policy"] == '"key";q=5;w=60'
    assert rate_limit_header(mine)[0] == 4


async def test_several_limits_are_reported_by_the_tightest(node: Node) -> None:
    """With "2/second;100/hour" the headers describe the per-second limit (fewest
    requests left); with "100/minute;3/hour" the hourly one."""
    owner = await node.create_user()
    burst = (await node.create_key(owner, "burst", rate_limit="2/second;100/hour")).plaintext
    hourly = (await node.create_key(owner, "hourly", rate_limit="100/minute;3/hour")).plaintext
    await clear_of_minute_boundary()

    response = await node.call(burst)
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"key";q=2;w=1'
    assert rate_limit_header(response)[0] == 1

    response = await node.call(hourly)
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"key";q=3;w=3600'
    assert rate_limit_header(response)[0] == 2


async def test_refused_requests_do_not_use_up_a_longer_limit(node: Node) -> None:
    """Requests refused by a key's short limit are not served, so they do not count
    against its longer one: with "2/minute;10/hour", two requests served and three
    refused leave 8 of the hour (seen once the short limit is lifted)."""
    owner = await node.create_user()
    created = await node.create_key(owner, "burst", rate_limit="2/minute;10/hour")
    await clear_of_minute_boundary()
    statuses = [(await node.call(created.plaintext)).status_code for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]

    await node.set_rate_limit(created, "10/hour")  # the same hourly counter, alone
    response = await node.call(created.plaintext)
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"key";q=10;w=3600'
    assert rate_limit_header(response)[0] == 10 - 3


async def test_retry_after_waits_for_the_limit_that_refuses(node: Node) -> None:
    """With "1/minute;1/day" a second request is refused by the daily limit too, so
    Retry-After must not promise success within the minute."""
    until_midnight = 86_400 - time.time() % 86_400
    if until_midnight < 300:
        pytest.skip("too close to midnight UTC, where the daily window ends anyway")
    owner = await node.create_user()
    key = (await node.create_key(owner, "daily", rate_limit="1/minute;1/day")).plaintext
    assert (await node.call(key)).status_code == 200
    refused = await node.call(key)
    assert refused.status_code == 429
    assert retry_after(refused) > 60


async def test_a_stored_limit_beyond_the_bounds_is_still_enforced(node: Node) -> None:
    """A limit stored before the one-day bound on new limits keeps being counted and
    enforced, not refused with a server error at each request."""
    owner = await node.create_user()
    created = await node.create_key(owner, "weekly")
    async with node.services.db.transaction() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == created.view.key_pk).values(rate_limit="2/7 days")
        )

    for remaining in (1, 0):
        response = await node.call(created.plaintext)
        assert response.status_code == 200, response.text
        assert response.headers["RateLimit-Policy"] == '"key";q=2;w=604800'
        assert rate_limit_header(response)[0] == remaining
    assert (await node.call(created.plaintext)).status_code == 429


# -- shared state in Redis ---------------------------------------------------------------------


async def test_instances_share_login_failures_through_redis(
    start_node: StartNode, redis_url: str
) -> None:
    """Failed logins from one address split across two instances still block it at
    login_ip_max_failures on both; the counts live in Redis, not the database (blocks
    are in both, so that they hold while Redis is down)."""
    first = await start_node(redis_url=redis_url, login_ip_max_failures=4)
    second = await start_node(redis_url=redis_url, login_ip_max_failures=4)
    await first.create_user()
    sprayer = "203.0.113.7"
    for node, username in ((first, "u1"), (second, "u2"), (first, "u3")):
        assert (await node.login(sprayer, username, "wrong-password")).status_code == 401
    assert (await second.login(sprayer, "alice", USER_PASSWORD)).status_code == 200
    assert (await second.login(sprayer, "u4", "wrong-password")).status_code == 401

    for node in (first, second):
        blocked = await node.login(sprayer, "alice", USER_PASSWORD)
        assert blocked.status_code == 423, blocked.text
    assert (await first.login("192.0.2.10", "alice", USER_PASSWORD)).status_code == 200

    async with first.services.db.session() as session:
        windows = await session.execute(
            text("SELECT COUNT(*) FROM throttle_windows WHERE subject LIKE :pattern"),
            {"pattern": f"%{sprayer}%"},
        )
        blocks = await session.execute(
            text("SELECT subject FROM throttle_blocks WHERE subject LIKE :pattern"),
            {"pattern": f"%{sprayer}%"},
        )
        count, subjects = windows.scalar(), sorted(blocks.scalars())
    assert count == 0
    assert subjects == [f"ip:{sprayer}", f"known:alice|{sprayer}"]


async def test_instances_share_a_key_rate_limit_through_redis(
    start_node: StartNode, redis_url: str
) -> None:
    """A key's 3/minute is counted once across two instances: 2 + 1 requests use it up
    and both instances then refuse."""
    first = await start_node(redis_url=redis_url)
    second = await start_node(redis_url=redis_url)
    owner = await first.create_user()
    key = (await first.create_key(owner, "shared", rate_limit="3/minute")).plaintext
    await clear_of_minute_boundary()

    for node, remaining in ((first, 2), (first, 1), (second, 0)):
        response = await node.call(key)
        assert response.status_code == 200, response.text
        assert rate_limit_header(response)[0] == remaining
    for node in (second, first):
        refused = await node.call(key)
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"


async def test_a_refusal_by_the_address_block_is_counted_as_throttled(node: Node) -> None:
    """The refused request is audited with ``Reason.IP_BLOCKED_FOR_KEYS``, whose
    ``throttled`` puts it in ``authgate_throttled_requests`` (metrics match no raw string);
    the bad keys before it are not throttled refusals."""
    assert Reason.IP_BLOCKED_FOR_KEYS.throttled
    assert not Reason.UNKNOWN_KEY.throttled
    owner = await node.create_user()
    valid = (await node.create_key(owner, "ci")).plaintext
    for _ in range(LIMITS["key_ip_max_failures"]):
        await node.call(unknown_key(), "203.0.113.5")
    for _ in range(2):
        assert (await node.call(valid, "203.0.113.5")).status_code == 429

    metrics = node.services.metrics.exposition().decode()
    assert 'authgate_throttled_requests_total{reason="ip_blocked_for_keys"} 2.0' in metrics
    assert 'authgate_throttled_requests_total{reason="unknown_key"}' not in metrics


async def test_a_valid_key_refused_by_the_address_block_leaves_no_usage_row(node: Node) -> None:
    """As the README says: a blocked address is refused before its key is looked at, so
    a valid key's refusal there is in the audit trail (without the key) and in no key's
    usage log (no key lookup, hash or row for a blocked address)."""
    owner = await node.create_user()
    created = await node.create_key(owner, "ci")
    valid = created.plaintext
    for _ in range(LIMITS["key_ip_max_failures"]):
        await node.call(unknown_key(), "203.0.113.5")
    assert (await node.call(valid, "203.0.113.5")).status_code == 429
    await node.services.usage.flush()
    async with node.services.db.session() as session:
        rows = await session.execute(
            text("SELECT failure_reason FROM api_key_usage WHERE api_key_id = :key"),
            {"key": created.view.key_pk},
        )
        assert rows.all() == []
    (refusal,) = [
        entry
        for entry in await node.audit("API_KEY_ACCESS_FAILURE")
        if entry.reason == "ip_blocked_for_keys"
    ]
    assert (refusal.api_key_name, refusal.client_ip) == (None, "203.0.113.5")


def test_the_address_block_keeps_its_external_names() -> None:
    """Renamed in the code (the address block), the names others store or read are not:
    the change feed's kind, the refusal's code and message, the reasons."""
    assert ChangeKind.ADDRESS_BLOCKED.value == "client_blocked"
    refusal = AddressBlocked(retry_after=5, reason=Reason.IP_BLOCKED_FOR_KEYS)
    assert isinstance(refusal, Throttled)
    assert (refusal.code, refusal.message) == (
        "too_many_attempts",
        "Too many invalid API keys from this address",
    )
    assert (Reason.IP_BLOCKED_FOR_KEYS.value, Reason.TOO_MANY_INVALID_KEYS.value) == (
        "ip_blocked_for_keys",
        "too_many_invalid_keys",
    )
    assert Reason.TOO_MANY_INVALID_KEYS.event == "IP_BLOCKED"
