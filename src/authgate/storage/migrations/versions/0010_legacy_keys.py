"""Users and API keys imported from UTMStack: legacy key digests, UTMStack ids, the
"must change password" flag, and UTMStack's profile fields and second factor.

Revision ID: 0010_legacy_keys
Revises: 0006_key_suspension
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_legacy_keys"
down_revision: str | None = "0006_key_suspension"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's table rebuild must keep AUTOINCREMENT: ids are never reused.
_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Additive: nullable columns (and one with a default), which nodes of the previous
    # version ignore. Unique constraints need a table rebuild on SQLite (batch mode).
    with op.batch_alter_table("api_keys", table_kwargs=_AUTOINCREMENT) as batch:
        batch.add_column(sa.Column("legacy_digest", sa.String(64)))
        batch.add_column(sa.Column("legacy_id", sa.String(36)))
        batch.create_unique_constraint("uq_api_keys_legacy_digest", ["legacy_digest"])
        batch.create_unique_constraint("uq_api_keys_legacy_id", ["legacy_id"])
    with op.batch_alter_table("users", table_kwargs=_AUTOINCREMENT) as batch:
        batch.add_column(sa.Column("legacy_id", sa.String(64)))
        batch.add_column(
            sa.Column(
                "password_change_required",
                sa.Boolean(),
                nullable=False,
                server_default=sa.text("false"),
            )
        )
        batch.add_column(sa.Column("legacy_profile", sa.Text()))
        batch.add_column(sa.Column("legacy_second_factor", sa.Text()))
        batch.create_unique_constraint("uq_users_legacy_id", ["legacy_id"])


def downgrade() -> None:
    with op.batch_alter_table("users", table_kwargs=_AUTOINCREMENT) as batch:
        batch.drop_constraint("uq_users_legacy_id", type_="unique")
        batch.drop_column("legacy_second_factor")
        batch.drop_column("legacy_profile")
        batch.drop_column("password_change_required")
        batch.drop_column("legacy_id")
    with op.batch_alter_table("api_keys", table_kwargs=_AUTOINCREMENT) as batch:
        batch.drop_constraint("uq_api_keys_legacy_id", type_="unique")
        batch.drop_constraint("uq_api_keys_legacy_digest", type_="unique")
        batch.drop_column("legacy_id")
        batch.drop_column("legacy_digest")
