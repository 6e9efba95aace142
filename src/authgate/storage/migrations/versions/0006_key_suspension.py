"""API keys can be suspended (their owner was deactivated) until re-enabled.

Revision ID: 0006_key_suspension
Revises: 0005_audit_key
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_key_suspension"
down_revision: str | None = "0005_audit_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's table rebuild must keep AUTOINCREMENT: key ids are never reused.
_API_KEYS_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Additive: a nullable column, which nodes of the previous version simply ignore.
    op.add_column("api_keys", sa.Column("suspended_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", table_kwargs=_API_KEYS_TABLE) as batch:
        batch.drop_column("suspended_at")
