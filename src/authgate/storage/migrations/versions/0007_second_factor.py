"""Second factor: encrypted TOTP secrets, hashed one-time codes, the method in force,
and whether a user's password was set by someone else (UTMStack's ``firstLogin``).

Revision ID: 0007_second_factor
Revises: 0010_legacy_keys
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_second_factor"
down_revision: str | None = "0010_legacy_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Instant = sa.DateTime(timezone=True)
# SQLite's table rebuild must keep AUTOINCREMENT: user ids are never reused.
_USERS_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Additive: nodes of the previous version ignore the new columns and tables (and so
    # do not ask for a second factor until they are upgraded too).
    op.add_column("users", sa.Column("second_factor", sa.String(8), nullable=True))
    op.add_column(
        "users",
        sa.Column(
            "initial_password", sa.Boolean(), nullable=False, server_default=sa.text("false")
        ),
    )
    op.create_table(
        "second_factors",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("totp_secret", sa.Text(), nullable=True),
        sa.Column("last_totp_step", sa.BigInteger(), nullable=True),
        sa.Column("pending_method", sa.String(8), nullable=True),
        sa.Column("pending_totp_secret", sa.Text(), nullable=True),
        sa.Column("pending_started_at", Instant, nullable=True),
        sa.Column("pending_verified_at", Instant, nullable=True),
        sa.Column("pending_last_step", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", Instant, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_second_factors_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_second_factors"),
    )
    op.create_table(
        "one_time_codes",
        sa.Column("id", BigIntKey, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=True),
        sa.Column("used_at", Instant, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_one_time_codes_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_one_time_codes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_one_time_codes_user_id_purpose", "one_time_codes", ["user_id", "purpose"])


def downgrade() -> None:
    op.drop_index("ix_one_time_codes_user_id_purpose", table_name="one_time_codes")
    op.drop_table("one_time_codes")
    op.drop_table("second_factors")
    with op.batch_alter_table("users", table_kwargs=_USERS_TABLE) as batch:
        batch.drop_column("initial_password")
        batch.drop_column("second_factor")
