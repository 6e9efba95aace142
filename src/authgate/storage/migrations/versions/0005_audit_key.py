"""Keyed audit chain: signatures of the chain's end points, checkpoints, the audit key
fingerprint of each node.

Revision ID: 0005_audit_key
Revises: 0004
Create Date: 2026-12-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_audit_key"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Additive only (nullable columns, a new table): nodes of the previous version keep
    # serving; they write an unkeyed chain until the audit key is introduced.
    op.add_column("audit_chain_head", sa.Column("mac", sa.String(64), nullable=True))
    op.add_column("cluster_nodes", sa.Column("audit_key_fingerprint", sa.String(64), nullable=True))
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", BigIntKey, autoincrement=True, nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoints"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_checkpoints_created_at", "audit_checkpoints", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_checkpoints_created_at", table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    with op.batch_alter_table("cluster_nodes") as batch:
        batch.drop_column("audit_key_fingerprint")
    with op.batch_alter_table("audit_chain_head") as batch:
        batch.drop_column("mac")
