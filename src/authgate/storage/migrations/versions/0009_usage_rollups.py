"""Per-key, per-minute usage rollups (accepted requests are counted, not logged one by one).

Revision ID: 0009_usage_rollups
Revises: 0008_user_admin
(written on 0006_key_suspension; chained after the migrations merged before it)
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_usage_rollups"
down_revision: str | None = "0008_user_admin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Additive: a new table, which nodes of the previous version simply ignore.
    op.create_table(
        "api_key_usage_minutes",
        sa.Column("api_key_id", sa.BigInteger(), nullable=False),
        sa.Column("minute", Instant, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("api_key_name", sa.String(100), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("status_2xx", sa.Integer(), nullable=False),
        sa.Column("status_3xx", sa.Integer(), nullable=False),
        sa.Column("status_4xx", sa.Integer(), nullable=False),
        sa.Column("status_5xx", sa.Integer(), nullable=False),
        sa.Column("first_at", Instant, nullable=False),
        sa.Column("last_at", Instant, nullable=False),
        sa.Column("distinct_ips", sa.Integer(), nullable=False),
        sa.Column("last_ip", sa.String(45)),
        sa.Column("last_method", sa.String(16), nullable=False),
        sa.Column("last_path", sa.String(2048), nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", "minute", name="pk_api_key_usage_minutes"),
    )
    op.create_index("ix_api_key_usage_minutes_minute", "api_key_usage_minutes", ["minute"])


def downgrade() -> None:
    op.drop_index("ix_api_key_usage_minutes_minute", table_name="api_key_usage_minutes")
    op.drop_table("api_key_usage_minutes")
