"""Accounts: users, their passwords and second factor, password resets, and signing
in (first factor to tokens, v12's refresh-token sessions).
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate.clock import Clock
from authgate.exceptions import ConfigurationError
from authgate.security.networks import AllowEntryError, AllowList
from authgate.security.passwords import PasswordHasher
from authgate.security.second_factor import SecondFactorKey
from authgate.services.account_notices import AccountNotices
from authgate.services.accounts import AccountService
from authgate.services.mail import Mailer, smtp_server_from
from authgate.services.metrics import Metrics
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.password_resets import PasswordResets
from authgate.services.second_factor import SecondFactorService
from authgate.services.sessions import SessionService
from authgate.services.sign_in import SignIn
from authgate.services.users import UserService
from authgate.settings import Settings
from authgate.storage import keystore
from authgate.wiring.credentials import Tokens
from authgate.wiring.infrastructure import Infrastructure
from authgate.wiring.protection import Protection


@dataclass(frozen=True, slots=True, kw_only=True)
class Accounts:
    accounts: AccountService
    users: UserService
    mailer: Mailer
    notices: AccountNotices
    second_factor: SecondFactorService
    password_resets: PasswordResets


@dataclass(frozen=True, slots=True, kw_only=True)
class Sessions:
    sessions: SessionService
    sign_in: SignIn


def build_accounts(
    settings: Settings, infra: Infrastructure, protection: Protection, clock: Clock
) -> Accounts:
    db, feed, audit = infra.db, infra.feed, infra.audit
    hasher = password_hasher(settings, infra.metrics)
    policy = settings.password_policy
    mailer = Mailer(smtp_server_from(settings.mail))
    notices = AccountNotices(mailer=mailer, clock=clock)
    return Accounts(
        accounts=AccountService(
            db=db,
            feed=feed,
            hasher=hasher,
            policy=policy,
            clock=clock,
            audit=audit,
            protection=protection.login_protection,
        ),
        users=UserService(
            db=db,
            feed=feed,
            hasher=hasher,
            policy=policy,
            clock=clock,
            audit=audit,
            notices=notices,
            resume_keys_on_reactivation=settings.api_keys.resume_on_reactivation,
        ),
        mailer=mailer,
        notices=notices,
        second_factor=second_factor_service(settings, infra, mailer, clock),
        password_resets=PasswordResets(
            db=db,
            feed=feed,
            hasher=hasher,
            policy=policy,
            clock=clock,
            audit=audit,
            throttle=infra.throttle,
            mailer=mailer,
            reset_page=settings.http.reset_page,
        ),
    )


def build_sessions(
    settings: Settings, infra: Infrastructure, tokens: Tokens, accounts: Accounts, clock: Clock
) -> Sessions:
    """Signing in, first factor to tokens, and v12's refresh-token sessions."""
    return Sessions(
        sessions=SessionService(
            db=infra.db,
            feed=infra.feed,
            accounts=accounts.accounts,
            second_factor=accounts.second_factor,
            tokens=tokens.tokens,
            audit=infra.audit,
            clock=clock,
            refresh_ttl=settings.tokens.remember_me_ttl,
            reuse_interval=settings.tokens.refresh_reuse_interval,
        ),
        sign_in=SignIn(
            tokens=tokens.tokens,
            second_factor=accounts.second_factor,
            accounts=accounts.accounts,
            audit=infra.audit,
            bypass_addresses=tfa_bypass_addresses(settings),
        ),
    )


def password_hasher(settings: Settings, metrics: Metrics) -> AsyncPasswordHasher:
    return AsyncPasswordHasher(
        PasswordHasher(settings.password_hashing.argon2),
        config=settings.password_hashing,
        observe=metrics.password_hash_seconds.observe,
        on_overload=metrics.throttled.labels("hashing_overloaded").inc,
    )


def second_factor_service(
    settings: Settings, infra: Infrastructure, mailer: Mailer, clock: Clock
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
        unenrolled=settings.second_factor.unenrolled,
    )


def tfa_bypass_addresses(settings: Settings) -> AllowList:
    """Where UTMStack's X-Bypass-TFA header is honoured from (nowhere by default)."""
    try:
        return AllowList.of(settings.second_factor.bypass_header_addresses)
    except AllowEntryError as error:
        raise ConfigurationError(f"AUTHGATE_TFA_BYPASS_HEADER_ADDRESSES: {error}") from None
