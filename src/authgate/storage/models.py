"""SQLAlchemy table models. Schema changes go through an Alembic migration."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A 64-bit auto-increment key; SQLite only auto-increments INTEGER PRIMARY KEY.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    __tablename__ = "users"
    # AUTOINCREMENT: SQLite must never hand a deleted user's id to a new user.
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(50), unique=True)  # stored lower-case
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    first_name: Mapped[str | None] = mapped_column(String(50))
    last_name: Mapped[str | None] = mapped_column(String(50))
    lang_key: Mapped[str] = mapped_column(String(10), default="en")
    activated: Mapped[bool] = mapped_column(Boolean, default=True)
    authorities: Mapped[str] = mapped_column(String(200))  # comma-joined, e.g. "ROLE_USER"
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Tokens issued before this instant are refused ("log out everywhere").
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who created / last changed the user (a login, or "system"), as UTMStack's UserDTO.
    created_by: Mapped[str | None] = mapped_column(String(50))
    last_modified_by: Mapped[str | None] = mapped_column(String(50))
    image_url: Mapped[str | None] = mapped_column(String(256))
    # A pending single-use password-reset key: only its SHA-256 (hex) is stored.
    reset_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    reset_key_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The session (token id) that changed the password keeps working although
    # ``tokens_valid_after`` ends the others; only while ``tokens_valid_after`` is still
    # ``kept_session_cutoff``: any later revocation ends it too.
    kept_session_jti: Mapped[str | None] = mapped_column(String(64))
    kept_session_cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Created without a password: the first completed reset activates the user.
    activation_pending: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # The second factor in force ("TOTP" or "EMAIL"), None without one. Here rather than
    # only in second_factors because every authentication reads the user's row anyway.
    second_factor: Mapped[str | None] = mapped_column(String(8))
    # The session that enrolled it (a token id, or a v12 session id): it proved the
    # factor while enrolling, so it counts as a session that passed it.
    second_factor_session: Mapped[str | None] = mapped_column(String(64))
    # The password was set by someone else (created or reset by an admin) and the user
    # has not changed it since: UTMStack's ``firstLogin``.
    initial_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # Imported from UTMStack (``authgate import utmstack``): its user id, so a second
    # import finds the user again; None for users made here.
    legacy_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The user must choose a new password (UTMStack's ``default_password``); cleared
    # when the password changes.
    password_change_required: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    # UTMStack's fields authgate has no column for (image URL, created/modified by), JSON.
    legacy_profile: Mapped[str | None] = mapped_column(Text)
    # UTMStack's second factor as an earlier import kept it (JSON with the method and the
    # TOTP secret sealed under a key derived from the pepper). No longer written: the next
    # import puts it in force (second_factors) and clears it; a later release drops it.
    legacy_second_factor: Mapped[str | None] = mapped_column(Text)
    # The id UTMStack v12's routes (/api/v1) use; v10/v11 routes keep using the login.
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )


class Session(Base):
    """A v12 login session: one family of refresh tokens (each rotation adds a token to
    the family). Its id is the access tokens' ``sid``; revoking it refuses them too."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    # The login passed the user's second factor (v12's verify-code step).
    second_factor: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )


class RefreshToken(Base):
    """One refresh token of a session, by the SHA-256 of its 32 random bytes (a fast
    unsalted hash suits a high-entropy secret). ``rotated_at`` is set when it was
    exchanged: presenting it again is reuse, and revokes its whole session."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SecondFactor(Base):
    """A user's second-factor secrets: the TOTP secret in force and one being enrolled,
    both encrypted (never plaintext), and the last TOTP step accepted (no replay)."""

    __tablename__ = "second_factors"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    totp_secret: Mapped[str | None] = mapped_column(Text)
    last_totp_step: Mapped[int | None] = mapped_column(BigInteger)
    # Enrolment in progress: the method, its new secret (TOTP), when it was started and
    # when its code was verified (completing needs a verified enrolment).
    pending_method: Mapped[str | None] = mapped_column(String(8))
    pending_totp_secret: Mapped[str | None] = mapped_column(Text)
    pending_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pending_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pending_last_step: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OneTimeCode(Base):
    """A recovery code or an e-mail code, stored as an HMAC only; used once."""

    __tablename__ = "one_time_codes"
    __table_args__ = (
        Index("ix_one_time_codes_user_id_purpose", "user_id", "purpose"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))  # "recovery", "email_login", "email_setup"
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RevokedToken(Base):
    """A logged-out token, remembered until it would have expired anyway."""

    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuthChange(Base):
    """An append-only feed of changes that affect authentication.

    Every process polls it (cheaply, by sequence number) to drop cached state, so a
    revocation on one worker or node is honoured by all of them within a second.
    """

    __tablename__ = "auth_changes"
    # AUTOINCREMENT: sequence numbers must keep growing even after old rows are deleted,
    # or pollers that remember the last number would miss new changes.
    __table_args__ = (
        Index("ix_auth_changes_created_at", "created_at"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """A managed API key. Only the keyed hash of its secret is stored; revoked keys are
    kept (with ``revoked_at``) so usage records and audits keep their names."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # A name is unique among an owner's keys that are not revoked.
        Index(
            "uq_api_keys_owner_name_live",
            "user_id",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    # Internal (usage records and audit events refer to it); people see ``public_id``.
    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    # The key's id in every API, page and SDK: a UUID, as UTMStack's key ids are
    # (an imported key keeps UTMStack's, so its clients' stored ids keep working).
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, default=lambda: str(uuid.uuid4())
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[str] = mapped_column(String(12), unique=True)  # public part of the key
    key_tail: Mapped[str] = mapped_column(String(4))  # last characters, for display
    secret_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256(pepper, key), hex
    # Rotation with grace: the previous secret keeps working until previous_valid_until.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    allowed_networks: Mapped[str] = mapped_column(Text, default="")  # comma-joined, canonical
    scopes: Mapped[str] = mapped_column(String(1000))  # comma-joined
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the owner is deactivated; the key stays refused, even after the owner is
    # reactivated, until the owner or an admin re-enables it (clears this).
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(45))
    # Optional per-key rate limit in the `limits` notation, e.g. "100/minute"; None: none.
    rate_limit: Mapped[str | None] = mapped_column(String(64))
    # A key imported from UTMStack: HMAC-SHA256(pepper, its 43-character plaintext). A
    # legacy key has no public id, so it is looked up by this digest (unique index).
    # Kept after a rotation, so the old key still finds its row during the grace
    # period; the key is "legacy" while its current secret is this one.
    legacy_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    # The key's id in UTMStack (a UUID), so a second import finds the key again.
    legacy_id: Mapped[str | None] = mapped_column(String(36), unique=True)


class LegacyImport(Base):
    """A user or key ``authgate import utmstack`` has imported, by its UTMStack id: kept
    when the user or key is deleted in authgate, so a later run does not bring it back.
    ``imported`` is what the last run imported for a key (sorted JSON of the fields it
    sets), so that a later run applies only what changed in UTMStack since; a user's is
    in ``users.legacy_profile``."""

    __tablename__ = "legacy_imports"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "user" or "key"
    legacy_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    imported: Mapped[str | None] = mapped_column(Text)
    first_imported_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ServiceCredential(Base):
    """A credential another service presents in ``X-Internal-Key`` to call authgate's
    internal endpoints (UTMStack v12's log ingestion checking pushed API keys). Only the
    keyed hash of its secret is stored; revoked credentials are kept for the audit trail."""

    __tablename__ = "service_credentials"
    __table_args__ = (
        # A name is unique among the credentials that are not revoked.
        Index(
            "uq_service_credentials_name_live",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
        # An adopted secret is found by its keyed hash (it has no public id in it).
        Index("uq_service_credentials_secret_lookup", "secret_lookup", unique=True),
        Index("ix_service_credentials_previous_secret_lookup", "previous_secret_lookup"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    credential_id: Mapped[str] = mapped_column(String(12), unique=True)  # public part
    secret_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256(pepper, credential)
    # Rotation with grace: the previous secret keeps working until previous_valid_until.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # secret_hash again when the secret is adopted (a service's existing secret, without
    # the public id: found by this), else NULL; kept when revoked, so a revoked adopted
    # secret is refused as revoked and not adopted by another credential (a retired one
    # is forgotten). previous_secret_lookup: the same for the previous secret (the grace
    # period), cleared with it.
    secret_lookup: Mapped[str | None] = mapped_column(String(64))
    previous_secret_lookup: Mapped[str | None] = mapped_column(String(64))
    endpoints: Mapped[str] = mapped_column(String(1000))  # comma-joined internal endpoints
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKeyUsage(Base):
    """One API-key-authenticated request (or failed attempt with a known key).

    Never the request body, the query string or headers: they may hold secrets.
    """

    __tablename__ = "api_key_usage"
    __table_args__ = (
        Index("ix_api_key_usage_key_time", "api_key_id", "occurred_at"),
        Index("ix_api_key_usage_occurred_at", "occurred_at"),
        # A user's own usage (``GET /api/api-keys/usage`` without admin rights).
        Index("ix_api_key_usage_user_time", "user_id", "occurred_at"),
        # A key's sampled accepted requests, which every usage flush trims: without it
        # the trim walks all of the key's rows, refusals included (a key under attack
        # has hundreds of thousands, every second).
        Index(
            "ix_api_key_usage_key_successes",
            "api_key_id",
            "occurred_at",
            "id",
            sqlite_where=text("failure_reason IS NULL"),
            postgresql_where=text("failure_reason IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    api_key_id: Mapped[int] = mapped_column(BigInteger)
    api_key_name: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    status: Mapped[int] = mapped_column(Integer)
    client_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    latency_ms: Mapped[float] = mapped_column(Float)
    failure_reason: Mapped[str | None] = mapped_column(String(64))


class ApiKeyUsageMinute(Base):
    """One API key's accepted requests in one minute (per-request rows would be 86 million
    a day for a key at 1,000 req/s; these are 1,440). Written by every worker with an
    upsert that adds its counts to the minute's row."""

    __tablename__ = "api_key_usage_minutes"
    __table_args__ = (Index("ix_api_key_usage_minutes_minute", "minute"),)

    api_key_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    api_key_name: Mapped[str] = mapped_column(String(100))
    requests: Mapped[int] = mapped_column(Integer)
    status_2xx: Mapped[int] = mapped_column(Integer)  # and 1xx
    status_3xx: Mapped[int] = mapped_column(Integer)
    status_4xx: Mapped[int] = mapped_column(Integer)
    status_5xx: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Distinct client addresses: exact within a worker, the largest worker's count when
    # several workers served the key in the same minute.
    distinct_ips: Mapped[int] = mapped_column(Integer)
    last_ip: Mapped[str | None] = mapped_column(String(45))
    last_method: Mapped[str] = mapped_column(String(16))
    last_path: Mapped[str] = mapped_column(String(2048))


class AuditEvent(Base):
    """One security event. Append-only and hash-chained: ``hash`` covers the record's
    content and the previous record's hash, so editing or deleting a row is detectable.
    Never a secret, password, token, key or request body."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_type_time", "event_type", "occurred_at"),
        Index("ix_audit_events_key_ip", "api_key_id", "client_ip"),
        # The audit trail's filters and sort (``actor``: login or key name; ``ip``;
        # ``sort=type``), newest first within each: without them each page of a large
        # trail is a scan of the whole table.
        Index("ix_audit_events_actor_login", "actor_login", "id"),
        Index("ix_audit_events_api_key_name", "api_key_name", "id"),
        Index("ix_audit_events_client_ip", "client_ip", "id"),
        Index("ix_audit_events_type_id", "event_type", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(10))  # success | failure
    actor_login: Mapped[str | None] = mapped_column(String(254))
    actor_user_id: Mapped[int | None] = mapped_column(BigInteger)
    api_key_id: Mapped[int | None] = mapped_column(BigInteger)
    api_key_name: Mapped[str | None] = mapped_column(String(100))
    client_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_path: Mapped[str | None] = mapped_column(String(2048))
    reason: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str | None] = mapped_column(Text)  # small JSON object, no secrets
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The chain's end points: the newest record (row 1; appends lock it, so nodes never
    fork the chain) and the last record retention deleted (row 2). ``mac`` signs the
    row under the audit key, so neither end can be moved without the key."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))  # None before the key was introduced


class AuditCheckpoint(Base):
    """A signed checkpoint of the chain as published (to the log and the alert sinks).
    Listed for convenience: the copies outside the database are the ones that count."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (
        Index("ix_audit_checkpoints_created_at", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    node: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(20))  # interval | shutdown | key_introduced | ...
    token: Mapped[str] = mapped_column(Text)  # the compact JWS


class ThrottleWindow(Base):
    """A failure counter for brute-force protection, in the database backend: one row
    per (subject, window start). Redis replaces this table when configured."""

    __tablename__ = "throttle_windows"
    __table_args__ = (Index("ix_throttle_windows_expires_at", "expires_at"),)

    subject: Mapped[str] = mapped_column(String(320), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # POSIX seconds
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ThrottleBlock(Base):
    """A subject (IP, account, account+IP pair) refused until ``blocked_until``."""

    __tablename__ = "throttle_blocks"
    __table_args__ = (Index("ix_throttle_blocks_blocked_until", "blocked_until"),)

    subject: Mapped[str] = mapped_column(String(320), primary_key=True)
    blocked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    strikes: Mapped[int] = mapped_column(Integer)  # consecutive blocks: doubles the delay


class AlertRule(Base):
    __tablename__ = "alert_rules"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    threshold: Mapped[int] = mapped_column(Integer)
    window_seconds: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    severity: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FiredAlert(Base):
    """An alert that fired; unique per (rule, subject, window) so nodes never duplicate."""

    __tablename__ = "fired_alerts"
    __table_args__ = (
        Index("uq_fired_alerts_dedupe", "rule_key", "subject", "window_start", unique=True),
        Index("ix_fired_alerts_fired_at", "fired_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    rule_key: Mapped[str] = mapped_column(String(120))  # rule id or built-in job name
    rule_name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(320))
    window_start: Mapped[int] = mapped_column(BigInteger)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(String(500))


class DeploymentSetting(Base):
    """A fact every node of the deployment must agree on, such as the fingerprint of the
    API key pepper that the stored key digests depend on."""

    __tablename__ = "deployment_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ClusterNode(Base):
    """A running authgate process (a node, or one worker of a node): registered at
    start, refreshed by a heartbeat, removed at a clean stop. Nodes check each other's
    configuration against these rows."""

    __tablename__ = "cluster_nodes"
    __table_args__ = (Index("ix_cluster_nodes_last_seen_at", "last_seen_at"),)

    node_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    pepper_fingerprint: Mapped[str] = mapped_column(String(64))
    active_kid: Mapped[str] = mapped_column(String(100))
    kids: Mapped[str] = mapped_column(String(2000))  # comma-joined: every verifying key
    uses_redis: Mapped[bool] = mapped_column(Boolean)
    # None: a node of a version without the audit key (it writes an unkeyed chain).
    audit_key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # None: a node of a version that did not register its second-factor key.
    tfa_key_fingerprint: Mapped[str | None] = mapped_column(String(64))
