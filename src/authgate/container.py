"""Wiring: builds every service from the settings. Used by the app factory and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from dataclasses import dataclass, field
from datetime import timedelta

from authgate.clock import Clock, utc_now
from authgate.exceptions import ConfigurationError
from authgate.security.clientip import ClientIpResolver
from authgate.security.networks import AllowEntryError, AllowList
from authgate.security.passwords import Argon2Parameters, PasswordHasher, PasswordPolicy
from authgate.security.signing_keys import KeyRing
from authgate.security.tokens import JwtCodec
from authgate.services.access_tokens import AccessTokenService
from authgate.services.accounts import AccountService
from authgate.services.api_key_auth import ApiKeyAuthenticator
from authgate.services.api_keys import ApiKeyService, KeyPolicy
from authgate.services.changes import ChangeFeed
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.signing_keys import SigningKeyFile
from authgate.services.usage import UsageRecorder
from authgate.services.user_states import UserStates
from authgate.services.users import UserService
from authgate.settings import Settings
from authgate.storage import keystore
from authgate.storage.db import Database

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_SECONDS = 3600.0
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    feed: ChangeFeed
    accounts: AccountService
    users: UserService
    tokens: AccessTokenService
    key_file: SigningKeyFile | None
    api_keys: ApiKeyService
    key_auth: ApiKeyAuthenticator
    usage: UsageRecorder
    client_ips: ClientIpResolver
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, *, background: bool = True) -> None:
        """Load shared state; with ``background``, start polling and housekeeping."""
        await self.feed.start_from_now()
        await self.tokens.load_revocations()
        if background:
            self._stop = asyncio.Event()
            self._tasks = [
                asyncio.create_task(self._poll_changes(), name="authgate-change-feed"),
                asyncio.create_task(self._housekeeping(), name="authgate-housekeeping"),
                asyncio.create_task(self.usage.run(self._stop), name="authgate-usage-log"),
            ]

    async def close(self) -> None:
        """Stop background work, flush what is buffered, close the database."""
        self._stop.set()
        if self._tasks:
            # The loops end at once on stop; the usage log flushes one last time.
            _, slow = await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE_SECONDS)
            for task in slow:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.usage.flush()  # background=False, or a last batch that failed
        await self.db.close()

    async def _poll_changes(self) -> None:
        while not self._stop.is_set():
            await self.feed.poll_logging_errors()
            if self.key_file is not None:
                self.key_file.reload_if_changed(self._use_keyring)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop.wait(), timeout=self.settings.change_poll_interval_seconds
                )

    def _use_keyring(self, ring: KeyRing) -> None:
        self.tokens.replace_codec(self.tokens.codec.with_keyring(ring))

    async def _housekeeping(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tokens.delete_expired_revocations()
                await self.feed.delete_old()
                await self.usage.delete_expired()
            except Exception as error:  # noqa: BLE001 - retried at the next interval
                log.warning("housekeeping failed: %s", type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=HOUSEKEEPING_INTERVAL_SECONDS)


def build_services(settings: Settings, *, clock: Clock = utc_now) -> Services:
    prepare_data_dir(settings)
    db = Database(settings.effective_database_url)
    feed = ChangeFeed(db, clock=clock)
    hasher = AsyncPasswordHasher(
        PasswordHasher(
            Argon2Parameters(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            )
        ),
        threads=settings.password_hashing_threads,
    )
    policy = PasswordPolicy(
        min_length=settings.password_min_length, max_length=settings.password_max_length
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
        pepper=pepper,
        policy=KeyPolicy(
            require_expiry=settings.api_key_require_expiry,
            max_lifetime=timedelta(days=settings.api_key_max_lifetime_days),
            default_scopes=frozenset(settings.api_key_default_scopes),
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
        flush_interval=settings.usage_flush_interval_seconds,
        retention=timedelta(days=settings.usage_retention_days),
        log_successes=settings.usage_log_successes,
    )
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        feed=feed,
        accounts=AccountService(db=db, feed=feed, hasher=hasher, policy=policy, clock=clock),
        users=UserService(db=db, feed=feed, hasher=hasher, policy=policy, clock=clock),
        tokens=tokens,
        key_file=key_file,
        api_keys=api_keys,
        key_auth=key_auth,
        usage=usage,
        client_ips=ClientIpResolver(trusted_proxies(settings), header=settings.forwarded_header),
    )


def trusted_proxies(settings: Settings) -> AllowList:
    """The configured trusted proxies, validated at start-up."""
    try:
        return AllowList.of(settings.trusted_proxies)
    except AllowEntryError as error:
        raise ConfigurationError(f"AUTHGATE_TRUSTED_PROXIES: {error}") from None


def prepare_data_dir(settings: Settings) -> None:
    """Create the data dir private to this user (it holds the database and keys)."""
    directory = settings.data_dir
    if not directory.exists():
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
