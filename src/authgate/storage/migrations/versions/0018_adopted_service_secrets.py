"""Adopted service secrets: a service credential may take on a secret the service
already has (UTMStack's installation-wide INTERNAL_KEY, which log-input sends in
X-Internal-Key), found by its keyed hash since it has no public id in it.

Downgrading revokes the live credentials whose secret is adopted (the older version
cannot find them, and would list them as active).

Revision ID: 0018_adopted_service_secrets
Revises: 0017_cluster_tfa_key
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0018_adopted_service_secrets"
down_revision: str | None = "0017_cluster_tfa_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("service_credentials", sa.Column("secret_lookup", sa.String(64)))
    op.add_column("service_credentials", sa.Column("previous_secret_lookup", sa.String(64)))
    op.create_index(
        "uq_service_credentials_secret_lookup",
        "service_credentials",
        ["secret_lookup"],
        unique=True,
    )
    op.create_index(
        "ix_service_credentials_previous_secret_lookup",
        "service_credentials",
        ["previous_secret_lookup"],
    )


def downgrade() -> None:
    connection = op.get_bind()
    now = datetime.now(UTC)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as UTCDateTime stores it there
    credentials = sa.table(
        "service_credentials",
        sa.column("secret_lookup", sa.String),
        sa.column("revoked_at", sa.DateTime(timezone=True)),
        sa.column("previous_secret_hash", sa.String),
        sa.column("previous_valid_until", sa.DateTime(timezone=True)),
    )
    connection.execute(
        sa.update(credentials)
        .where(credentials.c.secret_lookup.is_not(None), credentials.c.revoked_at.is_(None))
        .values(revoked_at=now, previous_secret_hash=None, previous_valid_until=None)
    )
    op.drop_index("ix_service_credentials_previous_secret_lookup", "service_credentials")
    op.drop_index("uq_service_credentials_secret_lookup", "service_credentials")
    # Recreated on SQLite: as created (0016), with AUTOINCREMENT (ids never reused).
    with op.batch_alter_table(
        "service_credentials", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_column("previous_secret_lookup")
        batch.drop_column("secret_lookup")
