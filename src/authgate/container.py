"""Wiring: builds every service from the settings into one frozen registry,
``Services``. The parts are built in ``authgate.wiring`` (infrastructure, protection,
credentials: tokens and keys, accounts and sessions, monitoring), each builder under 40
lines; here they are joined, with the gate, and the gauges read at scrape time are
registered. Used by the app factory and the CLI; what runs in the background is
``authgate.runtime``.
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate.clock import Clock, utc_now
from authgate.security.clientip import ClientIpResolver
from authgate.services.access_tokens import AccessTokenService
from authgate.services.account_notices import AccountNotices
from authgate.services.accounts import AccountService
from authgate.services.address_block import AddressBlocker
from authgate.services.alerts.dispatch import AlertDispatcher
from authgate.services.alerts.engine import AlertEngine
from authgate.services.alerts.rules import AlertRules
from authgate.services.api_key_auth import ApiKeyAuthenticator
from authgate.services.api_keys import ApiKeyService
from authgate.services.audit.writer import AuditLog
from authgate.services.audit_checkpoints import AuditCheckpoints
from authgate.services.changes import ChangeFeed
from authgate.services.cluster import ClusterMembership
from authgate.services.forward_auth import ForwardAuthPolicy
from authgate.services.gate import Gate
from authgate.services.login_protection import LoginProtection
from authgate.services.mail import Mailer
from authgate.services.metrics import Metrics
from authgate.services.password_resets import PasswordResets
from authgate.services.rate_limits import KeyRateLimits
from authgate.services.redis_link import RedisLink
from authgate.services.second_factor import SecondFactorService
from authgate.services.service_credentials import ServiceCredentials
from authgate.services.sessions import SessionService
from authgate.services.sign_in import SignIn
from authgate.services.signing_keys import SigningKeyFile
from authgate.services.throttle_store import ThrottleStore
from authgate.services.usage import UsageRecorder
from authgate.services.users import UserService
from authgate.settings import Settings
from authgate.storage.db import Database
from authgate.wiring.accounts import (
    Accounts,
    Sessions,
    build_accounts,
    build_sessions,
    tfa_bypass_addresses,
)
from authgate.wiring.credentials import Keys, Tokens, build_keys, build_tokens, load_signing_keys
from authgate.wiring.infrastructure import (
    Infrastructure,
    build_infrastructure,
    create_data_dir,
    prepare_data_dir,
)
from authgate.wiring.monitoring import Monitoring, build_monitoring, configured_rules
from authgate.wiring.protection import Protection, build_protection, trusted_proxies

__all__ = [
    "Services",
    "build_services",
    "configured_rules",
    "create_data_dir",
    "load_signing_keys",
    "prepare_data_dir",
    "tfa_bypass_addresses",
    "trusted_proxies",
]


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
    address_blocker: AddressBlocker
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
    # Mail to the address an account is leaving when its e-mail address changes.
    notices: AccountNotices
    # Password recovery: reset links asked for, mailed and used.
    password_resets: PasswordResets
    second_factor: SecondFactorService
    sign_in: SignIn
    # The deployment's shared secret (the API key pepper): purpose-specific keys, such as
    # the UI's CSRF key, are derived from it, so every node agrees on them.
    server_secret: bytes
    cluster: ClusterMembership | None
    redis: RedisLink | None  # when AUTHGATE_REDIS_URL is set


def build_services(settings: Settings, *, clock: Clock = utc_now) -> Services:
    create_data_dir(settings)
    infra = build_infrastructure(settings, clock)
    protection = build_protection(settings, infra, clock)
    tokens = build_tokens(settings, infra, clock)
    keys = build_keys(settings, infra, protection, tokens, clock)
    accounts = build_accounts(settings, infra, protection, clock)
    sessions = build_sessions(settings, infra, tokens, accounts, clock)
    monitoring = build_monitoring(
        settings,
        infra,
        tokens,
        keys,
        clock,
        tfa_key_fingerprint=accounts.second_factor.key_fingerprint,
    )
    services = _registry(
        settings, clock, (infra, protection, tokens, keys, accounts, sessions, monitoring)
    )
    _report_internals(services)
    return services


def _registry(
    settings: Settings,
    clock: Clock,
    parts: tuple[Infrastructure, Protection, Tokens, Keys, Accounts, Sessions, Monitoring],
) -> Services:
    """The parts, and the gate that joins them, as one registry (each part's fields are
    named like the registry's; what only wires the parts stays out)."""
    infra, protection, tokens, keys, *_ = parts
    gate = Gate(
        tokens=tokens.tokens,
        key_auth=keys.key_auth,
        address_blocker=protection.address_blocker,
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
            "password_reset_pending": services.password_resets.pending,
            "password_reset_dropped": services.password_resets.dropped,
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
        "blocked_addresses", lambda: {"api_keys": services.address_blocker.blocked_count()}
    )
