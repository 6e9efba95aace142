"""Wiring: builds every service from the settings. Used by the app factory and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import stat
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from authgate import __version__
from authgate.clock import Clock, utc_now
from authgate.exceptions import ConfigurationError, ValidationFailed
from authgate.security.audit_chain import AuditKey
from authgate.security.clientip import ClientIpResolver
from authgate.security.networks import AllowEntryError, AllowList, TrustedProxies
from authgate.security.passwords import PasswordHasher, PasswordPolicy
from authgate.security.second_factor import SecondFactorKey
from authgate.security.signing_keys import KeyRing
from authgate.security.tokens import JwtCodec
from authgate.services.access_tokens import AccessTokenService
from authgate.services.accounts import AccountService
from authgate.services.alerts.configuration import sinks_from_settings
from authgate.services.alerts.dispatch import AlertDispatcher
from authgate.services.alerts.engine import AlertEngine
from authgate.services.alerts.rules import AlertRules, RuleSpec
from authgate.services.alerts.rules import validate as validate_rule
from authgate.services.api_key_auth import ApiKeyAuthenticator
from authgate.services.api_keys import ApiKeyService, KeyPolicy
from authgate.services.audit.writer import AuditLog
from authgate.services.audit_checkpoints import AuditCheckpoints, CheckpointReason
from authgate.services.changes import ChangeFeed
from authgate.services.cluster import HEARTBEAT_SECONDS, ClusterMembership
from authgate.services.forward_auth import ForwardAuthPolicy
from authgate.services.gate import Gate
from authgate.services.key_abuse import KeyAbuseGuard
from authgate.services.login_protection import LoginProtection
from authgate.services.mail import Mailer, smtp_server_from
from authgate.services.metrics import Metrics
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.password_resets import PasswordResets
from authgate.services.rate_limits import KeyRateLimits
from authgate.services.redis_link import SOCKET_TIMEOUT_SECONDS, ChangeDoorbell, RedisLink
from authgate.services.second_factor import SecondFactorService
from authgate.services.service_credentials import ServiceCredentials
from authgate.services.sessions import SessionService
from authgate.services.sign_in import SignIn
from authgate.services.signing_keys import SigningKeyFile
from authgate.services.throttle_store import (
    DatabaseThrottleStore,
    FallbackThrottleStore,
    RedisThrottleStore,
    ThrottleStore,
)
from authgate.services.upstream_request import UpstreamRequestReader
from authgate.services.usage import UsageRecorder
from authgate.services.user_states import UserStates
from authgate.services.users import UserService
from authgate.settings import Settings, prometheus_multiprocess_dir
from authgate.storage import keystore
from authgate.storage.api_key_repository import ApiKeyRepository
from authgate.storage.db import Database

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_SECONDS = 3600.0
SHUTDOWN_GRACE_SECONDS = 10.0
GAUGE_INTERVAL_SECONDS = 30.0
GAUGE_PUBLISH_SECONDS = 1.0


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    feed: ChangeFeed
    accounts: AccountService
    users: UserService
    tokens: AccessTokenService
    sessions: SessionService  # UTMStack v12's refresh-token sessions (/api/v1)
    key_file: SigningKeyFile | None
    api_keys: ApiKeyService
    key_auth: ApiKeyAuthenticator
    usage: UsageRecorder
    client_ips: ClientIpResolver
    audit: AuditLog
    throttle: ThrottleStore
    login_protection: LoginProtection
    key_abuse: KeyAbuseGuard
    # What other services present in X-Internal-Key (the internal endpoints).
    service_credentials: ServiceCredentials
    rate_limits: KeyRateLimits
    forward_auth: ForwardAuthPolicy
    alert_rules: AlertRules
    alerts: AlertEngine
    alert_dispatcher: AlertDispatcher
    metrics: Metrics
    checkpoints: AuditCheckpoints
    # Mail to users (reset links, second-factor codes); `mailer.configured` says whether
    # an SMTP server is set.
    mailer: Mailer
    # Password recovery: reset links asked for, mailed and used.
    password_resets: PasswordResets
    second_factor: SecondFactorService
    sign_in: SignIn
    # The deployment's shared secret (the API key pepper): purpose-specific keys, such as
    # the UI's CSRF key, are derived from it, so every node agrees on them.
    server_secret: bytes = b""
    cluster: ClusterMembership | None = None
    redis: RedisLink | None = None  # when AUTHGATE_REDIS_URL is set
    doorbell: ChangeDoorbell | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _delivery: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    # Alert delivery stops last: the checkpoint taken at shutdown still reaches the sinks.
    _stop_delivery: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _waiting_for_older_nodes: bool = False

    @functools.cached_property
    def gate(self) -> Gate:
        """The verdict on every request's credentials (API routes, metrics, forward-auth)."""
        return Gate(
            tokens=self.tokens,
            key_auth=self.key_auth,
            key_abuse=self.key_abuse,
            rate_limits=self.rate_limits,
            metrics=self.metrics,
            audit=self.audit,
            usage=self.usage,
            clock=self.clock,
            audit_key_successes=self.settings.audit.api_key_successes,
            idle_seconds=self.settings.audit.key_idle_seconds,
        )

    async def start(self, *, background: bool = True) -> None:
        """Load shared state; with ``background``, join the cluster and start polling
        and housekeeping (a CLI command only checks that it may touch the data)."""
        if self.cluster is not None:
            if background:
                await self.cluster.join()
            else:
                await self.cluster.check_pepper()
        await self.audit.check_key()
        introduced = await self.introduce_audit_key()
        await self.feed.start_from_now()
        await self.tokens.load_revocations()
        await self.key_abuse.load()
        await self.alerts.start_from_now()
        if background:
            await self.alert_rules.install_defaults(configured_rules(self.settings))
            self._stop = asyncio.Event()
            self._stop_delivery = asyncio.Event()
            self._delivery = asyncio.create_task(
                self.alert_dispatcher.run(self._stop_delivery), name="authgate-alert-delivery"
            )
            self._tasks = [
                asyncio.create_task(self._poll_changes(), name="authgate-change-feed"),
                asyncio.create_task(self._housekeeping(), name="authgate-housekeeping"),
                asyncio.create_task(self.usage.run(self._stop), name="authgate-usage-log"),
                asyncio.create_task(self.audit.run(self._stop), name="authgate-audit"),
                asyncio.create_task(self.alerts.run(self._stop), name="authgate-alerts"),
                asyncio.create_task(
                    self.checkpoints.run(self._stop), name="authgate-audit-checkpoints"
                ),
                asyncio.create_task(self._refresh_key_gauges(), name="authgate-key-gauges"),
                asyncio.create_task(self._publish_gauges(), name="authgate-gauges"),
                asyncio.create_task(self._heartbeat(), name="authgate-cluster-heartbeat"),
            ]
            if not self.audit.introduced:
                self._tasks.append(
                    asyncio.create_task(
                        self._introduce_audit_key_later(), name="authgate-audit-key"
                    )
                )
            if self.doorbell is not None:
                self._tasks.append(
                    asyncio.create_task(
                        self.doorbell.listen(self._stop), name="authgate-change-doorbell"
                    )
                )
            if introduced is not None:
                await self._publish_checkpoint("key_introduced")

    async def close(self) -> None:
        """Stop background work, flush what is buffered, publish a last audit checkpoint,
        deliver what the sinks still have queued, close the database."""
        self._stop.set()
        serving = self._delivery is not None
        await self.password_resets.settle()  # their audit records go out below
        if self._tasks:
            # The loops end at once on stop; the usage log flushes one last time.
            await _finish(self._tasks, grace=SHUTDOWN_GRACE_SECONDS)
        self._tasks = []
        if self.doorbell is not None:
            await self.doorbell.drain()
        if self.cluster is not None:
            await self.cluster.leave()
        for pending in (self.usage, self.audit):
            try:
                await pending.flush()  # background=False, or a last batch that failed
            except Exception as error:  # noqa: BLE001 - shutting down: report, do not raise
                log.error("could not write buffered records: %s", type(error).__name__)
        if serving:
            await self._publish_checkpoint("shutdown")
        self._stop_delivery.set()
        if self._delivery is not None:
            # The dispatcher drains its queues within its own grace period, then stops.
            await _finish([self._delivery], grace=SHUTDOWN_GRACE_SECONDS + 5)
            self._delivery = None
        if self.redis is not None:
            await self.redis.close()
        self.accounts.close()
        await self.db.close()
        self.metrics.process_exiting()

    async def introduce_audit_key(self) -> int | None:
        """Key the audit chain unless that is done or nodes of an older version still
        write it unkeyed; the id of the ``AUDIT_KEY_INTRODUCED`` record, if one was written."""
        if self.audit.introduced:
            return None
        if self.cluster is not None and await self.cluster.older_nodes_running():
            if not self._waiting_for_older_nodes:
                log.warning(
                    "nodes of an older version are running: the audit chain stays unkeyed "
                    "until they stop"
                )
            self._waiting_for_older_nodes = True
            return None
        node = self.cluster.node_id if self.cluster is not None else "-"
        return await self.audit.introduce_key(node=node)

    async def _introduce_audit_key_later(self) -> None:
        """Retry the introduction until it is done (older nodes have stopped)."""
        while not self.audit.introduced and not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=HEARTBEAT_SECONDS)
            if self._stop.is_set():
                return
            try:
                if await self.introduce_audit_key() is not None:
                    await self._publish_checkpoint("key_introduced")
            except Exception as error:  # noqa: BLE001 - retried at the next beat
                log.warning("introducing the audit key failed: %s", type(error).__name__)

    async def _publish_checkpoint(self, reason: CheckpointReason) -> None:
        try:
            await self.checkpoints.publish(reason)
        except Exception as error:  # noqa: BLE001 - never blocks starting or stopping
            log.error("could not publish an audit checkpoint: %s", type(error).__name__)

    def wake_change_poller(self) -> None:
        """Poll the change feed now (the doorbell rang), not at the next tick."""
        self._wake.set()

    async def _poll_changes(self) -> None:
        interval = self.settings.change_poll_interval_seconds
        while not self._stop.is_set():
            self._wake.clear()
            await self.feed.poll_logging_errors()
            if self.key_file is not None:
                self.key_file.reload_if_changed(self._use_keyring)
            await _first_of(self._stop, self._wake, seconds=interval)

    async def _heartbeat(self) -> None:
        while self.cluster is not None and not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=HEARTBEAT_SECONDS)
            if not self._stop.is_set():
                try:
                    await self.cluster.heartbeat()
                except ConfigurationError as error:  # re-joining after a long outage
                    log.error("%s", error)

    async def _publish_gauges(self) -> None:
        """With several workers, each one's gauges reach the shared metrics files every
        second (a scrape answered by another worker reads them there)."""
        if self.metrics.multiprocess_dir is None:
            return
        while not self._stop.is_set():
            try:
                self.metrics.publish_gauges()
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning("publishing gauges failed: %s", type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=GAUGE_PUBLISH_SECONDS)

    async def _refresh_key_gauges(self) -> None:
        """Key counts for Prometheus, refreshed here so that a scrape never queries."""
        gauges = self.metrics.gauges
        while not self._stop.is_set():
            try:
                now = self.clock()
                async with self.db.session() as session:
                    keys = ApiKeyRepository(session)
                    gauges.active_api_keys = await keys.count_live(now)
                    gauges.api_keys_expiring_14d = await keys.count_live(
                        now, expiring_before=now + timedelta(days=14)
                    )
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning("counting API keys failed: %s", type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=GAUGE_INTERVAL_SECONDS)

    def _use_keyring(self, ring: KeyRing) -> None:
        self.tokens.replace_codec(self.tokens.codec.with_keyring(ring))

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tokens.delete_expired_revocations()
                await self.sessions.purge_ended()
                await self.feed.delete_old()
                await self.usage.delete_expired()
                await self.audit.delete_expired()
                await self.checkpoints.delete_expired()
                await self.throttle.delete_expired(self.clock().timestamp())
                if self.cluster is not None:
                    await self.cluster.prune_dead()
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning("housekeeping failed: %s", type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=HOUSEKEEPING_INTERVAL_SECONDS)


def build_services(settings: Settings, *, clock: Clock = utc_now) -> Services:
    prepare_data_dir(settings)
    db = Database(settings.effective_database_url)
    feed = ChangeFeed(db, clock=clock)
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
    )
    audit.subscribe(metrics.on_audit)
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    redis = RedisLink(_redis_client(redis_url)) if redis_url else None
    throttle: ThrottleStore = (
        FallbackThrottleStore(RedisThrottleStore(redis.client), DatabaseThrottleStore(db), redis)
        if redis is not None
        else DatabaseThrottleStore(db)
    )
    hasher = AsyncPasswordHasher(
        PasswordHasher(settings.password_hashing.argon2),
        config=settings.password_hashing,
        observe=metrics.password_hash_seconds.observe,
        on_overload=metrics.throttled.labels("hashing_overloaded").inc,
    )
    policy = PasswordPolicy(
        min_length=settings.password_min_length,
        max_length=settings.password_max_length,
        refuse_common=settings.password_refuse_common,
    )
    key_file, ring = load_signing_keys(settings, clock=clock)
    codec = JwtCodec(
        ring,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=timedelta(seconds=settings.token_leeway_seconds),
    )
    user_states = UserStates(
        db=db,
        feed=feed,
        max_entries=settings.user_cache_size,
        ttl=settings.user_cache_ttl_seconds,
    )
    tokens = AccessTokenService(
        codec=codec,
        db=db,
        feed=feed,
        users=user_states,
        clock=clock,
        audit=audit,
        token_ttl=settings.token_ttl,
        remember_me_ttl=settings.remember_me_ttl,
        cache_size=settings.token_cache_size,
    )
    pepper = keystore.load_or_create_pepper(
        settings.api_key_pepper.get_secret_value() if settings.api_key_pepper else None,
        settings.api_key_pepper_file,
        settings.effective_api_key_pepper_file,
    )
    api_keys = ApiKeyService(
        db=db,
        feed=feed,
        clock=clock,
        audit=audit,
        pepper=pepper,
        policy=KeyPolicy(
            require_expiry=settings.api_key_require_expiry,
            max_lifetime=timedelta(days=settings.api_key_max_lifetime_days),
            default_scopes=frozenset(settings.api_key_default_scopes),
            extra_scopes=frozenset(settings.api_key_extra_scopes),
        ),
    )
    key_auth = ApiKeyAuthenticator(
        db=db,
        feed=feed,
        users=user_states,
        clock=clock,
        pepper=pepper,
        cache_size=settings.api_key_cache_size,
        record_ttl=settings.api_key_cache_ttl_seconds,
        unknown_cache_size=settings.api_key_unknown_cache_size,
        unknown_ttl=settings.api_key_unknown_cache_ttl_seconds,
    )
    usage = UsageRecorder(
        db=db,
        clock=clock,
        config=settings.usage,
    )
    alert_dispatcher = AlertDispatcher(
        sinks_from_settings(settings), retries=settings.alert_delivery_retries
    )
    login_protection = LoginProtection(
        store=throttle,
        limits=settings.login,
        clock=clock,
        audit=audit,
    )
    cluster = ClusterMembership(
        db=db,
        clock=clock,
        pepper=pepper,
        audit_key_fingerprint=audit_key.fingerprint,
        keyring=lambda: tokens.codec.keyring,
        uses_redis=redis is not None,
        version=__version__,
    )
    checkpoints = AuditCheckpoints(
        db=db,
        audit=audit,
        keyring=lambda: tokens.codec.keyring,
        issuer=settings.jwt_issuer,
        dispatcher=alert_dispatcher,
        clock=clock,
        node=lambda: cluster.node_id,
        interval=settings.audit.checkpoint_interval_seconds,
        retention=settings.audit.retention,
    )
    mailer = Mailer(smtp_server_from(settings))
    second_factor = SecondFactorService(
        db=db,
        feed=feed,
        key=SecondFactorKey(
            keystore.load_or_create_tfa_key(
                settings.tfa_key.get_secret_value() if settings.tfa_key else None,
                settings.tfa_key_file,
                settings.effective_tfa_key_file,
            )
        ),
        mailer=mailer,
        throttle=throttle,
        audit=audit,
        clock=clock,
        requirement=settings.tfa_required,
        issuer=settings.tfa_issuer,
    )
    key_abuse = KeyAbuseGuard(
        store=throttle,
        feed=feed,
        limits=settings.key_abuse,
        clock=clock,
        audit=audit,
    )
    accounts = AccountService(
        db=db,
        feed=feed,
        hasher=hasher,
        policy=policy,
        clock=clock,
        audit=audit,
        protection=login_protection,
    )
    services = Services(
        settings=settings,
        clock=clock,
        db=db,
        feed=feed,
        accounts=accounts,
        users=UserService(db=db, feed=feed, hasher=hasher, policy=policy, clock=clock, audit=audit),
        tokens=tokens,
        sessions=SessionService(
            db=db,
            feed=feed,
            accounts=accounts,
            second_factor=second_factor,
            tokens=tokens,
            audit=audit,
            clock=clock,
            refresh_ttl=settings.remember_me_ttl,
        ),
        key_file=key_file,
        api_keys=api_keys,
        key_auth=key_auth,
        usage=usage,
        client_ips=ClientIpResolver(trusted_proxies(settings), header=settings.forwarded_header),
        audit=audit,
        throttle=throttle,
        login_protection=login_protection,
        key_abuse=key_abuse,
        service_credentials=ServiceCredentials(
            db=db, audit=audit, key_abuse=key_abuse, clock=clock, pepper=pepper
        ),
        rate_limits=KeyRateLimits(default=settings.api_key_default_rate_limit, link=redis),
        forward_auth=ForwardAuthPolicy(
            settings.forward_auth_rules,
            unmatched=settings.forward_auth_unmatched,
            case_sensitive=settings.forward_auth_case_sensitive,
            reader=UpstreamRequestReader.for_proxy(
                settings.forward_auth_proxy,
                method_header=settings.forward_auth_method_header,
                uri_header=settings.forward_auth_uri_header,
            ),
        ),
        alert_rules=AlertRules(db=db, clock=clock, audit=audit),
        alerts=AlertEngine(db=db, clock=clock, audit=audit, dispatcher=alert_dispatcher),
        alert_dispatcher=alert_dispatcher,
        metrics=metrics,
        checkpoints=checkpoints,
        mailer=mailer,
        password_resets=PasswordResets(
            db=db,
            feed=feed,
            hasher=hasher,
            policy=policy,
            clock=clock,
            audit=audit,
            throttle=throttle,
            mailer=mailer,
            base_url=settings.base_url,
        ),
        second_factor=second_factor,
        sign_in=SignIn(
            tokens=tokens,
            second_factor=second_factor,
            accounts=accounts,
            audit=audit,
            bypass_addresses=tfa_bypass_addresses(settings),
        ),
        server_secret=pepper,
        cluster=cluster,
        redis=redis,
    )
    if redis is not None:
        services.doorbell = ChangeDoorbell(redis, wake=services.wake_change_poller)
        feed.after_commit(services.doorbell.ring)
    _report_internals(services)
    return services


def _report_internals(services: Services) -> None:
    """Cache sizes and hit ratios, buffers, alert delivery: gauges read at scrape time."""
    metrics = services.metrics
    metrics.add_source(
        "cache_entries",
        lambda: {**services.tokens.cache_sizes(), **services.key_auth.cache_sizes()},
    )
    metrics.add_source(
        "cache_hit_ratio_percent",
        lambda: {**services.tokens.cache_hit_ratios(), **services.key_auth.cache_hit_ratios()},
    )
    metrics.add_source(
        "buffered_records",
        lambda: {
            "usage_pending": services.usage.pending,
            "usage_dropped": services.usage.dropped,
            "audit_pending": services.audit.pending,
            "audit_dropped": services.audit.dropped,
        },
    )
    metrics.add_source(
        "alert_deliveries",
        lambda: {
            f"{sink}:{outcome}": int(count)  # type: ignore[call-overload]
            for sink, stats in services.alert_dispatcher.stats.items()
            for outcome, count in stats.items()
        },
    )
    metrics.add_source(
        "blocked_addresses", lambda: {"api_keys": services.key_abuse.blocked_count()}
    )


def configured_rules(settings: Settings) -> tuple[RuleSpec, ...]:
    """Alert rules from the settings, validated now: a bad rule stops the start-up."""
    specs = tuple(
        RuleSpec(
            name=rule.name,
            kind=rule.kind,
            threshold=rule.threshold,
            window_seconds=rule.window_seconds,
            severity=rule.severity,
            enabled=rule.enabled,
        )
        for rule in settings.alert_rules
    )
    for spec in specs:
        try:
            validate_rule(spec)
        except ValidationFailed as error:
            problems = "; ".join(f"{e.field}: {e.message}" for e in error.field_errors)
            raise ConfigurationError(f"alert rule {spec.name!r}: {problems}") from None
    return specs


def _redis_client(url: str) -> Any:
    """A ``redis.asyncio`` client (redis is the optional ``redis`` extra)."""
    try:
        from redis.asyncio import from_url
    except ImportError:
        raise ConfigurationError(
            "AUTHGATE_REDIS_URL needs the redis extra: pip install 'authgate[redis]'"
        ) from None
    return from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
    )


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


def trusted_proxies(settings: Settings) -> TrustedProxies:
    """The configured trusted proxies, validated at start-up."""
    try:
        return TrustedProxies.of(settings.trusted_proxies)
    except AllowEntryError as error:
        raise ConfigurationError(f"AUTHGATE_TRUSTED_PROXIES: {error}") from None


def tfa_bypass_addresses(settings: Settings) -> AllowList:
    """Where UTMStack's X-Bypass-TFA header is honoured from (nowhere by default)."""
    try:
        return AllowList.of(settings.tfa_bypass_header_addresses)
    except AllowEntryError as error:
        raise ConfigurationError(f"AUTHGATE_TFA_BYPASS_HEADER_ADDRESSES: {error}") from None


def prepare_data_dir(settings: Settings) -> None:
    """Create the data dir private to this user (it holds the database and keys); not
    when nothing would live in it (PostgreSQL, every secret given)."""
    directory = settings.data_dir
    if not directory.exists():
        if not settings.uses_data_dir:
            return
        directory.mkdir(mode=0o700, parents=True)
    elif directory.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("data directory %s is accessible by other users; chmod 700 it", directory)


def load_signing_keys(
    settings: Settings, *, clock: Clock = utc_now
) -> tuple[SigningKeyFile | None, KeyRing]:
    """The key ring in force: the HS512 secret, or the key file (created if missing)."""
    if settings.jwt_algorithm == "HS512":
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        return None, keystore.hmac_keyring(secret, settings.jwt_secret_file, now=clock())
    key_file = SigningKeyFile(
        settings.effective_signing_keys_file, algorithm=settings.jwt_algorithm, clock=clock
    )
    return key_file, key_file.load_or_create()
