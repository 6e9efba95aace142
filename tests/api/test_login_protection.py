"""Brute-force protection of ``POST /api/authenticate`` through the HTTP API: password
spraying from one address (423), guessing one account from one address (429 with
doubling delays), distributed attacks on one account (slowdown sparing the owner's
known addresses), no account enumeration through throttling, and the audit trail."""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import event

from authgate.app import create_app
from authgate.exceptions import Throttled
from authgate.reasons import Reason
from authgate.services.user_fields import NewUser
from authgate.settings import Settings
from authgate.storage import sqlite_reads
from authgate.storage.audit_repository import AuditFilter
from authgate.storage.paging import PageRequest
from tests.conftest import USER_PASSWORD, FakeClock, test_settings

LOGIN = "/api/authenticate"
WRONG = "not-the-password"

# Small thresholds, so that each mechanism is reached in a few requests.
LIMITS: dict[str, Any] = {
    "login_ip_max_failures": 4,
    "login_ip_window_seconds": 600,
    "login_pair_max_failures": 2,
    "login_pair_window_seconds": 900,
    "login_pair_base_delay_seconds": 30,
    "login_pair_max_delay_seconds": 100,
    "login_account_max_failures": 6,
    "login_account_window_seconds": 900,
    "login_account_slowdown_seconds": 10,
}


@dataclass
class Gate:
    """A running app, and HTTP clients whose requests arrive from chosen addresses."""

    app: Any
    clock: FakeClock
    stack: AsyncExitStack
    clients: dict[str, httpx2.AsyncClient] = field(default_factory=dict)

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def create_user(self, login: str, password: str = USER_PASSWORD) -> int:
        user = await self.services.users.create_user(
            NewUser(login=login, email=f"{login}@example.com", password=password)
        )
        return int(user.id)

    async def login(self, address: str, username: str, password: str) -> httpx2.Response:
        client = self.clients.get(address)
        if client is None:
            transport = httpx2.ASGITransport(
                app=self.app, client=(address, 50000), raise_app_exceptions=False
            )
            client = await self.stack.enter_async_context(
                httpx2.AsyncClient(transport=transport, base_url="http://testserver")
            )
            self.clients[address] = client
        return await client.post(LOGIN, json={"username": username, "password": password})

    async def audit(self, *event_types: str, **where: Any) -> list[Any]:
        await self.services.audit.flush()
        page = await self.services.audit.search(
            AuditFilter(event_types=event_types, **where), PageRequest(size=500)
        )
        return list(page.items)


@asynccontextmanager
async def running(settings: Settings, clock: FakeClock) -> AsyncIterator[Gate]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app), AsyncExitStack() as stack:
        yield Gate(app=app, clock=clock, stack=stack)


StartGate = Callable[..., Awaitable[Gate]]


@pytest.fixture
def clock() -> FakeClock:
    """Starts on a whole hour, a boundary of every clock-aligned window of up to an hour
    that divides it, so that a test can place failures just before one."""
    return FakeClock(datetime.now(UTC).replace(minute=0, second=0, microsecond=0))


@pytest.fixture
async def start_gate(
    tmp_path: Path, database_url: str, clock: FakeClock
) -> AsyncIterator[StartGate]:
    """Starts the app with ``LIMITS`` plus the test's overrides (on each database)."""
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Gate:
            settings = test_settings(
                tmp_path / "data", database_url=database_url, **{**LIMITS, **overrides}
            )
            return await stack.enter_async_context(running(settings, clock))

        yield start


@pytest.fixture
async def gate(start_gate: StartGate) -> Gate:
    return await start_gate()


def retry_after(response: httpx2.Response) -> int:
    value = response.headers["Retry-After"]
    assert value.isdigit(), value
    return int(value)


# -- per address --------------------------------------------------------------------------


async def test_password_spray_from_one_address_blocks_that_address(gate: Gate) -> None:
    """After login_ip_max_failures failures from one address across different usernames,
    the address is refused with 423 client_blocked even with the right password."""
    await gate.create_user("alice")
    await gate.create_user("bob")
    sprayer = "203.0.113.7"
    for username in ("alice", "bob", "carol", "dave"):
        response = await gate.login(sprayer, username, WRONG)
        assert response.status_code == 401, response.text

    blocked = await gate.login(sprayer, "alice", USER_PASSWORD)
    assert blocked.status_code == 423, blocked.text
    body = blocked.json()
    message = f"Authentication blocked: IP {sprayer} exceeded login attempt threshold"
    assert body["code"] == "client_blocked"
    assert body["message"] == message
    assert blocked.headers["X-UtmStack-error"] == message
    seconds = retry_after(blocked)
    assert 1 <= seconds <= LIMITS["login_ip_window_seconds"] + 1
    assert "id_token" not in blocked.text


async def test_ip_block_spares_other_addresses(gate: Gate) -> None:
    """A blocked address does not keep the same accounts' owners out elsewhere."""
    await gate.create_user("alice")
    for username in ("alice", "x1", "x2", "x3"):
        await gate.login("203.0.113.7", username, WRONG)
    assert (await gate.login("203.0.113.7", "alice", USER_PASSWORD)).status_code == 423
    elsewhere = await gate.login("192.0.2.10", "alice", USER_PASSWORD)
    assert elsewhere.status_code == 200, elsewhere.text
    assert elsewhere.json()["id_token"]


async def test_ip_block_lasts_a_window_from_the_failure_that_crossed(gate: Gate) -> None:
    """Retry-After points at login_ip_window_seconds after the failure that crossed the
    threshold; once the clock passes it the address may try again (and the right
    password succeeds)."""
    window = LIMITS["login_ip_window_seconds"]
    await gate.create_user("alice")
    gate.clock.advance(seconds=123)
    for username in ("u1", "u2", "u3", "u4"):
        await gate.login("203.0.113.7", username, WRONG)
    blocked = await gate.login("203.0.113.7", "alice", USER_PASSWORD)
    assert blocked.status_code == 423
    assert retry_after(blocked) == window + 1

    gate.clock.advance(seconds=window - 1)
    still = await gate.login("203.0.113.7", "alice", USER_PASSWORD)
    assert still.status_code == 423
    assert retry_after(still) in (1, 2)

    gate.clock.advance(seconds=2)
    again = await gate.login("203.0.113.7", "alice", USER_PASSWORD)
    assert again.status_code == 200, again.text


async def test_ip_block_crossed_just_before_a_window_boundary_lasts_a_whole_window(
    gate: Gate,
) -> None:
    """The counts slide, so the block is not cut short where a clock-aligned window would
    end: crossed 10 s before such a boundary, it still lasts login_ip_window_seconds,
    and the lockout's audit record says so."""
    window = LIMITS["login_ip_window_seconds"]
    await gate.create_user("alice")
    gate.clock.advance(seconds=window - 10)  # the clock starts on a boundary
    for username in ("u1", "u2", "u3", "u4"):
        await gate.login("203.0.113.7", username, WRONG)
    blocked = await gate.login("203.0.113.7", "alice", USER_PASSWORD)
    assert blocked.status_code == 423
    assert retry_after(blocked) == window + 1
    lockouts = await gate.audit("AUTH_LOCKOUT")
    assert [(e.reason, e.details) for e in lockouts] == [("ip_blocked", {"retryAfter": window})]

    gate.clock.advance(seconds=20)  # past the boundary
    assert (await gate.login("203.0.113.7", "alice", USER_PASSWORD)).status_code == 423
    gate.clock.advance(seconds=window - 21)
    still = await gate.login("203.0.113.7", "alice", USER_PASSWORD)
    assert still.status_code == 423
    assert retry_after(still) in (1, 2)

    gate.clock.advance(seconds=2)
    again = await gate.login("203.0.113.7", "alice", USER_PASSWORD)
    assert again.status_code == 200, again.text


# -- per (account, address) ------------------------------------------------------------------


async def test_guessing_one_account_from_one_address_gets_doubling_delays(
    start_gate: StartGate,
) -> None:
    """login_pair_max_failures wrong passwords block the pair for the base delay (429);
    each further round of failures doubles the delay, up to the maximum."""
    gate = await start_gate(login_ip_max_failures=1000, login_account_max_failures=1000)
    await gate.create_user("alice")
    guesser = "198.51.100.20"
    base = LIMITS["login_pair_base_delay_seconds"]
    cap = LIMITS["login_pair_max_delay_seconds"]
    for expected_delay in (base, 2 * base, cap, cap):  # 30, 60, min(120, 100), min(240, 100)
        for _ in range(LIMITS["login_pair_max_failures"]):
            response = await gate.login(guesser, "alice", WRONG)
            assert response.status_code == 401, response.text
        throttled = await gate.login(guesser, "alice", USER_PASSWORD)
        assert throttled.status_code == 429, throttled.text
        assert throttled.json()["code"] == "too_many_attempts"
        assert throttled.headers["X-UtmStack-error"] == throttled.json()["message"]
        assert retry_after(throttled) in (expected_delay, expected_delay + 1)

        gate.clock.advance(seconds=expected_delay - 1)
        assert (await gate.login(guesser, "alice", USER_PASSWORD)).status_code == 429
        gate.clock.advance(seconds=2)


async def test_pair_block_spares_the_owner_elsewhere(start_gate: StartGate) -> None:
    """While one address is blocked for an account, the owner logs in from another."""
    gate = await start_gate(login_ip_max_failures=1000)
    await gate.create_user("alice")
    for _ in range(LIMITS["login_pair_max_failures"]):
        await gate.login("198.51.100.20", "alice", WRONG)
    assert (await gate.login("198.51.100.20", "alice", USER_PASSWORD)).status_code == 429

    owner = await gate.login("192.0.2.10", "alice", USER_PASSWORD)
    assert owner.status_code == 200, owner.text
    # The same address may still try other accounts: the block is per pair.
    await gate.create_user("bob")
    other = await gate.login("198.51.100.20", "bob", USER_PASSWORD)
    assert other.status_code == 200, other.text


async def test_success_clears_the_pair(start_gate: StartGate) -> None:
    """A successful login resets the pair: its failures and its strikes are forgotten,
    so the next block lasts the base delay again."""
    gate = await start_gate(login_ip_max_failures=1000, login_account_max_failures=1000)
    await gate.create_user("alice")
    address = "198.51.100.20"
    base = LIMITS["login_pair_base_delay_seconds"]
    for _ in range(LIMITS["login_pair_max_failures"]):
        await gate.login(address, "alice", WRONG)
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 429
    gate.clock.advance(seconds=base + 1)

    # One failure short of the threshold, then a success: the count starts over.
    for _ in range(LIMITS["login_pair_max_failures"] - 1):
        assert (await gate.login(address, "alice", WRONG)).status_code == 401
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    for _ in range(LIMITS["login_pair_max_failures"] - 1):
        assert (await gate.login(address, "alice", WRONG)).status_code == 401
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200

    # The strike of the first block is gone too: the next block is the base delay.
    for _ in range(LIMITS["login_pair_max_failures"]):
        assert (await gate.login(address, "alice", WRONG)).status_code == 401
    throttled = await gate.login(address, "alice", USER_PASSWORD)
    assert throttled.status_code == 429
    assert retry_after(throttled) in (base, base + 1)


async def known_until(gate: Gate, login: str, address: str) -> float | None:
    store = gate.services.login_protection._store
    block = (await store.get_blocks(f"known:{login}|{address}")).get(f"known:{login}|{address}")
    return None if block is None else float(block.until)


async def test_a_login_from_a_known_place_writes_nothing(
    start_gate: StartGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no failures to clear, a login from an address made known less than an hour
    ago writes nothing; an older mark is renewed, and a failure is still cleared."""
    gate = await start_gate()
    await gate.create_user("alice")
    address = "198.51.100.30"
    store = gate.services.login_protection._store
    writes: list[str] = []
    for name in ("block", "forget", "forget_and_block"):
        original = getattr(store, name)

        async def counted(
            *args: Any, _original: Any = original, _name: str = name, **kw: Any
        ) -> Any:
            writes.append(_name)
            return await _original(*args, **kw)

        monkeypatch.setattr(store, name, counted)

    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    assert writes == ["block"]  # nothing to clear: the address is made known
    first = await known_until(gate, "alice", address)
    assert first is not None

    gate.clock.advance(seconds=1800)
    writes.clear()
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    assert writes == []
    assert await known_until(gate, "alice", address) == first

    gate.clock.advance(seconds=1801)  # more than an hour since the mark: renewed
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    assert writes == ["block"]
    renewed = await known_until(gate, "alice", address)
    assert renewed is not None
    assert renewed > first

    writes.clear()
    assert (await gate.login(address, "alice", WRONG)).status_code == 401
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    assert "forget_and_block" in writes  # the failure is cleared
    for _ in range(LIMITS["login_pair_max_failures"] - 1):
        assert (await gate.login(address, "alice", WRONG)).status_code == 401
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200


async def test_a_usual_login_is_three_reads(
    start_gate: StartGate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From a place used within the hour, with no failures: the user, every block that
    may apply (and the pair's counters), and the user's second factor after the hash;
    nothing written, no other statement on the user or on any subject's counters."""
    gate = await start_gate()
    await gate.create_user("alice")
    address = "198.51.100.32"
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    statements: list[str] = []

    def record(*arguments: Any) -> None:
        statement = " ".join(str(arguments[2]).split())
        # Background work may run meanwhile (the change feed, housekeeping deleting
        # expired counters by their end): only this login's tables, not by end.
        if re.search(r"\b(users|throttle_windows|throttle_blocks)\b", statement) and not (
            re.search(r"(expires_at|blocked_until) <", statement)
        ):
            statements.append(statement)

    # Through SQLAlchemy, and on SQLite the point reads' own connection (sqlite_reads).
    fetch = sqlite_reads._fetch

    def fetched(connection: Any, sql: str, parameters: Any) -> Any:
        record(None, None, sql)
        return fetch(connection, sql, parameters)

    engine = gate.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    monkeypatch.setattr(sqlite_reads, "_fetch", fetched)
    try:
        assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 3, statements
    assert all(statement.startswith("SELECT") for statement in statements), statements


async def test_a_failure_during_the_hash_is_not_cleared_by_the_success(
    start_gate: StartGate,
) -> None:
    """A failure of the same pair counted after the success's check read (while its
    password was being hashed: on another node, as one node evaluates an address's
    checks one at a time) stays counted: the success clears what it read."""
    gate = await start_gate(login_ip_max_failures=1000, login_account_max_failures=1000)
    await gate.create_user("alice")
    address = "198.51.100.31"
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    hasher = gate.services.accounts._hasher
    original = hasher.verify
    failed_meanwhile = False
    protection = gate.services.accounts._protection

    async def verify_while_failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal failed_meanwhile
        if not failed_meanwhile:
            failed_meanwhile = True
            # What another node's failed check of the pair writes.
            elsewhere = await protection.check("alice", address)
            await protection.failed(elsewhere)
        return await original(*args, **kwargs)

    hasher.verify = verify_while_failing
    try:
        assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 200
    finally:
        hasher.verify = original
    # That one failure still counts: one more reaches the pair's threshold (2).
    assert (await gate.login(address, "alice", WRONG)).status_code == 401
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code == 429


async def test_a_burst_from_one_address_is_evaluated_one_by_one(start_gate: StartGate) -> None:
    """Guesses sent all at once are counted as if sent one after the other: each waits for
    the one before it to be counted, so exactly the pair's threshold (2) are evaluated
    and the rest are refused unevaluated (they all passed the check while the first
    ones were being hashed: 59 of 59 went through in the cluster review)."""
    gate = await start_gate(login_account_max_failures=1000)
    await gate.create_user("alice")
    address = "198.51.100.41"
    outcomes = [
        response.status_code
        for response in await asyncio.gather(
            *(gate.login(address, "alice", WRONG) for _ in range(12))
        )
    ]
    assert outcomes.count(401) == LIMITS["login_pair_max_failures"], outcomes
    assert set(outcomes) <= {401, 423, 429}, outcomes
    assert (await gate.login(address, "alice", USER_PASSWORD)).status_code in (423, 429)
    assert (await gate.login("192.0.2.77", "alice", USER_PASSWORD)).status_code == 200


async def test_too_many_waiting_logins_from_one_address_are_refused_at_once(
    start_gate: StartGate,
) -> None:
    """What waits for its turn is bounded, by the password-hashing queue's size: past it,
    a login from the same address is refused at once (429, Retry-After), not queued."""
    waiting = 8
    gate = await start_gate(
        login_ip_max_failures=1000,
        login_pair_max_failures=1000,
        login_account_max_failures=1000,
        password_hashing_queue=waiting,
    )
    await gate.create_user("alice")
    burst = waiting + 5
    responses = await asyncio.gather(
        *(gate.login("198.51.100.42", "alice", WRONG) for _ in range(burst))
    )
    refused = [r for r in responses if r.status_code == 429]
    assert refused, [r.status_code for r in responses]
    assert all(r.json()["code"] == "too_many_attempts" for r in refused)
    assert all(retry_after(r) >= 1 for r in refused)
    assert [r.status_code for r in responses].count(401) >= waiting


# -- distributed attack on one account ---------------------------------------------------------


async def test_distributed_attack_slows_unknown_addresses_but_not_the_owner(gate: Gate) -> None:
    """Failures from many addresses (each below its own limits) past
    login_account_max_failures put the account under attack: all the addresses it does
    not know share one turn per period (so 100 addresses get one evaluation, not 100),
    while the owner, from an address they logged in from before, still gets in."""
    await gate.create_user("alice")
    home = "192.0.2.10"
    assert (await gate.login(home, "alice", USER_PASSWORD)).status_code == 200

    for index in range(LIMITS["login_account_max_failures"]):
        response = await gate.login(f"198.51.100.{index + 1}", "alice", WRONG)
        assert response.status_code == 401, response.text

    slowdown = LIMITS["login_account_slowdown_seconds"]
    outcomes = await _from_many_addresses(gate, "203.0.113", 100, "alice", WRONG)
    assert outcomes.count(401) == 1, outcomes
    assert outcomes.count(429) == 99
    refused = await gate.login("203.0.113.200", "alice", WRONG)
    assert refused.json()["code"] == "too_many_attempts"
    assert retry_after(refused) in (slowdown, slowdown + 1)
    # Even the right password waits: the address is not known to be the owner's.
    assert (await gate.login("203.0.113.201", "alice", USER_PASSWORD)).status_code == 429

    for _ in range(3):
        owner = await gate.login(home, "alice", USER_PASSWORD)
        assert owner.status_code == 200, owner.text

    gate.clock.advance(seconds=slowdown + 1)
    outcomes = await _from_many_addresses(gate, "203.0.114", 100, "alice", WRONG)
    assert outcomes.count(401) == 1, outcomes
    metrics = gate.services.metrics.exposition().decode()
    assert 'authgate_throttled_requests_total{reason="account_slowdown"} 200.0' in metrics


class HeldHashes:
    """Stands in for the app's Argon2 hasher: every hash waits for ``release`` first, so
    that the hashing pool and its queue stay taken; records the passwords in the order
    the hashes ran."""

    def __init__(self, hasher: Any, release: threading.Event) -> None:
        self._hasher = hasher
        self._release = release
        self.ran: list[str] = []

    def verify(self, stored_hash: str, password: str) -> Any:
        self.ran.append(password)
        self._release.wait(timeout=10)
        return self._hasher.verify(stored_hash, password)

    def spend_equal_time(self, password: str) -> None:
        self.ran.append(password)
        self._release.wait(timeout=10)
        self._hasher.spend_equal_time(password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hasher, name)


async def test_a_login_flood_from_unknown_addresses_cannot_refuse_the_owner(
    start_gate: StartGate,
) -> None:
    """DoS finding C: logins of unknown names, each from a /64 of its own, fill the
    hashing pool and its queue; the rest of the flood is refused 503 ``overloaded``.
    The owner logging in from an address they used before is still admitted (a place
    kept for known addresses) and served before the flood waiting ahead; the same
    login from an address the account does not know is refused like the flood."""
    queue = 4
    gate = await start_gate(
        password_hashing_threads=1,
        password_hashing_queue=queue,
        password_hashing_queue_timeout_seconds=20,
    )
    await gate.create_user("admin")
    home = "192.0.2.10"
    assert (await gate.login(home, "admin", USER_PASSWORD)).status_code == 200  # now known
    hashing = gate.services.accounts._hasher
    release = threading.Event()
    held = HeldHashes(hashing._hasher, release)
    hashing._hasher = held
    try:
        flood = [
            asyncio.ensure_future(gate.login(f"2001:db8:{index:x}::1", f"flood{index}", WRONG))
            for index in range(queue + 4)
        ]
        for _ in range(500):
            if hashing._pending == 1 + queue and sum(f.done() for f in flood) == 3:
                break
            await asyncio.sleep(0.01)
        stranger = await gate.login("203.0.113.9", "admin", USER_PASSWORD)
        owner = asyncio.ensure_future(gate.login(home, "admin", USER_PASSWORD))
        for _ in range(500):
            if hashing._pending == 2 + queue or owner.done():
                break
            await asyncio.sleep(0.01)
        release.set()
        assert (await owner).status_code == 200
        outcomes = sorted([(await response).status_code for response in flood])
    finally:
        release.set()
    assert outcomes == [401] * (1 + queue) + [503] * 3, outcomes
    assert (stranger.status_code, stranger.json()["code"]) == (503, "overloaded")
    # The thread went to the owner before the flood's queued guesses.
    assert held.ran[:2] == [WRONG, USER_PASSWORD], held.ran


async def burst_from_many_addresses(gate: Gate, login: str, count: int) -> list[int]:
    """``count`` wrong passwords for one account at once, each from an address of its
    own, while its owner logs in from home (known to the account) amid them."""
    home = "192.0.2.10"
    guesses = [
        gate.login(f"198.51.{index // 250}.{index % 250 + 1}", login, WRONG)
        for index in range(count)
    ]
    *outcomes, owner = await asyncio.gather(*guesses, gate.login(home, login, USER_PASSWORD))
    assert owner.status_code == 200, owner.text  # the owner's place is never held back
    return [response.status_code for response in outcomes]


async def check_a_burst_gets_the_allowance_then_one_turn(gate: Gate, login: str) -> None:
    await gate.create_user(login)
    assert (await gate.login("192.0.2.10", login, USER_PASSWORD)).status_code == 200
    outcomes = await burst_from_many_addresses(gate, login, 40)
    # The account's allowance (login_account_max_failures), then its one shared turn.
    assert outcomes.count(401) == LIMITS["login_account_max_failures"] + 1, outcomes
    assert outcomes.count(429) == 40 - LIMITS["login_account_max_failures"] - 1, outcomes
    failures = await gate.audit("AUTH_FAILURE", actor=login)
    checked = [event for event in failures if event.reason == "wrong_password"]
    assert len(checked) == LIMITS["login_account_max_failures"] + 1
    assert not gate.services.login_protection._in_flight  # nothing left behind


async def test_a_burst_from_many_addresses_gets_the_accounts_allowance_then_one_turn(
    gate: Gate,
) -> None:
    """40 wrong passwords for one account sent at once from 40 addresses: as many are
    evaluated as the account allows (6 here, 20 by default), the rest wait for them to
    be counted and then share the account's one turn (before, all were evaluated: 69
    of 80 in the attack review, the account's threshold crossed long after)."""
    await check_a_burst_gets_the_allowance_then_one_turn(gate, "alice")


async def test_a_burst_from_many_addresses_with_counters_in_redis(
    start_gate: StartGate, redis_url: str
) -> None:
    gate = await start_gate(redis_url=redis_url)
    await check_a_burst_gets_the_allowance_then_one_turn(gate, f"alice{secrets.token_hex(4)}")


async def test_a_burst_takes_what_the_account_has_left(gate: Gate) -> None:
    """Failures counted before the burst leave less room: 4 of 6 counted, a burst of 20
    gets 2 evaluations, then the turn."""
    await gate.create_user("alice")
    for index in range(4):
        assert (await gate.login(f"203.0.113.{index + 1}", "alice", WRONG)).status_code == 401
    outcomes = [
        response.status_code
        for response in await asyncio.gather(
            *(gate.login(f"198.51.100.{index + 1}", "alice", WRONG) for index in range(20))
        )
    ]
    assert outcomes.count(401) == 2 + 1, outcomes


async def test_too_many_logins_waiting_for_one_account_are_refused_at_once(
    start_gate: StartGate,
) -> None:
    """What waits for the account's evaluations to be counted is bounded as for one
    address (the hashing queue's size): beyond, 429 concurrent_logins at once."""
    gate = await start_gate(login_account_max_failures=1, password_hashing_queue=4)
    await gate.create_user("alice")
    responses = await asyncio.gather(
        *(gate.login(f"198.51.100.{index + 1}", "alice", WRONG) for index in range(12))
    )
    refused = [r for r in responses if r.status_code == 429]
    assert any(r.json()["code"] == "too_many_attempts" for r in refused)
    assert [r.status_code for r in responses].count(401) == 2  # the one allowed, the turn
    assert not gate.services.login_protection._in_flight


async def test_a_login_waiting_for_its_accounts_evaluations_waits_a_bounded_time(
    start_gate: StartGate,
) -> None:
    """Diff review: a check waited for its account's evaluations with no deadline, and
    one that never found them all ended (others kept ending uncounted, as a hash refused
    as overloaded does, and new ones took their place) waited for ever. It waits at most
    the hashing queue's deadline, then 429 concurrent_logins."""
    gate = await start_gate(
        login_account_max_failures=1, password_hashing_queue_timeout_seconds=0.2
    )
    protection = gate.services.login_protection
    first = await protection.check("alice", "198.51.100.1")
    with pytest.raises(Throttled) as refused:
        await protection.check("alice", "198.51.100.2")
    assert refused.value.reason == Reason.CONCURRENT_LOGINS
    protection.release(first)
    assert not protection._in_flight


async def test_distributed_attack_with_counters_in_redis(
    start_gate: StartGate, redis_url: str
) -> None:
    """The same defence with the counters in Redis (several workers and nodes)."""
    gate = await start_gate(redis_url=redis_url)
    login = f"alice{secrets.token_hex(4)}"  # Redis outlives the test: counters of its own
    await gate.create_user(login)
    home = "192.0.2.10"
    assert (await gate.login(home, login, USER_PASSWORD)).status_code == 200
    for index in range(LIMITS["login_account_max_failures"]):
        assert (await gate.login(f"198.51.100.{index + 1}", login, WRONG)).status_code == 401
    outcomes = await _from_many_addresses(gate, "203.0.113", 100, login, WRONG)
    assert outcomes.count(401) == 1, outcomes
    assert (await gate.login(home, login, USER_PASSWORD)).status_code == 200
    guesses = [
        (await gate.login(f"2001:db8:9:9::{index + 1:x}", login, WRONG)).status_code
        for index in range(20)
    ]
    assert 401 not in guesses  # the turn is taken; the /64 is not known
    assert gate.services.redis is not None
    assert not gate.services.redis.is_down


async def _from_many_addresses(
    gate: Gate, network: str, count: int, username: str, password: str
) -> list[int]:
    return [
        (await gate.login(f"{network}.{index + 1}", username, password)).status_code
        for index in range(count)
    ]


async def test_turns_of_unknown_addresses_grow_to_a_cap(start_gate: StartGate) -> None:
    """Each turn taken during an attack waits twice as long as the one before, up to
    login_account_slowdown_max_seconds; a quiet window starts over from the base."""
    gate = await start_gate(login_account_slowdown_max_seconds=45)
    await gate.create_user("alice")
    for index in range(LIMITS["login_account_max_failures"]):
        await gate.login(f"198.51.100.{index + 1}", "alice", WRONG)
    waits = []
    for turn in range(5):
        assert (await gate.login(f"203.0.113.{turn + 1}", "alice", WRONG)).status_code == 401
        refused = await gate.login(f"203.0.114.{turn + 1}", "alice", WRONG)
        assert refused.status_code == 429
        waits.append(retry_after(refused))
        gate.clock.advance(seconds=waits[-1])
    assert waits == [11, 21, 41, 46, 46]  # 10, 20, 40, then the cap of 45 (+1 s rounding)

    # The attack stops: a window without failures ends it, and a new one starts over.
    gate.clock.advance(seconds=2 * LIMITS["login_account_window_seconds"])
    for index in range(LIMITS["login_account_max_failures"]):
        await gate.login(f"198.51.101.{index + 1}", "alice", WRONG)
    assert (await gate.login("203.0.115.1", "alice", WRONG)).status_code == 401
    assert retry_after(await gate.login("203.0.115.2", "alice", WRONG)) == 11


async def test_ipv6_addresses_count_per_64(start_gate: StartGate) -> None:
    """An IPv6 /64 is one address for the counters: rotating through 100 addresses of
    one's own /64 neither escapes the (account, address) delay nor the address block."""
    gate = await start_gate(login_account_max_failures=1000)
    await gate.create_user("alice")
    prefix = "2001:db8:5:7"
    guesses = [
        (await gate.login(f"{prefix}::{index + 1:x}", "alice", WRONG)).status_code
        for index in range(100)
    ]
    pair_limit = LIMITS["login_pair_max_failures"]
    assert guesses[:pair_limit] == [401] * pair_limit
    assert set(guesses[pair_limit:]) == {429}, guesses

    spray_from_one = [
        (await gate.login(f"2001:db8:6:1::{index + 1:x}", f"user{index}", WRONG)).status_code
        for index in range(100)
    ]
    ip_limit = LIMITS["login_ip_max_failures"]
    assert spray_from_one[:ip_limit] == [401] * ip_limit
    assert set(spray_from_one[ip_limit:]) == {423}
    blocked = await gate.login("2001:db8:6:1:ffff::1", "alice", USER_PASSWORD)
    assert blocked.status_code == 423
    # The message names the address as seen, the block covers its /64.
    assert "2001:db8:6:1:ffff::1" in blocked.json()["message"]
    # An IPv4 address counts as itself: its neighbour is not blocked.
    for index in range(ip_limit):
        await gate.login("198.51.100.1", f"user{index}", WRONG)
    assert (await gate.login("198.51.100.1", "alice", USER_PASSWORD)).status_code == 423
    assert (await gate.login("198.51.100.2", "alice", USER_PASSWORD)).status_code == 200


async def test_the_owner_is_known_across_their_64(gate: Gate) -> None:
    """Under attack, the owner's new IPv6 privacy address in the /64 they logged in from
    is known: never slowed down."""
    await gate.create_user("alice")
    assert (await gate.login("2001:db8:1:2::a", "alice", USER_PASSWORD)).status_code == 200
    for index in range(LIMITS["login_account_max_failures"] + 1):
        await gate.login(f"198.51.100.{index + 1}", "alice", WRONG)
    assert (await gate.login("203.0.113.1", "alice", WRONG)).status_code == 429
    for suffix in ("b", "c", "d"):
        owner = await gate.login(f"2001:db8:1:2::{suffix}", "alice", USER_PASSWORD)
        assert owner.status_code == 200, owner.text


async def test_slowdown_is_per_account(gate: Gate) -> None:
    """An account under attack does not slow logins into other accounts."""
    await gate.create_user("alice")
    await gate.create_user("bob")
    for index in range(LIMITS["login_account_max_failures"] + 1):
        await gate.login(f"198.51.100.{index + 1}", "alice", WRONG)
    for _ in range(2):
        response = await gate.login("203.0.113.99", "bob", USER_PASSWORD)
        assert response.status_code == 200, response.text


# -- no enumeration ----------------------------------------------------------------------------

# (address suffix, seconds to advance the clock before the attempt); every attempt fails.
ATTACK = [
    (1, 0),
    (1, 0),
    (1, 0),  # pair blocked: 429
    (1, 31),
    (1, 0),  # the address's 4th failure: blocked for the window
    (1, 0),  # 423
    (2, 0),
    (3, 0),
    (4, 0),  # 7 failures on the account: slowdown from now on
    (5, 0),
    (5, 0),  # 429 slowdown
    (6, 5),
    (5, 6),
]


async def _attack(gate: Gate, network: str, username: str) -> list[tuple[int, str | None, Any]]:
    outcomes = []
    for suffix, advance in ATTACK:
        gate.clock.advance(seconds=advance)
        response = await gate.login(f"{network}.{suffix}", username, WRONG)
        outcomes.append(
            (response.status_code, response.headers.get("Retry-After"), response.json()["code"])
        )
    return outcomes


async def test_unknown_usernames_are_throttled_like_real_ones(
    start_gate: StartGate, clock: FakeClock
) -> None:
    """The same failures against a nonexistent user and a real one give the same
    statuses, codes and Retry-After values: throttling does not reveal accounts."""
    gate = await start_gate()
    await gate.create_user("alice")
    start = clock.now
    real = await _attack(gate, "198.51.100", "alice")
    clock.now = start  # the same instants, other addresses and counters
    ghost = await _attack(gate, "203.0.113", "nobody-here")
    assert ghost == real
    statuses = {status for status, _, _ in real}
    assert statuses == {401, 423, 429}, real


async def test_throttling_does_not_link_an_email_to_its_login(start_gate: StartGate) -> None:
    """Failures typed as an e-mail address, then an attempt typed as a login, get the
    same answer whether or not both name one real account (else ``alice`` being
    throttled after failures as ``alice@example.com`` reveals that the account exists)."""
    gate = await start_gate(login_ip_max_failures=1000)
    await gate.create_user("alice")

    async def probe(address: str, email: str, login: str) -> int:
        for _ in range(LIMITS["login_pair_max_failures"]):
            await gate.login(address, email, WRONG)
        return (await gate.login(address, login, WRONG)).status_code

    real = await probe("198.51.100.1", "alice@example.com", "alice")
    ghost = await probe("198.51.100.2", "nobody@example.com", "nobody")
    assert real == ghost


# -- audit -------------------------------------------------------------------------------------


async def test_every_refusal_and_block_is_audited(gate: Gate) -> None:
    """Refused attempts are AUTH_FAILURE with the precise reason (ip_blocked,
    account_ip_blocked, account_slowdown), blocks are AUTH_LOCKOUT, all with the address."""
    await gate.create_user("alice")
    # Pair block, then the address's threshold.
    for _ in range(2):
        await gate.login("198.51.100.20", "alice", WRONG)
    assert (await gate.login("198.51.100.20", "alice", WRONG)).status_code == 429
    for username in ("bob", "carol"):
        await gate.login("198.51.100.20", username, WRONG)
    assert (await gate.login("198.51.100.20", "alice", WRONG)).status_code == 423
    # Distributed: the account passes its threshold; a stranger is slowed down.
    for index in range(5):
        await gate.login(f"192.0.2.{index + 1}", "alice", WRONG)
    await gate.login("203.0.113.99", "alice", WRONG)
    assert (await gate.login("203.0.113.99", "alice", WRONG)).status_code == 429

    failures = await gate.audit("AUTH_FAILURE")
    refused = {(e.reason, e.client_ip, e.actor_login) for e in failures}
    assert ("account_ip_blocked", "198.51.100.20", "alice") in refused
    assert ("ip_blocked", "198.51.100.20", "alice") in refused
    assert ("account_slowdown", "203.0.113.99", "alice") in refused
    assert all(e.outcome == "failure" for e in failures)
    # Every request was audited once: 2+1+2+1 + 5+2 = 13 attempts.
    assert len(failures) == 13

    lockouts = await gate.audit("AUTH_LOCKOUT")
    locked = {(e.reason, e.client_ip) for e in lockouts}
    assert ("account_ip_blocked", "198.51.100.20") in locked
    assert ("ip_blocked", "198.51.100.20") in locked
    pair_lock = next(e for e in lockouts if e.reason == "account_ip_blocked")
    assert pair_lock.details == {
        "retryAfter": LIMITS["login_pair_base_delay_seconds"],
        "strikes": 1,
    }
    assert all(e.actor_login is not None for e in lockouts)
