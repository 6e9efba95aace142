"""Storage and the record (the database, the change feed, metrics, the audit trail,
the usage log, Redis, the throttle store): what every other part writes through; and
the data dir they may live in.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from typing import Any

from authgate.clock import Clock
from authgate.exceptions import ConfigurationError
from authgate.security.audit_chain import AuditKey
from authgate.services.audit.writer import AuditLog
from authgate.services.changes import ChangeFeed
from authgate.services.metrics import Metrics
from authgate.services.redis_link import SOCKET_TIMEOUT_SECONDS, RedisLink
from authgate.services.throttle_store import FallbackThrottleStore, ThrottleStore
from authgate.services.usage import UsageRecorder
from authgate.settings import Settings, prometheus_multiprocess_dir
from authgate.storage import keystore
from authgate.storage.db import Database
from authgate.storage.redis_throttle_store import RedisThrottleStore
from authgate.storage.throttle_store import DatabaseThrottleStore

# The logger the data-dir warning has always come from (before the container was split).
log = logging.getLogger("authgate.container")


@dataclass(frozen=True, slots=True, kw_only=True)
class Infrastructure:
    """Storage and the record: what every other part writes through."""

    db: Database
    feed: ChangeFeed
    metrics: Metrics
    audit_key: AuditKey
    audit: AuditLog
    usage: UsageRecorder
    redis: RedisLink | None
    throttle: ThrottleStore


def build_infrastructure(settings: Settings, clock: Clock) -> Infrastructure:
    db = Database(settings.effective_database_url)
    # prometheus_client picks its value storage from this variable when imported (set by
    # ``serve`` for its workers only); the metrics follow the same variable.
    metrics = Metrics(multiprocess_dir=prometheus_multiprocess_dir())
    audit_key = AuditKey(
        keystore.load_or_create_audit_key(
            settings.audit_key.get_secret_value() if settings.audit_key else None,
            settings.audit_key_file,
            settings.effective_audit_key_file,
        )
    )
    audit = AuditLog(
        db=db,
        key=audit_key,
        clock=clock,
        flush_interval=settings.audit.flush_interval_seconds,
        retention=settings.audit.retention,
        refusals_per_minute=settings.audit.refusals_per_minute,
        refusals_per_minute_total=settings.audit.refusals_per_minute_total,
    )
    audit.subscribe(metrics.on_audit)
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    redis = RedisLink(redis_client(redis_url)) if redis_url else None
    throttle: ThrottleStore = (
        FallbackThrottleStore(RedisThrottleStore(redis.client), DatabaseThrottleStore(db), redis)
        if redis is not None
        else DatabaseThrottleStore(db)
    )
    return Infrastructure(
        db=db,
        # One connection of its own for the polls (see ChangeFeed).
        feed=ChangeFeed(
            db, clock=clock, reader=Database(settings.effective_database_url, connections=1)
        ),
        metrics=metrics,
        audit_key=audit_key,
        audit=audit,
        usage=UsageRecorder(db=db, clock=clock, config=settings.usage),
        redis=redis,
        throttle=throttle,
    )


# Connections one process keeps to Redis. A request past them waits for one (up to the
# socket timeout) instead of failing: redis-py's default pool raised at its 101st
# concurrent command, which counted as Redis being down, and ~100 concurrent requests
# (bad keys, no login needed) put a node on the database fallback for 5 s, its rate
# limits and login throttles counting afresh there (the two-node race review).
REDIS_MAX_CONNECTIONS = 64


def redis_client(url: str, *, max_connections: int = REDIS_MAX_CONNECTIONS) -> Any:
    """A ``redis.asyncio`` client (redis is the optional ``redis`` extra)."""
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
    except ImportError:
        raise ConfigurationError(
            "AUTHGATE_REDIS_URL needs the redis extra: pip install 'authgate[redis]'"
        ) from None
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=SOCKET_TIMEOUT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            # A pooled connection that a Redis restart broke fails on its first use: try
            # once more, on a new connection, at once (a hung Redis times out instead,
            # and is not waited for twice).
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return Redis.from_pool(pool)  # the client closes its pool when closed
    except ValueError as error:  # e.g. "Redis URL must specify one of the following schemes"
        # redis-py's message never holds the URL (nor its password).
        raise ConfigurationError(f"AUTHGATE_REDIS_URL is not a Redis URL: {error}") from None


def create_data_dir(settings: Settings) -> bool:
    """Create the data dir private to this user (it holds the database and keys); not
    when nothing would live in it (PostgreSQL, every secret given). Whether it was
    there already."""
    directory = settings.data_dir
    if directory.exists():
        if not directory.is_dir():
            raise ConfigurationError(f"the data directory {directory} is not a directory")
        return True
    if settings.uses_data_dir:
        directory.mkdir(mode=0o700, parents=True)
    return False


def prepare_data_dir(settings: Settings) -> None:
    """``create_data_dir``, and a warning when an existing one is open to other users:
    once per command, by the command (not by every ``build_services``: serve and its
    workers build theirs too, and said it three times)."""
    directory = settings.data_dir
    if create_data_dir(settings) and directory.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("data directory %s is accessible by other users; chmod 700 it", directory)
