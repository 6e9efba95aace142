"""The change feed: changes reach other processes, also when sequence numbers commit
out of order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from authgate.app import create_app
from authgate.container import Services
from authgate.exceptions import TokenRevoked
from authgate.services import changes
from authgate.services.changes import Change, ChangeFeed, ChangeKind
from authgate.settings import Settings
from authgate.storage.db import Database
from authgate.storage.models import AuthChange
from tests.conftest import USER_PASSWORD, FakeClock, Harness, bearer, test_settings


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    app = create_app(settings)  # runs migrations in its lifespan
    async with app.router.lifespan_context(app):
        pass
    db = Database(settings.effective_database_url)
    yield db
    await db.close()


async def _insert(db: Database, seq: int, subject: str, clock: FakeClock) -> None:
    async with db.transaction() as session:
        session.add(AuthChange(seq=seq, kind="user_changed", subject=subject, created_at=clock()))


async def test_late_committed_sequence_number_is_still_delivered(
    database: Database, clock: FakeClock
) -> None:
    """Seq 3 committed before seq 2: both are delivered, each exactly once."""
    feed = ChangeFeed(database, clock=clock, gap_timeout=3600)
    received: list[str] = []
    feed.subscribe(lambda change: received.append(change.subject))
    await feed.start_from_now()

    await _insert(database, 1, "one", clock)
    await _insert(database, 3, "three", clock)
    await feed.poll_once()
    await _insert(database, 2, "two", clock)
    await feed.poll_once()
    await feed.poll_once()

    assert received == ["one", "three", "two"]


async def test_gap_is_abandoned_after_the_timeout(database: Database, clock: FakeClock) -> None:
    """A gap that never fills (a rolled-back transaction) stops holding the feed back."""
    feed = ChangeFeed(database, clock=clock, gap_timeout=0)
    received: list[str] = []
    feed.subscribe(lambda change: received.append(change.subject))
    await feed.start_from_now()

    await _insert(database, 1, "one", clock)
    await _insert(database, 3, "three", clock)
    await feed.poll_once()
    await _insert(database, 4, "four", clock)
    await feed.poll_once()

    assert received == ["one", "three", "four"]


async def test_unit_of_work_applies_changes_locally_after_commit(
    database: Database, clock: FakeClock
) -> None:
    """Published changes reach local handlers only if the transaction commits."""
    feed = ChangeFeed(database, clock=clock)
    received: list[Change] = []
    feed.subscribe(received.append)

    async def publish_then_fail() -> None:
        async with feed.unit_of_work() as work:
            work.publish(Change(ChangeKind.USER_CHANGED, "rolled-back"))
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await publish_then_fail()
    async with feed.unit_of_work() as work:
        work.publish(Change(ChangeKind.USER_CHANGED, "committed"))

    assert [change.subject for change in received] == ["committed"]
    other = ChangeFeed(database, clock=clock)
    seen: list[str] = []
    other.subscribe(lambda change: seen.append(change.subject))
    await other.poll_once()
    assert seen == ["committed"]


async def test_own_changes_are_not_delivered_again_by_the_poller(
    database: Database, clock: FakeClock
) -> None:
    """A change applied at its commit is not applied a second time by this process's
    poller (which would drop what was cached since); another process still gets it."""
    feed = ChangeFeed(database, clock=clock)
    await feed.start_from_now()
    received: list[str] = []
    feed.subscribe(lambda change: received.append(change.subject))
    async with feed.unit_of_work() as work:
        work.publish(Change(ChangeKind.USER_CHANGED, "mine"))
    await _insert(database, await _last_seq(database) + 1, "theirs", clock)

    assert await feed.poll_once() == 1
    assert received == ["mine", "theirs"]
    other = ChangeFeed(database, clock=clock)
    seen: list[str] = []
    other.subscribe(lambda change: seen.append(change.subject))
    await other.poll_once()
    assert seen == ["mine", "theirs"]


async def _last_seq(db: Database) -> int:
    async with db.session() as session:
        return await db.changes(session).last_seq()


async def test_a_failing_handler_does_not_stop_the_others(
    database: Database, clock: FakeClock
) -> None:
    """One broken subscriber cannot keep revocations from the rest."""
    feed = ChangeFeed(database, clock=clock)
    received: list[str] = []

    def broken(_change: Change) -> None:
        raise ValueError("boom")

    feed.subscribe(broken)
    feed.subscribe(lambda change: received.append(change.subject))
    async with feed.unit_of_work() as work:
        work.publish(Change(ChangeKind.USER_CHANGED, "x"))
    assert received == ["x"]


class PollWatch:
    """Counts a feed's polls (the background loop's too): which have started, and the
    highest-numbered one that has finished."""

    def __init__(self, feed: ChangeFeed, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = 0
        self._finished = 0
        self._progress = asyncio.Event()
        poll_once = feed.poll_once

        async def counted() -> int:
            self.started += 1
            number = self.started
            try:
                return await poll_once()
            finally:
                self._finished = max(self._finished, number)
                self._progress.set()

        monkeypatch.setattr(feed, "poll_once", counted)

    async def until_a_poll_started_after(self, mark: int) -> None:
        """Wait until a poll that started after poll number ``mark`` has finished."""
        async with asyncio.timeout(PATIENCE_SECONDS):
            while self._finished <= mark:
                self._progress.clear()
                await self._progress.wait()


# Only how long a very busy host may take; the property itself is counted in polls.
PATIENCE_SECONDS = 60.0


async def _refused(services: Services, token: str) -> bool:
    try:
        await services.tokens.authenticate(token)
    except TokenRevoked:
        return True
    return False


async def test_revocation_reaches_another_process_on_the_same_database(
    harness: Harness, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second, independently started app (another worker or node) refuses a token
    logged out on the first one, with no restart, as soon as its background loop has
    polled the feed once after the logout: within a poll interval (0.25 s by default)
    plus one poll, which is how the README's "within a second" is met. Counted in polls,
    not seconds: a starved test machine may take longer than a second for one poll."""
    assert Settings(data_dir=tmp_path).change_poll_interval_seconds < 1
    await harness.create_user("alice")
    token = await harness.login("alice", USER_PASSWORD)
    logout_all_token = await harness.login("alice", USER_PASSWORD)

    other_settings = test_settings(settings.data_dir, database_url=settings.effective_database_url)
    other = create_app(other_settings)
    polls = PollWatch(other.state.services.feed, monkeypatch)
    async with other.router.lifespan_context(other):
        services: Services = other.state.services
        assert (await services.tokens.authenticate(token)).login == "alice"  # now cached there

        response = await harness.client.post(
            "/api/logout", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204
        await polls.until_a_poll_started_after(polls.started)
        assert await _refused(services, token)

        assert (await services.tokens.authenticate(logout_all_token)).login == "alice"
        response = await harness.client.post(
            "/api/account/logout-all", headers={"Authorization": f"Bearer {logout_all_token}"}
        )
        assert response.status_code == 204
        await polls.until_a_poll_started_after(polls.started)
        assert await _refused(services, logout_all_token)


async def test_polls_do_not_wait_for_the_request_pool(harness: Harness, clock: FakeClock) -> None:
    """With every connection of the requests' pool taken (a burst of requests, a slow
    query), a change committed elsewhere is still read at once: the polls have a
    connection of their own. Regression: they shared the pool and waited for its 30 s
    checkout timeout, far past the revocation bound of one second."""
    services = harness.services
    received: list[str] = []
    services.feed.subscribe(lambda change: received.append(change.subject))
    engine = services.db.engine
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    capacity = pool.size() + pool._max_overflow  # SQLAlchemy keeps the bound private
    held = [await engine.connect() for _ in range(capacity)]
    other_node = Database(services.settings.effective_database_url)
    try:
        async with other_node.transaction() as session:
            other_node.changes(session).append(
                kind=ChangeKind.USER_CHANGED.value, subject="elsewhere", now=clock()
            )
        # Not a timing assertion: without a connection of its own the poll would wait
        # 30 s for one; 20 s only bounds how long a failure takes to show.
        await asyncio.wait_for(services.feed.poll_once(), timeout=20)
    finally:
        for connection in held:
            await connection.close()
        await other_node.close()
    # Read by this poll, or by the app's own poller a moment before it (its loop runs in
    # the background: counting this poll's deliveries failed once in CI); either way
    # through the feed's own connection, without waiting for the pool.
    assert received == ["elsewhere"]


async def _append(db: Database, kind: ChangeKind, subject: str, clock: FakeClock) -> int:
    """A change published as a use case would; its sequence number."""
    async with db.transaction() as session:
        row = db.changes(session).append(kind=kind.value, subject=subject, now=clock())
    return row.seq


@asynccontextmanager
async def _other_node(settings: Settings) -> AsyncIterator[Services]:
    """Another app (worker or node) on the harness's database, running."""
    other = create_app(
        test_settings(settings.data_dir, database_url=settings.effective_database_url)
    )
    async with other.router.lifespan_context(other):
        yield other.state.services


async def _restore_feed_to(db: Database, seq: int) -> None:
    """What restoring an older backup does to the feed: the rows after ``seq`` are gone
    and the next change is numbered ``seq + 1`` again (the sequence was restored too)."""
    async with db.transaction() as session:
        await session.execute(text("DELETE FROM auth_changes WHERE seq > :seq"), {"seq": seq})
        if db.is_sqlite:
            await session.execute(
                text("UPDATE sqlite_sequence SET seq = :seq WHERE name = 'auth_changes'"),
                {"seq": seq},
            )
        else:
            await session.execute(text("SELECT setval('auth_changes_seq_seq', :seq)"), {"seq": seq})


async def test_a_restored_database_under_a_running_node_is_noticed(
    harness: Harness, settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup review: restoring the database under running nodes takes the feed back
    below their low-water mark, so they never saw a change made after it: a token logged
    out on a node started after the restore stayed valid on the others until it expired,
    and a key created after the backup until its cache entry did. A poll now notices
    (every ``REWIND_CHECK_SECONDS``), starts from the feed's end, drops every cached
    credential state and reads the deny list again."""
    monkeypatch.setattr(changes, "REWIND_CHECK_SECONDS", 0.0)  # every idle poll checks
    await harness.create_user("alice")
    token = await harness.login("alice", USER_PASSWORD)
    async with _other_node(settings) as services:
        db = harness.services.db
        backup_point = await _append(db, ChangeKind.USER_CHANGED, "before the backup", clock)
        for number in range(5):  # made after the backup: the restore takes them away
            await _append(db, ChangeKind.USER_CHANGED, f"later {number}", clock)
        await services.feed.poll_once()
        assert (await services.tokens.authenticate(token)).login == "alice"  # cached there
        await _restore_feed_to(db, backup_point)
        # After the restore, alice logs out on the first node: the change is numbered
        # below the other node's mark.
        response = await harness.client.post("/api/logout", headers=bearer(token))
        assert response.status_code == 204
        await services.feed.poll_once()
        assert await _refused(services, token)


async def test_a_restore_is_noticed_after_new_changes_numbered_past_the_mark(
    harness: Harness, settings: Settings, clock: FakeClock
) -> None:
    """The attack review: a restore took the feed back by three changes, and four were made
    after it before the other node looked (a logout among them). The feed's end was past
    the node's mark again, so it saw no rewind, read only the fourth, and the logged-out
    token stayed valid there. The row under the node's last number is another one now
    (made at another time): that is a rewind too. (The node's check runs every
    ``REWIND_CHECK_SECONDS``: none is due until the last poll here.)"""
    await harness.create_user("alice")
    token = await harness.login("alice", USER_PASSWORD)
    async with _other_node(settings) as services:
        db = harness.services.db

        async def change(subject: str) -> int:
            """An ordinary change that concerns neither alice nor her token."""
            return await _append(db, ChangeKind.API_KEY_CHANGED, subject, clock)

        backup_point = await change("keybefore001")
        for number in range(3):
            await change(f"keylater{number:04}")
        await services.feed.poll_once()
        assert (await services.tokens.authenticate(token)).login == "alice"  # cached there
        await _restore_feed_to(db, backup_point)
        clock.advance(seconds=1)
        response = await harness.client.post("/api/logout", headers=bearer(token))
        assert response.status_code == 204
        for number in range(3):
            await change(f"keyafter{number:04}")
        services.feed._next_rewind_check = 0.0  # the check is due
        await services.feed.poll_once()
        assert await _refused(services, token)
