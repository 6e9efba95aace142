"""Users carry who created and last changed them, an avatar URL (UTMStack's imageUrl),
a pending single-use password-reset key (stored hashed), whether they still await
their first activation through such a key, and the session that changed the password
(it survives the revocation of the others).

Revision ID: 0008_user_admin
Revises: 0007_second_factor
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_user_admin"
down_revision: str | None = "0007_second_factor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's table rebuild must keep AUTOINCREMENT: user ids are never reused.
_USERS_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Additive: nullable columns (and one with a server default), which nodes of the
    # previous version simply ignore.
    op.add_column("users", sa.Column("created_by", sa.String(50)))
    op.add_column("users", sa.Column("last_modified_by", sa.String(50)))
    op.add_column("users", sa.Column("image_url", sa.String(256)))
    op.add_column("users", sa.Column("reset_key_hash", sa.String(64)))
    op.add_column("users", sa.Column("reset_key_expires_at", sa.DateTime(timezone=True)))
    op.add_column("users", sa.Column("kept_session_jti", sa.String(64)))
    op.add_column("users", sa.Column("kept_session_cutoff", sa.DateTime(timezone=True)))
    op.add_column(
        "users",
        sa.Column("activation_pending", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_users_reset_key_hash", "users", ["reset_key_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_users_reset_key_hash", table_name="users")
    with op.batch_alter_table("users", table_kwargs=_USERS_TABLE) as batch:
        for column in (
            "activation_pending",
            "kept_session_cutoff",
            "kept_session_jti",
            "reset_key_expires_at",
            "reset_key_hash",
            "image_url",
            "last_modified_by",
            "created_by",
        ):
            batch.drop_column(column)
