"""Audit trail, throttling state, alert rules and fired alerts, per-key rate limits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Additive only: nodes still running the previous version keep working.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rate_limit", sa.String(64), nullable=True))
    op.create_table(
        "audit_events",
        sa.Column("id", BigIntKey, autoincrement=True, nullable=False),
        sa.Column("occurred_at", Instant, nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.Column("actor_login", sa.String(254), nullable=True),
        sa.Column("actor_user_id", sa.BigInteger(), nullable=True),
        sa.Column("api_key_id", sa.BigInteger(), nullable=True),
        sa.Column("api_key_name", sa.String(100), nullable=True),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("request_path", sa.String(2048), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])
    op.create_index("ix_audit_events_type_time", "audit_events", ["event_type", "occurred_at"])
    op.create_index("ix_audit_events_key_ip", "audit_events", ["api_key_id", "client_ip"])
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain_head"),
    )
    op.create_table(
        "throttle_windows",
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("subject", "window_start", name="pk_throttle_windows"),
    )
    op.create_index("ix_throttle_windows_expires_at", "throttle_windows", ["expires_at"])
    op.create_table(
        "throttle_blocks",
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("blocked_until", Instant, nullable=False),
        sa.Column("strikes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_throttle_blocks"),
    )
    op.create_index("ix_throttle_blocks_blocked_until", "throttle_blocks", ["blocked_until"])
    op.create_table(
        "alert_rules",
        sa.Column("id", BigIntKey, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("updated_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("name", name="uq_alert_rules_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "fired_alerts",
        sa.Column("id", BigIntKey, autoincrement=True, nullable=False),
        sa.Column("rule_key", sa.String(120), nullable=False),
        sa.Column("rule_name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("fired_at", Instant, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fired_alerts"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "uq_fired_alerts_dedupe",
        "fired_alerts",
        ["rule_key", "subject", "window_start"],
        unique=True,
    )
    op.create_index("ix_fired_alerts_fired_at", "fired_alerts", ["fired_at"])


def downgrade() -> None:
    op.drop_index("ix_fired_alerts_fired_at", table_name="fired_alerts")
    op.drop_index("uq_fired_alerts_dedupe", table_name="fired_alerts")
    op.drop_table("fired_alerts")
    op.drop_table("alert_rules")
    op.drop_index("ix_throttle_blocks_blocked_until", table_name="throttle_blocks")
    op.drop_table("throttle_blocks")
    op.drop_index("ix_throttle_windows_expires_at", table_name="throttle_windows")
    op.drop_table("throttle_windows")
    op.drop_table("audit_chain_head")
    op.drop_index("ix_audit_events_key_ip", table_name="audit_events")
    op.drop_index("ix_audit_events_type_time", table_name="audit_events")
    op.drop_index("ix_audit_events_occurred_at", table_name="audit_events")
    op.drop_table("audit_events")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rate_limit")
