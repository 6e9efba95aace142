"""Redis as a helper: the breaker, the throttle fallback to the database, the doorbell."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import from_url
from sqlalchemy import event

from authgate.services.rate_limits import KeyRateLimits
from authgate.services.redis_link import ChangeDoorbell, RedisLink
from authgate.services.throttle_store import FallbackThrottleStore
from authgate.storage import migrate
from authgate.storage.db import Database
from authgate.storage.redis_throttle_store import RedisThrottleStore
from authgate.storage.throttle_store import Block, DatabaseThrottleStore
from authgate.wiring.infrastructure import redis_client
from tests.conftest import REDIS_URL
from tests.processes import free_port


class Ticker:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the probe is closed


def dead_redis() -> Any:
    return from_url(
        f"redis://127.0.0.1:{closed_port()}/0", socket_connect_timeout=0.2, socket_timeout=0.2
    )


def test_the_breaker_skips_redis_for_a_while_and_logs_each_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticker = Ticker()
    link = RedisLink(object(), cooldown=5.0, monotonic=ticker)
    assert link.available
    assert not link.is_down
    with caplog.at_level(logging.INFO, logger="authgate.services.redis_link"):
        link.failed(ConnectionError())
        link.failed(ConnectionError())
        assert not link.available
        assert link.is_down
        ticker.now += 5.0
        assert link.available  # time to try again
        link.succeeded()
        link.succeeded()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("unavailable" in message for message in messages) == 1
    assert sum("reachable again" in message for message in messages) == 1


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await migrate.upgrade(database.engine)
    yield database
    await database.close()


async def test_throttling_falls_back_to_the_database_while_redis_is_down(db: Database) -> None:
    client = dead_redis()
    ticker = Ticker()
    link = RedisLink(client, cooldown=5.0, monotonic=ticker)
    store = FallbackThrottleStore(RedisThrottleStore(client), DatabaseThrottleStore(db), link)
    try:
        assert await store.add_failure("ip:192.0.2.1", window=60, now=1000.0) == 1
        assert link.is_down
        assert await store.add_failure("ip:192.0.2.1", window=60, now=1001.0) == 2
        await store.block("ip:192.0.2.1", until=2000.0, strikes=1, now=1001.0)
        block = await store.get_block("ip:192.0.2.1")
        assert block is not None
        assert block.until == 2000.0
        # The counts are in the database, where every node sees them.
        database_only = DatabaseThrottleStore(db)
        assert await database_only.failures("ip:192.0.2.1", window=60, now=1002.0) == 2
        assert await store.active_blocks("ip:", 1500.0) == {"ip:192.0.2.1": 2000.0}
    finally:
        await client.aclose()


@pytest.fixture
async def redis_url() -> str:
    if not REDIS_URL:
        pytest.skip("AUTHGATE_TEST_REDIS_URL is not set")
    return REDIS_URL


async def test_a_block_set_during_an_outage_holds_after_it(db: Database, redis_url: str) -> None:
    client = from_url(redis_url)
    ticker = Ticker()
    link = RedisLink(client, cooldown=5.0, monotonic=ticker)
    store = FallbackThrottleStore(
        RedisThrottleStore(client, prefix="authgate:test-link:"), DatabaseThrottleStore(db), link
    )
    try:
        link.failed(ConnectionError())  # as if Redis had just failed
        await store.block("ip:198.51.100.1", until=5000.0, strikes=1, now=1000.0)
        ticker.now += 5.0
        link.succeeded()
        block = await store.get_block("ip:198.51.100.1")
        assert block is not None
        assert block.until == 5000.0
        await store.forget("ip:198.51.100.1")
        assert await store.get_block("ip:198.51.100.1") is None
    finally:
        await client.aclose()


async def test_a_block_set_before_an_outage_holds_during_it(db: Database, redis_url: str) -> None:
    """The cluster review blocked an address (423), stopped Redis, and the address's
    passwords were checked again: the block lived in Redis only. Blocks are written to
    the database too, so it holds (as it does after a Redis restart without
    persistence)."""
    client = from_url(redis_url)
    ticker = Ticker()
    link = RedisLink(client, cooldown=5.0, monotonic=ticker)
    store = FallbackThrottleStore(
        RedisThrottleStore(client, prefix="authgate:test-link:"), DatabaseThrottleStore(db), link
    )
    subject = f"ip:before-{secrets.token_hex(4)}"
    try:
        await store.block(subject, until=5000.0, strikes=1, now=1000.0)
        link.failed(ConnectionError())  # Redis goes away
        assert link.is_down
        assert await store.get_block(subject) == Block(until=5000.0, strikes=1)
        blocks, _ = await store.blocks_and_counted((subject,), "pair:none")
        assert blocks == {subject: Block(until=5000.0, strikes=1)}
    finally:
        await client.aclose()


async def test_the_doorbell_wakes_a_listener(redis_url: str) -> None:
    link = RedisLink(from_url(redis_url))
    woken = asyncio.Event()
    listener = ChangeDoorbell(link, wake=woken.set)
    ringer_link = RedisLink(from_url(redis_url))
    ringer = ChangeDoorbell(ringer_link, wake=lambda: None)
    stop = asyncio.Event()
    task = asyncio.create_task(listener.listen(stop))
    try:
        await asyncio.wait_for(woken.wait(), timeout=5)  # woken once on subscribing
        woken.clear()
        ringer.ring()
        await asyncio.wait_for(woken.wait(), timeout=5)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        await ringer.drain()
        await link.close()
        await ringer_link.close()


async def test_a_dead_redis_never_breaks_the_doorbell() -> None:
    link = RedisLink(dead_redis(), cooldown=0.1)
    bell = ChangeDoorbell(link, wake=lambda: None)
    stop = asyncio.Event()
    task = asyncio.create_task(bell.listen(stop, retry_seconds=0.05))
    bell.ring()  # a commit while Redis is down: no error reaches the caller
    await bell.drain()
    await asyncio.sleep(0.3)  # several reconnection attempts
    assert link.is_down
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    await link.close()


async def test_rate_limits_count_in_memory_while_redis_is_down() -> None:
    """With Redis dead, a key's limit is still enforced (in this worker's memory) and
    the breaker opens, so later requests do not wait for Redis at all."""
    client = dead_redis()
    ticker = Ticker()
    link = RedisLink(client, cooldown=5.0, monotonic=ticker)
    limits = KeyRateLimits(default=None, link=link)
    try:
        outcomes = [(await limits.hit(7, "3/minute"))[1] for _ in range(4)]
        assert outcomes == [True, True, True, False]
        assert link.is_down
        assert not link.available
        state, allowed = await limits.hit(7, "3/minute")
        assert not allowed
        assert state.reset_seconds > 0
    finally:
        await client.aclose()


async def test_rate_limits_are_shared_through_redis(redis_url: str) -> None:
    """Two workers (two limiters) on one Redis share a key's budget."""
    key_id = secrets.randbelow(10**12) + 10**12  # no other test's key
    links = [RedisLink(from_url(redis_url)), RedisLink(from_url(redis_url))]
    first, second = (KeyRateLimits(default="4/minute", link=link) for link in links)
    try:
        assert [(await first.hit(key_id, None))[1] for _ in range(2)] == [True, True]
        assert [(await second.hit(key_id, None))[1] for _ in range(3)] == [True, True, False]
        assert not any(link.is_down for link in links)
    finally:
        for link in links:
            await link.close()


async def check_block_reads_and_success_writes(store: Any, tag: str) -> None:
    pair, known, other = f"pair:{tag}|192.0.2.9", f"known:{tag}|192.0.2.9", f"ip:{tag}"
    await store.add_failure(pair, window=60, now=1000.0)
    await store.block(pair, until=2000.0, strikes=2, now=1000.0)
    blocks = await store.get_blocks(pair, known, other)
    assert blocks == {pair: Block(until=2000.0, strikes=2)}
    assert await store.blocks_and_counted((pair, known, other), pair) == (blocks, True)
    assert await store.blocks_and_counted((known, other), other) == ({}, False)
    assert await store.blocks_and_counted((), pair) == ({}, True)
    # A login's one read also brings the account's failures (a window's worth).
    tally = f"acct:{tag}"
    await store.add_failure(tally, window=60, now=1020.0)
    await store.add_failure(tally, window=60, now=1030.0)
    assert await store.blocks_counted_and_failures(
        (pair, known, other), pair, tally, window=60, now=1030.0
    ) == (blocks, True, 2.0)
    # 45 s into the next window: the two count for a quarter.
    assert await store.blocks_counted_and_failures(
        (known,), other, tally, window=60, now=1125.0
    ) == ({}, False, 0.5)
    assert await store.blocks_counted_and_failures((), other, other, window=60, now=1.0) == (
        {},
        False,
        0.0,
    )
    await store.forget(tally)
    await store.forget_and_block((pair,), known, until=9000.0, strikes=0, now=1000.0)
    assert await store.get_blocks(pair, known, other) == {known: Block(until=9000.0, strikes=0)}
    assert await store.failures(pair, window=60, now=1001.0) == 0
    assert await store.blocks_and_counted((pair, known), pair) == (
        {known: Block(until=9000.0, strikes=0)},
        False,
    )
    await store.forget(known)
    # Forgetting the very subject it then blocks (the second factor's lock-out).
    await store.add_failure(other, window=60, now=1000.0)
    await store.block(other, until=3000.0, strikes=1, now=1000.0)
    await store.forget_and_block((other,), other, until=4000.0, strikes=1, now=1000.0)
    assert await store.get_blocks(other) == {other: Block(until=4000.0, strikes=1)}
    assert await store.failures(other, window=60, now=1001.0) == 0
    await store.forget(other)


async def check_failures_counted_at_once_are_numbered(store: Any, tag: str) -> None:
    """Each ``add_failure`` returns the count its own increment made, even when many run
    at once: the second factor numbers its attempts by it (reads made after the others'
    increments all said 20, so none of 20 codes sent at once was let in)."""
    subject = f"tfa:{tag}"
    counts = await asyncio.gather(
        *(store.add_failure(subject, window=600, now=1200.0) for _ in range(20))
    )
    assert sorted(counts) == [float(n) for n in range(1, 21)]
    # One taken back (an attempt refused by a lock set meanwhile); never below zero.
    await store.refund_failure(subject, window=600, now=1200.0)
    assert await store.failures(subject, window=600, now=1200.0) == 19
    await store.refund_failure(f"tfa:none-{tag}", window=600, now=1200.0)
    assert await store.failures(f"tfa:none-{tag}", window=600, now=1200.0) == 0
    await store.forget(subject)


async def test_failures_counted_at_once_are_numbered_one_by_one(db: Database) -> None:
    await check_failures_counted_at_once_are_numbered(DatabaseThrottleStore(db), "db")


async def test_failures_counted_at_once_in_redis_are_numbered_one_by_one(
    redis_url: str,
) -> None:
    client = from_url(redis_url)
    try:
        store = RedisThrottleStore(client, prefix="authgate:test-link:")
        await check_failures_counted_at_once_are_numbered(store, secrets.token_hex(4))
    finally:
        await client.aclose()


async def test_blocks_are_read_together_and_a_success_is_one_write(db: Database) -> None:
    """``get_blocks`` returns only the subjects that have a block; ``forget_and_block``
    drops the pair's counters and block and marks the address known."""
    await check_block_reads_and_success_writes(DatabaseThrottleStore(db), "db")


async def test_a_success_is_one_statement_on_postgresql(db: Database) -> None:
    """PostgreSQL: forgetting the pair and marking the address known is one statement in
    autocommit (one round trip), not BEGIN, three statements and COMMIT."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite's WITH takes no DELETE: three statements in one transaction")
    statements: list[str] = []

    def record(*arguments: Any) -> None:
        statements.append(arguments[2])

    store = DatabaseThrottleStore(db)
    await store.block("pair:one|192.0.2.1", until=2000.0, strikes=1, now=1000.0)
    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        await store.forget_and_block(
            ("pair:one|192.0.2.1",), "known:one|192.0.2.1", until=9000.0, strikes=0, now=1.0
        )
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert len(statements) == 1, statements
    assert await store.get_blocks("pair:one|192.0.2.1", "known:one|192.0.2.1") == {
        "known:one|192.0.2.1": Block(until=9000.0, strikes=0)
    }


async def test_redis_blocks_are_read_together_and_a_success_is_one_write(
    db: Database, redis_url: str
) -> None:
    client = from_url(redis_url)
    link = RedisLink(client)
    tag = f"redis-{secrets.token_hex(4)}"
    try:
        await check_block_reads_and_success_writes(
            RedisThrottleStore(client, prefix="authgate:test-link:"), tag
        )
        fallback = FallbackThrottleStore(
            RedisThrottleStore(client, prefix="authgate:test-link:"),
            DatabaseThrottleStore(db),
            link,
        )
        await check_block_reads_and_success_writes(fallback, tag + "-fallback")
        # A block written to the database during an outage is found by get_blocks after it.
        await DatabaseThrottleStore(db).block(f"ip:{tag}", until=5000.0, strikes=1, now=1.0)
        assert await fallback.get_blocks(f"ip:{tag}") == {f"ip:{tag}": Block(5000.0, 1)}
    finally:
        await client.aclose()


async def check_sliding_counts(store: Any, tag: str) -> None:
    subject = f"acct:{tag}"
    assert await store.add_failure(subject, window=60, now=6000.0) == 1
    assert await store.add_failure(subject, window=60, now=6030.0) == 2
    # 15 s into the next window: the previous one still weighs 3/4.
    assert await store.add_failure(subject, window=60, now=6075.0) == 1 + 2 * 0.75
    assert await store.failures(subject, window=60, now=6075.0) == 1 + 2 * 0.75
    # Two windows later, nothing of them counts any more.
    assert await store.failures(subject, window=60, now=6180.0) == 0
    await store.block(subject, until=9000.0, strikes=1, now=6075.0)
    await store.reset_failures(subject)
    assert await store.failures(subject, window=60, now=6076.0) == 0
    assert await store.get_block(subject) == Block(until=9000.0, strikes=1)
    await store.add_failure(subject, window=60, now=6077.0)
    await store.forget(subject)
    assert await store.failures(subject, window=60, now=6078.0) == 0
    assert await store.get_block(subject) is None


async def test_database_store_counts_in_sliding_windows(db: Database) -> None:
    await check_sliding_counts(DatabaseThrottleStore(db), "db")


async def test_redis_store_counts_in_sliding_windows_under_one_key(redis_url: str) -> None:
    """The same counts as the database store; a subject's counters are one hash, so
    forgetting it deletes keys by name (no keyspace scan on every login)."""
    client = from_url(redis_url)
    prefix = f"authgate:test-sliding-{secrets.token_hex(4)}:"
    try:
        await check_sliding_counts(RedisThrottleStore(client, prefix=prefix), "redis")
        await RedisThrottleStore(client, prefix=prefix).add_failure("acct:x", window=60, now=6000.0)
        assert [key async for key in client.scan_iter(match=f"{prefix}*")] == [
            f"{prefix}h:acct:x".encode()
        ]
        await client.delete(f"{prefix}h:acct:x")
    finally:
        await client.aclose()


async def check_claims(store: Any, tag: str) -> None:
    """Of several attempts racing for a free turn exactly one gets it; a turn in force
    is never taken over; an ended one is."""
    subject = f"slow:{tag}"
    outcomes = await asyncio.gather(
        *(store.claim(subject, until=1010.0, strikes=1, now=1000.0) for _ in range(20))
    )
    assert sorted(outcomes) == [False] * 19 + [True]
    assert await store.get_block(subject) == Block(until=1010.0, strikes=1)
    assert not await store.claim(subject, until=1030.0, strikes=2, now=1009.0)
    assert await store.claim(subject, until=1030.0, strikes=2, now=1010.0)
    assert await store.get_blocks(subject) == {subject: Block(until=1030.0, strikes=2)}
    await store.forget(subject)


async def test_database_store_claims_a_turn_once(db: Database) -> None:
    await check_claims(DatabaseThrottleStore(db), f"db-{secrets.token_hex(4)}")


async def test_redis_store_claims_a_turn_once(db: Database, redis_url: str) -> None:
    client = from_url(redis_url)
    link = RedisLink(client)
    tag = f"redis-{secrets.token_hex(4)}"
    try:
        store = RedisThrottleStore(client, prefix="authgate:test-link:")
        await check_claims(store, tag)
        fallback = FallbackThrottleStore(store, DatabaseThrottleStore(db), link)
        await check_claims(fallback, tag + "-fallback")
    finally:
        await client.aclose()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_the_client_reconnects_at_once_after_a_redis_restart(tmp_path: Path) -> None:
    """A pooled connection broken by a Redis restart is replaced on its first use, not
    reported as a failure (which opened the breaker for another 5 s: the cluster review
    saw nodes on the fallback ~11 s after Redis was back). A private redis-server on a
    free loopback port, restarted without persistence."""
    port = free_port()
    command = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(tmp_path),
    ]  # fmt: skip
    server = await _start(command)
    client = redis_client(f"redis://127.0.0.1:{port}/0")
    try:
        await _wait_for(client)
        assert await client.set("k", "1")
        server.terminate()
        await server.wait()
        server = await _start(command)
        probe = redis_client(f"redis://127.0.0.1:{port}/0")
        try:
            await _wait_for(probe)
        finally:
            await probe.aclose()
        assert await client.set("k", "2")  # the old pooled connection is dead
        assert await client.get("k") == b"2"
    finally:
        await client.aclose()
        server.terminate()
        await server.wait()


async def _start(command: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL)


async def _wait_for(client: Any) -> None:
    for _ in range(100):
        try:
            await client.ping()
            return
        except Exception:  # noqa: BLE001 - not up yet
            await asyncio.sleep(0.05)
    raise AssertionError("redis-server did not start")


async def test_more_concurrent_commands_than_connections_wait_for_one(redis_url: str) -> None:
    """The race review: redis-py's default pool raised at its 101st concurrent command,
    which the breaker took for Redis being down: ~100 concurrent requests put a node on
    the fallback for 5 s, where its rate limits counted afresh (twice the limit got
    through). Commands past the pool's size now wait for a connection: with 4
    connections, 90 concurrent requests of one key meet its 30/minute exactly, and
    Redis is never reported down."""
    client = redis_client(redis_url, max_connections=4)
    link = RedisLink(client, cooldown=5.0)
    limits = KeyRateLimits(default="30/minute", link=link)
    key_pk = secrets.randbelow(2**40) + 2**41  # no other test's key
    try:
        results = await asyncio.gather(*(limits.hit(key_pk, None) for _ in range(90)))
        assert not link.is_down
        assert sum(allowed for _, allowed in results) == 30
    finally:
        await client.aclose()
