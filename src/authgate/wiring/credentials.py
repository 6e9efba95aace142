"""Credentials: the tokens (and the key ring that signs them), the API keys and the
services' credentials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from authgate.clock import Clock, utc_now
from authgate.security.signing_keys import KeyRing
from authgate.security.tokens import JwtCodec
from authgate.services.access_tokens import AccessTokenService
from authgate.services.api_key_auth import ApiKeyAuthenticator
from authgate.services.api_keys import ApiKeyService
from authgate.services.service_credentials import ServiceCredentials
from authgate.services.signing_keys import SigningKeyFile
from authgate.services.user_states import UserStates
from authgate.settings import UTMSTACK_DEFAULT_TENANT, Settings
from authgate.storage import keystore
from authgate.wiring.infrastructure import Infrastructure
from authgate.wiring.protection import Protection

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tokens:
    key_file: SigningKeyFile | None
    user_states: UserStates
    tokens: AccessTokenService


@dataclass(frozen=True, slots=True, kw_only=True)
class Keys:
    pepper: bytes
    api_keys: ApiKeyService
    key_auth: ApiKeyAuthenticator
    service_credentials: ServiceCredentials


def build_tokens(settings: Settings, infra: Infrastructure, clock: Clock) -> Tokens:
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
        tenant_id=settings.v12_tenant_id,
        default_tenant=settings.v12_tenant_id == UTMSTACK_DEFAULT_TENANT,
    )
    return Tokens(key_file=key_file, user_states=user_states, tokens=tokens)


def build_keys(
    settings: Settings,
    infra: Infrastructure,
    protection: Protection,
    tokens: Tokens,
    clock: Clock,
) -> Keys:
    db, feed, audit = infra.db, infra.feed, infra.audit
    pepper = keystore.load_or_create_pepper(
        settings.api_key_pepper.get_secret_value() if settings.api_key_pepper else None,
        settings.api_key_pepper_file,
        settings.effective_api_key_pepper_file,
    )
    return Keys(
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
            db=db,
            audit=audit,
            address_blocker=protection.address_blocker,
            clock=clock,
            pepper=pepper,
        ),
    )


def load_signing_keys(
    settings: Settings, *, clock: Clock = utc_now
) -> tuple[SigningKeyFile | None, KeyRing]:
    """The key ring in force: the HS512 secret, or the key file (created if missing)."""
    if settings.tokens.algorithm == "HS512":
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        return None, keystore.hmac_keyring(secret, settings.jwt_secret_file, now=clock())
    key_file = SigningKeyFile(
        settings.effective_signing_keys_file,
        algorithm=settings.tokens.algorithm,
        clock=clock,
        files=keystore,
    )
    ring = key_file.load_or_create()
    if ring.active.algorithm != settings.tokens.algorithm:
        log.warning(
            "AUTHGATE_JWT_ALGORITHM is %s but the active signing key is %s, which keeps "
            "signing: `authgate signing-keys rotate` with this setting switches",
            settings.tokens.algorithm,
            ring.active.algorithm,
        )
    return key_file, ring
