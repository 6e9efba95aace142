"""Wiring: builds every service from the settings. Used by the app factory and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
from dataclasses import dataclass, field
from datetime import timedelta

from authgate.clock import Clock, utc_now
from authgate.security.passwords import Argon2Parameters, PasswordHasher, PasswordPolicy
from authgate.security.signing_keys import KeyRing
from authgate.security.tokens import JwtCodec
from authgate.services.access_tokens import AccessTokenService
from authgate.services.accounts import AccountService
from authgate.services.changes import ChangeFeed
from authgate.services.password_hashing import AsyncPasswordHasher
from authgate.services.signing_keys import SigningKeyFile
from authgate.services.user_states import UserStates
from authgate.services.users import UserService
from authgate.settings import Settings
from authgate.storage import keystore
from authgate.storage.db import Database

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_SECONDS = 3600.0


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
            ]

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
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
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        feed=feed,
        accounts=AccountService(db=db, feed=feed, hasher=hasher, policy=policy, clock=clock),
        users=UserService(db=db, feed=feed, hasher=hasher, policy=policy, clock=clock),
        tokens=tokens,
        key_file=key_file,
    )


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
