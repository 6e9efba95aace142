"""The running part of a server process: what :class:`BackgroundWork` starts on top of the
services (``container.py`` builds them and holds no state of its own).

Start-up loads the shared state (revocations, blocked addresses, the cluster's view);
with ``background`` it also joins the cluster and runs the loops: change-feed polling
(woken early by the Redis doorbell), housekeeping, the usage log's and the audit
trail's writers, alert evaluation and delivery, audit checkpoints, key gauges, the
cluster heartbeat and, while older nodes still write it unkeyed, the audit key's
introduction. ``close`` stops them in the order that loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from authgate.container import Services, configured_rules
from authgate.exceptions import ConfigurationError
from authgate.security.signing_keys import KeyRing
from authgate.services.audit_checkpoints import CheckpointReason
from authgate.services.batch_writer import BatchWriter
from authgate.services.cluster import HEARTBEAT_SECONDS
from authgate.services.pause import pause
from authgate.services.redis_link import ChangeDoorbell
from authgate.storage import migrate
from authgate.storage.api_key_repository import ApiKeyRepository

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_SECONDS = 3600.0
# The first pass comes this long after the start, not at once: a fleet of workers and
# nodes restarting together would otherwise run every retention delete at the same
# moment, while their caches warm up (and a process that lives less than this leaves
# nothing the next one will not clean).
HOUSEKEEPING_FIRST_DELAY_SECONDS = 60.0
SHUTDOWN_GRACE_SECONDS = 10.0
# A stop during a database outage: the buffered records are tried again for this long
# (a process manager allows 10 s or more), then counted as lost in the log. One deadline
# for every stage of a stop that writes to the database (the loops' last flush, leaving
# the cluster, the last flush, the shutdown checkpoint), not this long for each.
LAST_FLUSH_SECONDS = 5.0
LAST_FLUSH_RETRY_SECONDS = 0.25
GAUGE_INTERVAL_SECONDS = 30.0
GAUGE_PUBLISH_SECONDS = 1.0


class BackgroundWork:
    """The supervisor of one process's background loops (one per ``Services``)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._tasks: list[asyncio.Task[None]] = []
        self._delivery: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        # Alert delivery stops last: the checkpoint taken at shutdown still reaches the sinks.
        self._stop_delivery = asyncio.Event()
        self._wake = asyncio.Event()
        self._waiting_for_older_nodes = False
        self.doorbell: ChangeDoorbell | None = None
        if services.redis is not None:
            self.doorbell = ChangeDoorbell(services.redis, wake=self.wake_change_poller)
            services.feed.after_commit(self.doorbell.ring)

    async def _warn_of_a_new_key_ring(self) -> None:
        """A signing key ring created at this start, for a database that has users: the
        file was lost or moved (or points elsewhere), and every token signed before is
        refused. Said once, as a warning (the backup review: nothing said why every user
        had to log in again)."""
        key_file = self.services.key_file
        if key_file is None or not key_file.created_at_start:
            return
        key_file.created_at_start = False
        async with self.services.db.session() as session:
            users = await self.services.db.users(session).count()
        if users:
            log.warning(
                "a new signing key ring was created in %s, but the database has users: every"
                " token signed before is refused (users log in again). If the file was lost"
                " or moved, stop and restore it",
                key_file.path,
            )

    async def start(self, *, background: bool = True, serving: bool = False) -> None:
        """Load shared state; with ``background``, join the cluster and start polling
        and housekeeping (a CLI command only checks that it may touch the data).
        ``serving`` without ``background``: this process is about to serve (``serve``
        before its workers start), so it is checked against the live nodes and may
        adopt its secrets while nothing depends on them; a command may not."""
        services = self.services
        if services.cluster is not None:
            if background:
                await services.cluster.join()
            elif serving:
                await services.cluster.preflight()
            else:
                await services.cluster.check_stored_keys(serving=False)
        await services.audit.check_key()
        await self._warn_of_a_new_key_ring()
        introduced = await self.introduce_audit_key()
        await services.feed.start_from_now()
        await services.tokens.load_revocations()
        await services.address_blocker.load()
        await services.alerts.start_from_now()
        if not background:
            return
        await services.alert_rules.install_defaults(configured_rules(services.settings))
        self._stop = asyncio.Event()
        self._stop_delivery = asyncio.Event()
        self._delivery = asyncio.create_task(
            services.alert_dispatcher.run(self._stop_delivery), name="authgate-alert-delivery"
        )
        self._tasks = [asyncio.create_task(loop, name=name) for loop, name in self._loops()]
        if introduced is not None:
            await self._publish_checkpoint("key_introduced")

    def _loops(self) -> list[tuple[Coroutine[Any, Any, None], str]]:
        """Every loop of a serving process, with its task name."""
        services, stop = self.services, self._stop
        loops = [
            (self._poll_changes(), "authgate-change-feed"),
            (self._housekeeping(), "authgate-housekeeping"),
            (services.usage.run(stop), "authgate-usage-log"),
            (services.audit.run(stop), "authgate-audit"),
            (services.alerts.run(stop), "authgate-alerts"),
            (services.checkpoints.run(stop), "authgate-audit-checkpoints"),
            (self._refresh_key_gauges(), "authgate-key-gauges"),
            (self._publish_gauges(), "authgate-gauges"),
            (self._heartbeat(), "authgate-cluster-heartbeat"),
        ]
        if not services.audit.introduced:
            loops.append((self._introduce_audit_key_later(), "authgate-audit-key"))
        if self.doorbell is not None:
            loops.append((self.doorbell.listen(stop), "authgate-change-doorbell"))
        return loops

    async def close(self) -> None:
        """Stop background work, flush what is buffered, publish a last audit checkpoint,
        deliver what the sinks still have queued, close the database."""
        services = self.services
        self._stop.set()
        serving = self._delivery is not None
        await services.password_resets.settle()  # their audit records go out below
        await services.notices.settle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LAST_FLUSH_SECONDS  # shared by the stages below
        if self._tasks:
            # The loops end at once on stop; the usage log flushes one last time.
            await _finish(self._tasks, grace=max(0.0, deadline - loop.time()))
        self._tasks = []
        if self.doorbell is not None:
            await self.doorbell.drain()
        if services.cluster is not None:
            await _by_deadline(services.cluster.leave(), deadline, "leaving the cluster")
        # The refusals counted this minute go out as their summaries, not lost with it.
        services.audit.close_summaries()
        # The audit trail first, within a process manager's stop; once more after the
        # usage log, whose flush confirms a key's notable uses (``notable_use``).
        await _last_flush((services.audit, services.usage, services.audit), deadline=deadline)
        if serving:
            await _by_deadline(
                self._publish_checkpoint("shutdown"), deadline, "the shutdown checkpoint"
            )
        self._stop_delivery.set()
        if self._delivery is not None:
            # The dispatcher drains its queues within its own grace period, then stops.
            await _finish([self._delivery], grace=SHUTDOWN_GRACE_SECONDS + 5)
            self._delivery = None
        if services.redis is not None:
            await services.redis.close()
        services.accounts.close()
        await services.feed.close()
        await services.db.close()
        services.metrics.process_exiting()

    async def introduce_audit_key(self) -> int | None:
        """Key the audit chain unless that is done or nodes of an older version still
        write it unkeyed; the id of the ``AUDIT_KEY_INTRODUCED`` record, if one was written."""
        audit, cluster = self.services.audit, self.services.cluster
        if audit.introduced:
            return None
        if cluster is not None and await cluster.older_nodes_running():
            if not self._waiting_for_older_nodes:
                log.warning(
                    "nodes of an older version are running: the audit chain stays unkeyed "
                    "until they stop"
                )
            self._waiting_for_older_nodes = True
            return None
        node = cluster.node_id if cluster is not None else "-"
        return await audit.introduce_key(node=node)

    async def _introduce_audit_key_later(self) -> None:
        """Retry the introduction until it is done (older nodes have stopped)."""
        while not self.services.audit.introduced:
            if await pause(self._stop, HEARTBEAT_SECONDS):
                return
            try:
                if await self.introduce_audit_key() is not None:
                    await self._publish_checkpoint("key_introduced")
            except Exception as error:  # noqa: BLE001 - retried at the next beat
                log.warning("introducing the audit key failed: %s", type(error).__name__)

    async def _publish_checkpoint(self, reason: CheckpointReason) -> None:
        try:
            await self.services.checkpoints.publish(reason)
        except Exception as error:  # noqa: BLE001 - never blocks starting or stopping
            log.error("could not publish an audit checkpoint: %s", type(error).__name__)

    def wake_change_poller(self) -> None:
        """Poll the change feed now (the doorbell rang), not at the next tick."""
        self._wake.set()

    async def _poll_changes(self) -> None:
        services = self.services
        interval = services.settings.change_poll_interval_seconds
        while not self._stop.is_set():
            self._wake.clear()
            await services.feed.poll_logging_errors()
            if services.key_file is not None:
                services.key_file.reload_if_changed(self._use_keyring)
            await _first_of(self._stop, self._wake, seconds=interval)

    def _use_keyring(self, ring: KeyRing) -> None:
        tokens = self.services.tokens
        tokens.replace_codec(tokens.codec.with_keyring(ring))

    async def _heartbeat(self) -> None:
        cluster = self.services.cluster
        if cluster is None:
            return
        while not await pause(self._stop, HEARTBEAT_SECONDS):
            try:
                await cluster.heartbeat()
            except ConfigurationError as error:  # re-joining after a long outage
                log.error("%s", error)

    async def _publish_gauges(self) -> None:
        """With several workers, each one's gauges reach the shared metrics files every
        second (a scrape answered by another worker reads them there)."""
        metrics = self.services.metrics
        if metrics.multiprocess_dir is None:
            return
        while not self._stop.is_set():
            try:
                metrics.publish_gauges()
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning("publishing gauges failed: %s", type(error).__name__)
            await pause(self._stop, GAUGE_PUBLISH_SECONDS)

    async def _refresh_key_gauges(self) -> None:
        """Key counts for Prometheus, refreshed here so that a scrape never queries."""
        services = self.services
        gauges = services.metrics.gauges
        while not self._stop.is_set():
            try:
                now = services.clock()
                async with services.db.session() as session:
                    keys = ApiKeyRepository(session)
                    gauges.active_api_keys = await keys.count_live(now)
                    gauges.api_keys_expiring_14d = await keys.count_live(
                        now, expiring_before=now + timedelta(days=14)
                    )
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning("counting API keys failed: %s", type(error).__name__)
            await pause(self._stop, GAUGE_INTERVAL_SECONDS)

    async def _housekeeping(self) -> None:
        services = self.services
        delay = HOUSEKEEPING_FIRST_DELAY_SECONDS
        while not await pause(self._stop, delay):
            delay = HOUSEKEEPING_INTERVAL_SECONDS
            try:
                await services.tokens.delete_expired_revocations()
                await services.sessions.purge_ended()
                await services.feed.delete_old()
                await services.usage.delete_expired()
                await services.audit.delete_expired()
                await services.checkpoints.delete_expired()
                await services.throttle.delete_expired(services.clock().timestamp())
                if services.cluster is not None:
                    await services.cluster.prune_dead()
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning("housekeeping failed: %s", type(error).__name__)


async def _finish(tasks: list[asyncio.Task[None]], *, grace: float) -> None:
    """Wait for ``tasks`` to end by themselves, cancelling those still running after
    ``grace`` seconds."""
    _, slow = await asyncio.wait(tasks, timeout=grace)
    for task in slow:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _first_of(*events: asyncio.Event, seconds: float) -> None:
    """Return when any of ``events`` is set, or after ``seconds``."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def ensure_schema(services: Services) -> None:
    """Apply pending migrations when allowed, else refuse to run on an outdated schema.

    A schema newer than this version (a rolling upgrade: a newer node has migrated
    already) is accepted, since migrations only ever add.
    """
    head = migrate.head_revision()
    current = await migrate.current_revision(services.db.engine)
    if current == head:
        return
    if migrate.unknown_revision(current):
        raise ConfigurationError(migrate.unknown_revision_message(str(current)))
    if migrate.schema_is_newer(current):
        log.warning(
            "the database schema (revision %s) is newer than this version's (%s): "
            "serving on, migrations are additive",
            current,
            head,
        )
        return
    if services.settings.should_auto_migrate:
        await migrate.upgrade(services.db.engine)
        return
    raise ConfigurationError(
        f"the database schema is at revision {current or 'none'}, this version needs {head}: "
        "run `authgate migrate` first (or start with AUTHGATE_AUTO_MIGRATE=true)"
    )


async def _by_deadline(work: Coroutine[Any, Any, None], deadline: float, what: str) -> None:
    """Run ``work``, cut at ``deadline`` (the loop's time) with a warning."""
    try:
        async with asyncio.timeout_at(deadline):
            await work
    except TimeoutError:
        log.warning("%s was cut at the shutdown deadline", what)


async def _last_flush(
    writers: tuple[BatchWriter[Any, Any], ...], *, deadline: float | None = None
) -> None:
    """Write what ``writers`` still hold (``background=False``, or a last batch that
    failed), in order, trying again while the database is away, all within one
    deadline (``deadline`` on the loop's clock, else ``LAST_FLUSH_SECONDS`` from now;
    an attempt that hangs, a database host that drops packets, is cut at it); what
    still cannot be written is counted in the log (never its content), once: a writer
    named twice is not tried again once it failed."""
    loop = asyncio.get_running_loop()
    if deadline is None:
        deadline = loop.time() + LAST_FLUSH_SECONDS
    failed: list[BatchWriter[Any, Any]] = []
    for writer in writers:
        if writer in failed:
            continue
        failure: BaseException | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    await writer.flush()
                break
            except Exception as error:  # noqa: BLE001 - shutting down: report, do not raise
                failure = error
            if loop.time() + LAST_FLUSH_RETRY_SECONDS >= deadline:
                failed.append(writer)
                log.error(
                    "could not write %d buffered %s before stopping (%s): they are lost",
                    writer.pending,
                    writer.records,
                    type(failure).__name__,
                )
                break
            await asyncio.sleep(LAST_FLUSH_RETRY_SECONDS)
