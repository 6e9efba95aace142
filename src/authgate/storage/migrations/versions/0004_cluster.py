"""Cluster membership, deployment-wide facts, longer scope lists.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)
# SQLite's table rebuild must keep AUTOINCREMENT: key ids are never reused.
_API_KEYS_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Additive only: nodes still running the previous version keep working.
    op.create_table(
        "deployment_settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("updated_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_deployment_settings"),
    )
    op.create_table(
        "cluster_nodes",
        sa.Column("node_id", sa.String(100), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("started_at", Instant, nullable=False),
        sa.Column("last_seen_at", Instant, nullable=False),
        sa.Column("pepper_fingerprint", sa.String(64), nullable=False),
        sa.Column("active_kid", sa.String(100), nullable=False),
        sa.Column("kids", sa.String(2000), nullable=False),
        sa.Column("uses_redis", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name="pk_cluster_nodes"),
    )
    op.create_index("ix_cluster_nodes_last_seen_at", "cluster_nodes", ["last_seen_at"])
    # Extra scopes for forward-auth. Widening a varchar is a catalog-only change on
    # PostgreSQL (old nodes keep serving); SQLite rebuilds the table (one node only).
    with op.batch_alter_table("api_keys", table_kwargs=_API_KEYS_TABLE) as batch:
        batch.alter_column("scopes", type_=sa.String(1000), existing_type=sa.String(100))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", table_kwargs=_API_KEYS_TABLE) as batch:
        batch.alter_column("scopes", type_=sa.String(100), existing_type=sa.String(1000))
    op.drop_index("ix_cluster_nodes_last_seen_at", table_name="cluster_nodes")
    op.drop_table("cluster_nodes")
    op.drop_table("deployment_settings")
