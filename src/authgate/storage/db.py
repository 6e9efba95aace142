"""Engine and sessions for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import Connection, Engine, Row, event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import greenlet_spawn

from authgate.exceptions import ConfigurationError
from authgate.storage import sqlite_hops
from authgate.storage.alert_repository import AlertRepository
from authgate.storage.api_key_repository import (
    ApiKeyRepository,
    UsageRepository,
    legacy_verification_row,
    verification_row,
)
from authgate.storage.audit_checkpoint_repository import AuditCheckpointRepository
from authgate.storage.audit_repository import AuditRepository
from authgate.storage.cluster_repository import ClusterRepository
from authgate.storage.database_url import POSTGRES_EXTRA_HINT
from authgate.storage.errors import conflict
from authgate.storage.errors import is_unavailable as is_unavailable  # re-exported: former home
from authgate.storage.repositories import (
    LOGIN_ROWS,
    ChangeRepository,
    LegacyImportRepository,
    RevokedTokenRepository,
    UserRepository,
    changes_after,
    login_row_of,
    second_factor_of,
)
from authgate.storage.second_factor_repository import (
    OneTimeCodeRepository,
    SecondFactorRepository,
)
from authgate.storage.service_credential_repository import ServiceCredentialRepository
from authgate.storage.session_repository import SessionRepository
from authgate.storage.sqlite_reads import AnySelect, SqlitePointReads
from authgate.storage.text import storable_text as storable_text  # re-exported: former home

CONNECT_TIMEOUT_SECONDS = 5

T = TypeVar("T")
Arguments = TypeVarTuple("Arguments")


def _missing_driver(drivername: str, module: str | None) -> str:
    if drivername == "postgresql+asyncpg":
        return f"PostgreSQL needs the asyncpg driver, which is not installed: {POSTGRES_EXTRA_HINT}"
    return (
        f"the database driver of {drivername}:// is not installed ({module}); authgate "
        "speaks to PostgreSQL through asyncpg: write postgresql:// or postgresql+asyncpg://"
    )


class Database:
    """Owns the engine; hands out sessions. Services own transactions.

    The repositories are attributes (``db.users(session)``), so that services get them
    with the database, typed by the protocols of ``authgate.services.ports``."""

    users = UserRepository
    revoked_tokens = RevokedTokenRepository
    changes = ChangeRepository
    user_sessions = SessionRepository
    second_factors = SecondFactorRepository
    one_time_codes = OneTimeCodeRepository
    cluster = ClusterRepository
    service_credentials = ServiceCredentialRepository
    alerts = AlertRepository
    audit_checkpoints = AuditCheckpointRepository
    api_keys = ApiKeyRepository
    usage = UsageRepository
    audit = AuditRepository
    legacy_imports = LegacyImportRepository
    verification_row = staticmethod(verification_row)
    legacy_verification_row = staticmethod(legacy_verification_row)

    def __init__(self, url: str, *, connections: int | None = None) -> None:
        """``connections``: a pool of exactly that many connections (none beyond it),
        for work of its own that must never wait behind requests; by default
        SQLAlchemy's pool (5, and up to 10 more under load)."""
        try:
            parsed = make_url(url)
        except Exception as error:  # noqa: BLE001 - any parse failure means a bad setting
            raise ConfigurationError(f"invalid database URL ({type(error).__name__})") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigurationError("authgate supports SQLite and PostgreSQL databases only")
        options: dict[str, Any] = {
            # Never put bound parameters (hashes, e-mails) into exception messages or logs.
            "hide_parameters": True,
        }
        if connections is not None:
            options["pool_size"], options["max_overflow"] = connections, 0
        if self.dialect == "postgresql":
            # A database host that drops packets must not hold a request for asyncpg's
            # default minute: the caller gets its 503 within this time.
            options["connect_args"] = {"timeout": CONNECT_TIMEOUT_SECONDS}
        try:
            self.engine: AsyncEngine = create_async_engine(parsed, **options)
        except ModuleNotFoundError as error:
            raise ConfigurationError(_missing_driver(parsed.drivername, error.name)) from None
        self._point_reads: SqlitePointReads | None = None
        if self.dialect == "sqlite":
            self._point_reads = SqlitePointReads.for_url(parsed, self.engine.sync_engine.dialect)
            _create_private_file(parsed)
            event.listen(self.engine.sync_engine, "connect", _configure_sqlite)
            _skip_idle_rollbacks(self.engine.sync_engine.dialect)
        else:
            _ping_when_idle(self.engine.sync_engine)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; nothing is committed."""
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on success and rolled back on error.

        A unique key (or other integrity constraint) broken by a flush or the commit is
        raised as :class:`~authgate.storage.errors.Conflict`."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except exc.IntegrityError as error:
            raise conflict(error) from None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection for Core reads on hot paths, in autocommit: a single read
        needs no BEGIN and no ROLLBACK (two round trips less on PostgreSQL). SQLite's
        driver sends no BEGIN before a read anyway, and switching its connection to
        autocommit and back costs several calls to aiosqlite's thread (an isolation
        level set twice, a PRAGMA), so it is left as it is there."""
        async with self.engine.connect() as connection:
            if self.is_sqlite:
                yield connection
            else:
                yield await connection.execution_options(isolation_level="AUTOCOMMIT")

    async def read(
        self,
        reading: Callable[[Connection, *Arguments], T],
        *args: *Arguments,
    ) -> T:
        """``reading(connection, ...)`` on a bare connection (autocommit on PostgreSQL,
        as ``connection()``): the hot paths' reads, with SQLAlchemy's synchronous API.

        The checkout, the statements and the return all run in one greenlet: an async
        connection spends a greenlet on each of those steps, and its return, a task of
        its own (SQLAlchemy shields it from cancellation); that was ~0.1 ms of CPU a
        read on aiosqlite. The return cannot be cancelled halfway here either: on a
        connection that runs reads only it does no I/O (SQLite opens no transaction
        for a SELECT and its idle ROLLBACK is skipped; PostgreSQL is in autocommit), so
        the greenlet never yields in it."""
        return await greenlet_spawn(self._read, reading, *args)

    def _read(self, reading: Callable[[Connection, *Arguments], T], *args: *Arguments) -> T:
        with self.engine.sync_engine.connect() as connection:
            if not self.is_sqlite:
                connection.execution_options(isolation_level="AUTOCOMMIT")
            return reading(connection, *args)

    async def point_rows(self, statement: AnySelect, parameters: Mapping[str, Any]) -> Any:
        """The rows of ``statement`` (built once, at module level or cached), for a
        login's reads: on a SQLite file one call into a dedicated read-only connection's
        thread without SQLAlchemy's execution layer (``sqlite_reads``), else as
        ``read``. Rows are named tuples or ``Row``: read them by column name or index."""
        if self._point_reads is not None:
            rows = await self._point_reads.rows(statement, parameters)
            if rows is not None:
                return rows
        return await self.read(_all_rows, statement, parameters)

    async def login_row(self, identifier: str) -> Any | None:
        """The user whose login or e-mail is ``identifier``, as a login reads it
        (``repositories.login_row_of``); None for a name no user can have."""
        if not storable_text(identifier):
            return None
        rows = await self.point_rows(LOGIN_ROWS, {"identifier": identifier})
        return login_row_of(rows, identifier)

    async def second_factor_of(self, user_id: int) -> str | None:
        """See ``repositories.second_factor_of``: one statement, one checkout."""
        return await self.read(second_factor_of, user_id)

    async def changes_after(self, seq: int, limit: int) -> Sequence[Row[int, str, str, datetime]]:
        """See ``repositories.changes_after``: one statement, one checkout."""
        return await self.read(changes_after, seq, limit)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection in a transaction, committed on success (Core writes on hot
        paths); a broken constraint is raised as :class:`~authgate.storage.errors.Conflict`."""
        try:
            async with self.engine.begin() as connection:
                yield connection
        except exc.IntegrityError as error:
            raise conflict(error) from None

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        if self._point_reads is not None:
            await self._point_reads.close()
        await self.engine.dispose()


def _all_rows(
    connection: Connection, statement: AnySelect, parameters: Mapping[str, Any]
) -> Sequence[Row[Any]]:
    return connection.execute(statement, parameters).all()


# A pooled PostgreSQL connection idle for longer than this is pinged before use.
IDLE_PING_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it has been idle for a while.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: one more round trip than
    the statement itself (measured with 1,000,000 keys: a cache-miss key verification
    0.97 ms p50 / 2.0 ms p99 with it, 0.50 / 1.06 without). A connection given back
    moments ago was alive moments ago; one idle for over ``IDLE_PING_SECONDS`` (the
    database may have restarted meanwhile) is pinged, and replaced if the ping fails
    (the pool's own retry on ``DisconnectionError``). A restart noticed mid-statement
    instead (a connection used within the last second) fails that statement, which is
    answered 503; SQLAlchemy then discards every connection of the pool made before it,
    so it happens at most once per process and restart."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - whatever the cause, it cannot serve
            raise exc.DisconnectionError(type(error).__name__) from None


def _create_private_file(url: URL) -> None:
    """Create a new SQLite database file readable by its owner only (0600). SQLite would
    create it under the umask (0644 usually), and gives its ``-wal`` and ``-shm`` files
    the database's mode: password hashes and the audit trail would then be protected by
    the data directory's mode alone. An existing file, an in-memory database, a URI
    filename and a missing directory are left to SQLite."""
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:") or url.query.get("uri"):
        return
    with suppress(OSError):  # there already, or SQLite will say what is wrong
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Each statement one call into aiosqlite's thread instead of three or four.
    sqlite_hops.install(dbapi_connection)
    # WAL lets readers (other workers) proceed during a write; busy_timeout makes
    # concurrent writers wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _skip_idle_rollbacks(dialect: Any) -> None:
    """Make SQLite's COMMIT and ROLLBACK outside a transaction free.

    sqlite3 itself does nothing for them when no transaction is open, but aiosqlite
    still sends each to its thread and back, and SQLAlchemy sends many: after every
    read, and twice when a session closes (the session's rollback, then the pool's
    reset). ``in_transaction`` is sqlite3's own test (``sqlite3_get_autocommit``, no
    I/O), read before the call instead of inside it.
    """
    rollback, commit = dialect.do_rollback, dialect.do_commit

    def do_rollback(dbapi_connection: Any) -> None:
        if _in_transaction(dbapi_connection):
            rollback(dbapi_connection)

    def do_commit(dbapi_connection: Any) -> None:
        if _in_transaction(dbapi_connection):
            commit(dbapi_connection)

    dialect.do_rollback = do_rollback
    dialect.do_commit = do_commit


def _in_transaction(dbapi_connection: Any) -> bool:
    """Whether the sqlite3 connection under SQLAlchemy's adapter has a transaction open
    (True when it cannot tell: then the call is made, as before)."""
    try:
        return bool(dbapi_connection.driver_connection.in_transaction)
    except Exception:  # noqa: BLE001 - unknown: behave as without this shortcut
        return True
