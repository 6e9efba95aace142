"""API keys and their usage log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", BigIntKey, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_id", sa.String(12), nullable=False),
        sa.Column("key_tail", sa.String(4), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("previous_secret_hash", sa.String(64), nullable=True),
        sa.Column("previous_valid_until", Instant, nullable=True),
        sa.Column("allowed_networks", sa.Text(), nullable=False),
        sa.Column("scopes", sa.String(100), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("generated_at", Instant, nullable=False),
        sa.Column("updated_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=True),
        sa.Column("revoked_at", Instant, nullable=True),
        sa.Column("last_used_at", Instant, nullable=True),
        sa.Column("last_used_ip", sa.String(45), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_api_keys_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("key_id", name="uq_api_keys_key_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index(
        "uq_api_keys_owner_name_live",
        "api_keys",
        ["user_id", "name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        "api_key_usage",
        sa.Column("id", BigIntKey, autoincrement=True, nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=False),
        sa.Column("api_key_name", sa.String(100), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", Instant, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(2048), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("failure_reason", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_key_usage"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_api_key_usage_key_time", "api_key_usage", ["api_key_id", "occurred_at"])
    op.create_index("ix_api_key_usage_occurred_at", "api_key_usage", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_api_key_usage_occurred_at", table_name="api_key_usage")
    op.drop_index("ix_api_key_usage_key_time", table_name="api_key_usage")
    op.drop_table("api_key_usage")
    op.drop_index("uq_api_keys_owner_name_live", table_name="api_keys")
    op.drop_index("ix_api_keys_user_id", table_name="api_keys")
    op.drop_table("api_keys")
