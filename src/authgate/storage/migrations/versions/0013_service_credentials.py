"""Service credentials: what other services present in ``X-Internal-Key`` (UTMStack
v12's internal API key check), stored hashed, each allowed named internal endpoints.

Revision ID: 0013_service_credentials
Revises: 0012_v12_session_factor
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_service_credentials"
down_revision: str | None = "0012_v12_session_factor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_credentials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("credential_id", sa.String(12), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("previous_secret_hash", sa.String(64)),
        sa.Column("previous_valid_until", sa.DateTime(timezone=True)),
        sa.Column("endpoints", sa.String(1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_service_credentials"),
        sa.UniqueConstraint("credential_id", name="uq_service_credentials_credential_id"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "uq_service_credentials_name_live",
        "service_credentials",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_service_credentials_name_live", table_name="service_credentials")
    op.drop_table("service_credentials")
