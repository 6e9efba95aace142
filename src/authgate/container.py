"""Wiring: builds every service from the settings, in parts (infrastructure, protection,
credentials: tokens, keys, accounts, sessions; monitoring), each builder under 40
lines. Used by the app factory and the CLI; what runs in the background is
``authgate.runtime``.

Over 400 lines for a reason: the registry's fields and the parts' are the one list of
every service and how it is built; splitting it would scatter that list.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from typing import Any

from authgate import __version__
from authgate.clock import Clock, utc_now
from authgate.exceptions import ConfigurationError, ValidationFailed
from authgate.security.audit_chain import AuditKey
from authgate.security.clientip import ClientIpResolver
from authgate.security.networks import AllowEntryError, AllowList, TrustedProxies
from authgate.security.passwords import PasswordHasher
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
from authgate.services.api_keys import ApiKeyService
from authgate.services.audit.writer import AuditLog
from authgate.services.audit_checkpoints import AuditCheckpoints
from authgate.services.changes import ChangeFeed
from authgate.services.cluster import ClusterMembership
from authgate.services.forward_auth import ForwardAuthPolicy
from authgate.services.gate import Gate
from authgate.services.key_abuse import KeyAbuseGuard
from authgate.services.login_protection import LoginProtection
from authgate.services.mail import Mailer, smtp_server_from
from authgate.services.metrics import Metrics
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.password_resets import PasswordResets
from authgate.services.rate_limits import KeyRateLimits
from authgate.services.redis_link import SOCKET_TIMEOUT_SECONDS, RedisLink
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
from authgate.services.usage import UsageRecorder
from authgate.services.user_states import UserStates
from authgate.services.users import UserService
from authgate.settings import Settings, prometheus_multiprocess_dir
from authgate.storage import keystore
from authgate.storage.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Every service of one process, built once by :func:`build_services`; what runs in
    the background on top of them is ``authgate.runtime.BackgroundWork``."""

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
    # The verdict on every request's credentials (API routes, metrics, forward-auth).
    gate: Gate
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
    server_secret: bytes
    cluster: ClusterMembership | None
    redis: RedisLink | None  # when AUTHGATE_REDIS_URL is set


@dataclass(frozen=True, slots=True, kw_only=True)
class _Infrastructure:
    """Storage and the record: what every other part writes through."""

    db: Database
    feed: ChangeFeed
    metrics: Metrics
    audit_key: AuditKey
    audit: AuditLog
    usage: UsageRecorder
    redis: RedisLink | None
    throttle: ThrottleStore


@dataclass(frozen=True, slots=True, kw_only=True)
class _Protection:
    """Throttling and request rules: who may try, how often, and on which paths."""

    client_ips: ClientIpResolver
    login_protection: LoginProtection
    key_abuse: KeyAbuseGuard
    rate_limits: KeyRateLimits
    forward_auth: ForwardAuthPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class _Tokens:
    key_file: SigningKeyFile | None
    user_states: UserStates
    tokens: AccessTokenService


@dataclass(frozen=True, slots=True, kw_only=True)
class _Keys:
    pepper: bytes
    api_keys: ApiKeyService
    key_auth: ApiKeyAuthenticator
    service_credentials: ServiceCredentials


@dataclass(frozen=True, slots=True, kw_only=True)
class _Accounts:
    accounts: AccountService
    users: UserService
    mailer: Mailer
    second_factor: SecondFactorService
    password_resets: PasswordResets


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sessions:
    sessions: SessionService
    sign_in: SignIn


@dataclass(frozen=True, slots=True, kw_only=True)
class _Monitoring:
    alert_dispatcher: AlertDispatcher
    alert_rules: AlertRules
    alerts: AlertEngine
    cluster: ClusterMembership
    checkpoints: AuditCheckpoints


def build_services(settings: Settings, *, clock: Clock = utc_now) -> Services:
    prepare_data_dir(settings)
    infra = _infrastructure(settings, clock)
    protection = _protection(settings, infra, clock)
    tokens = _tokens(settings, infra, clock)
    keys = _keys(settings, infra, protection, tokens, clock)
    accounts = _accounts(settings, infra, protection, clock)
    sessions = _sessions(settings, infra, tokens, accounts, clock)
    monitoring = _monitoring(settings, infra, tokens, keys, clock)
    services = _registry(
        settings, clock, (infra, protection, tokens, keys, accounts, sessions, monitoring)
    )
    _report_internals(services)
    return services


def _infrastructure(settings: Settings, clock: Clock) -> _Infrastructure:
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
    )
    audit.subscribe(metrics.on_audit)
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    redis = RedisLink(_redis_client(redis_url)) if redis_url else None
    throttle: ThrottleStore = (
        FallbackThrottleStore(RedisThrottleStore(redis.client), DatabaseThrottleStore(db), redis)
        if redis is not None
        else DatabaseThrottleStore(db)
    )
    return _Infrastructure(
        db=db,
        feed=ChangeFeed(db, clock=clock),
        metrics=metrics,
        audit_key=audit_key,
        audit=audit,
        usage=UsageRecorder(db=db, clock=clock, config=settings.usage),
        redis=redis,
        throttle=throttle,
    )


def _protection(settings: Settings, infra: _Infrastructure, clock: Clock) -> _Protection:
    audit, throttle = infra.audit, infra.throttle
    return _Protection(
        client_ips=ClientIpResolver(trusted_proxies(settings), header=settings.forwarded_header),
        login_protection=LoginProtection(
            store=throttle, limits=settings.login, clock=clock, audit=audit
        ),
        key_abuse=KeyAbuseGuard(
            store=throttle, feed=infra.feed, limits=settings.key_abuse, clock=clock, audit=audit
        ),
        rate_limits=KeyRateLimits(default=settings.api_key_default_rate_limit, link=infra.redis),
        forward_auth=ForwardAuthPolicy.configured(settings.forward_auth),
    )


def _tokens(settings: Settings, infra: _Infrastructure, clock: Clock) -> _Tokens:
    key_file, ring = load_signing_keys(settings, clock=clock)
    codec = JwtCodec(
        ring,
        issuer=settings.tokens.issuer,
        audience=settings.tokens.audience,
        leeway=settings.tokens.leeway,
    )
    user_states = UserStates(
        db=infra.db,
        feed=infra.feed,
        max_entries=settings.user_cache.size,
        ttl=settings.user_cache.ttl_seconds,
    )
    tokens = AccessTokenService(
        codec=codec,
        db=infra.db,
        feed=infra.feed,
        users=user_states,
        clock=clock,
        audit=infra.audit,
        token_ttl=settings.tokens.ttl,
        remember_me_ttl=settings.tokens.remember_me_ttl,
        cache_size=settings.tokens.cache_size,
    )
    return _Tokens(key_file=key_file, user_states=user_states, tokens=tokens)


def _keys(
    settings: Settings,
    infra: _Infrastructure,
    protection: _Protection,
    tokens: _Tokens,
    clock: Clock,
) -> _Keys:
    db, feed, audit = infra.db, infra.feed, infra.audit
    pepper = keystore.load_or_create_pepper(
        settings.api_key_pepper.get_secret_value() if settings.api_key_pepper else None,
        settings.api_key_pepper_file,
        settings.effective_api_key_pepper_file,
    )
    return _Keys(
        pepper=pepper,
        api_keys=ApiKeyService(
            db=db, feed=feed, clock=clock, audit=audit, pepper=pepper, policy=settings.api_keys
        ),
        key_auth=ApiKeyAuthenticator(
            db=db,
            feed=feed,
            users=tokens.user_states,
            clock=clock,
            pepper=pepper,
            cache_size=settings.api_keys.cache_size,
            record_ttl=settings.api_keys.cache_ttl_seconds,
            unknown_cache_size=settings.api_keys.unknown_cache_size,
            unknown_ttl=settings.api_keys.unknown_cache_ttl_seconds,
        ),
        service_credentials=ServiceCredentials(
            db=db, audit=audit, key_abuse=protection.key_abuse, clock=clock, pepper=pepper
        ),
    )


def _accounts(
    settings: Settings, infra: _Infrastructure, protection: _Protection, clock: Clock
) -> _Accounts:
    db, feed, audit = infra.db, infra.feed, infra.audit
    hasher = _password_hasher(settings, infra.metrics)
    policy = settings.password_policy
    mailer = Mailer(smtp_server_from(settings.mail))
    return _Accounts(
        accounts=AccountService(
            db=db,
            feed=feed,
            hasher=hasher,
            policy=policy,
            clock=clock,
            audit=audit,
            protection=protection.login_protection,
        ),
        users=UserService(db=db, feed=feed, hasher=hasher, policy=policy, clock=clock, audit=audit),
        mailer=mailer,
        second_factor=_second_factor(settings, infra, mailer, clock),
        password_resets=PasswordResets(
            db=db,
            feed=feed,
            hasher=hasher,
            policy=policy,
            clock=clock,
            audit=audit,
            throttle=infra.throttle,
            mailer=mailer,
            base_url=settings.http.base_url,
        ),
    )


def _sessions(
    settings: Settings, infra: _Infrastructure, tokens: _Tokens, accounts: _Accounts, clock: Clock
) -> _Sessions:
    """Signing in, first factor to tokens, and v12's refresh-token sessions."""
    return _Sessions(
        sessions=SessionService(
            db=infra.db,
            feed=infra.feed,
            accounts=accounts.accounts,
            second_factor=accounts.second_factor,
            tokens=tokens.tokens,
            audit=infra.audit,
            clock=clock,
            refresh_ttl=settings.tokens.remember_me_ttl,
        ),
        sign_in=SignIn(
            tokens=tokens.tokens,
            second_factor=accounts.second_factor,
            accounts=accounts.accounts,
            audit=infra.audit,
            bypass_addresses=tfa_bypass_addresses(settings),
        ),
    )


def _password_hasher(settings: Settings, metrics: Metrics) -> AsyncPasswordHasher:
    return AsyncPasswordHasher(
        PasswordHasher(settings.password_hashing.argon2),
        config=settings.password_hashing,
        observe=metrics.password_hash_seconds.observe,
        on_overload=metrics.throttled.labels("hashing_overloaded").inc,
    )


def _second_factor(
    settings: Settings, infra: _Infrastructure, mailer: Mailer, clock: Clock
) -> SecondFactorService:
    return SecondFactorService(
        db=infra.db,
        feed=infra.feed,
        key=SecondFactorKey(
            keystore.load_or_create_tfa_key(
                settings.tfa_key.get_secret_value() if settings.tfa_key else None,
                settings.tfa_key_file,
                settings.effective_tfa_key_file,
            )
        ),
        mailer=mailer,
        throttle=infra.throttle,
        audit=infra.audit,
        clock=clock,
        requirement=settings.second_factor.required,
        issuer=settings.second_factor.issuer,
    )


def _monitoring(
    settings: Settings, infra: _Infrastructure, tokens: _Tokens, keys: _Keys, clock: Clock
) -> _Monitoring:
    db, audit = infra.db, infra.audit
    dispatcher = AlertDispatcher(
        sinks_from_settings(settings.alerts, settings.mail),
        retries=settings.alerts.delivery_retries,
    )
    cluster = ClusterMembership(
        db=db,
        clock=clock,
        pepper=keys.pepper,
        audit_key_fingerprint=infra.audit_key.fingerprint,
        keyring=lambda: tokens.tokens.codec.keyring,
        uses_redis=infra.redis is not None,
        version=__version__,
    )
    return _Monitoring(
        alert_dispatcher=dispatcher,
        alert_rules=AlertRules(db=db, clock=clock, audit=audit),
        alerts=AlertEngine(db=db, clock=clock, audit=audit, dispatcher=dispatcher),
        cluster=cluster,
        checkpoints=AuditCheckpoints(
            db=db,
            audit=audit,
            keyring=lambda: tokens.tokens.codec.keyring,
            issuer=settings.tokens.issuer,
            dispatcher=dispatcher,
            clock=clock,
            node=lambda: cluster.node_id,
            interval=settings.audit.checkpoint_interval_seconds,
            retention=settings.audit.retention,
        ),
    )


def _registry(
    settings: Settings,
    clock: Clock,
    parts: tuple[_Infrastructure, _Protection, _Tokens, _Keys, _Accounts, _Sessions, _Monitoring],
) -> Services:
    """The parts, and the gate that joins them, as one registry (each part's fields are
    named like the registry's; what only wires the parts stays out)."""
    infra, protection, tokens, keys, *_ = parts
    gate = Gate(
        tokens=tokens.tokens,
        key_auth=keys.key_auth,
        key_abuse=protection.key_abuse,
        rate_limits=protection.rate_limits,
        metrics=infra.metrics,
        audit=infra.audit,
        usage=infra.usage,
        clock=clock,
        audit_key_successes=settings.audit.api_key_successes,
        idle_seconds=settings.audit.key_idle_seconds,
    )
    wiring_only = {"audit_key", "user_states", "pepper"}
    fields = {
        name: getattr(part, name)
        for part in parts
        for name in part.__dataclass_fields__
        if name not in wiring_only
    }
    return Services(settings=settings, clock=clock, gate=gate, server_secret=keys.pepper, **fields)


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
        for rule in settings.alerts.rules
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


def trusted_proxies(settings: Settings) -> TrustedProxies:
    """The configured trusted proxies, validated at start-up."""
    try:
        return TrustedProxies.of(settings.trusted_proxies)
    except AllowEntryError as error:
        raise ConfigurationError(f"AUTHGATE_TRUSTED_PROXIES: {error}") from None


def tfa_bypass_addresses(settings: Settings) -> AllowList:
    """Where UTMStack's X-Bypass-TFA header is honoured from (nowhere by default)."""
    try:
        return AllowList.of(settings.second_factor.bypass_header_addresses)
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
    if settings.tokens.algorithm == "HS512":
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        return None, keystore.hmac_keyring(secret, settings.jwt_secret_file, now=clock())
    key_file = SigningKeyFile(
        settings.effective_signing_keys_file, algorithm=settings.tokens.algorithm, clock=clock
    )
    return key_file, key_file.load_or_create()
