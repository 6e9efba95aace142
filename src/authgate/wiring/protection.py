"""Throttling and request rules: who may try, how often, and on which paths."""

from __future__ import annotations

from dataclasses import dataclass

from authgate.clock import Clock
from authgate.exceptions import ConfigurationError
from authgate.security.clientip import ClientIpResolver
from authgate.security.networks import AllowEntryError, TrustedProxies
from authgate.services.address_block import AddressBlocker
from authgate.services.forward_auth import ForwardAuthPolicy
from authgate.services.login_protection import LoginProtection
from authgate.services.rate_limits import KeyRateLimits
from authgate.settings import Settings
from authgate.wiring.infrastructure import Infrastructure


@dataclass(frozen=True, slots=True, kw_only=True)
class Protection:
    """Throttling and request rules: who may try, how often, and on which paths."""

    client_ips: ClientIpResolver
    login_protection: LoginProtection
    address_blocker: AddressBlocker
    rate_limits: KeyRateLimits
    forward_auth: ForwardAuthPolicy


def build_protection(settings: Settings, infra: Infrastructure, clock: Clock) -> Protection:
    audit, throttle = infra.audit, infra.throttle
    proxies = trusted_proxies(settings)
    return Protection(
        client_ips=ClientIpResolver(proxies, header=settings.forwarded_header),
        login_protection=LoginProtection(
            store=throttle,
            limits=settings.login,
            clock=clock,
            audit=audit,
            max_waiting=settings.password_hashing.queue_size,
            max_wait_seconds=settings.password_hashing.queue_timeout,
        ),
        address_blocker=AddressBlocker(
            store=throttle,
            feed=infra.feed,
            limits=settings.key_abuse,
            clock=clock,
            audit=audit,
            never_blocked=proxies,
        ),
        rate_limits=KeyRateLimits(default=settings.api_key_default_rate_limit, link=infra.redis),
        forward_auth=ForwardAuthPolicy.configured(settings.forward_auth),
    )


def trusted_proxies(settings: Settings) -> TrustedProxies:
    """The configured trusted proxies, validated at start-up."""
    try:
        return TrustedProxies.of(settings.trusted_proxies)
    except AllowEntryError as error:
        raise ConfigurationError(f"AUTHGATE_TRUSTED_PROXIES: {error}") from None
