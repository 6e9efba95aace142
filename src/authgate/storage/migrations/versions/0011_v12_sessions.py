"""UTMStack v12's API: users get a public UUID; sessions (refresh-token families) and
their refresh tokens, stored hashed.

Revision ID: 0011_v12_sessions
Revises: 0009_usage_rollups
Create Date: 2026-12-04
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_v12_sessions"
down_revision: str | None = "0009_usage_rollups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's table rebuild must keep AUTOINCREMENT: user ids are never reused.
_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Nullable first, backfilled, then required: existing users get a random UUID each.
    op.add_column("users", sa.Column("public_id", sa.String(36)))
    connection = op.get_bind()
    users = sa.table("users", sa.column("id", sa.BigInteger), sa.column("public_id", sa.String))
    ids = [row[0] for row in connection.execute(sa.select(users.c.id))]
    for user_id in ids:
        connection.execute(
            users.update().where(users.c.id == user_id).values(public_id=str(uuid.uuid4()))
        )
    with op.batch_alter_table("users", table_kwargs=_AUTOINCREMENT) as batch:
        batch.alter_column("public_id", existing_type=sa.String(36), nullable=False)
        batch.create_unique_constraint("uq_users_public_id", ["public_id"])

    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("users.id", name="fk_sessions_user_id_users", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ip", sa.String(45)),
        sa.Column("user_agent", sa.String(512)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_reason", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey(
                "sessions.id", name="fk_refresh_tokens_session_id_sessions", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("token_hash", name="pk_refresh_tokens"),
    )
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_session_id", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
    with op.batch_alter_table("users", table_kwargs=_AUTOINCREMENT) as batch:
        batch.drop_constraint("uq_users_public_id", type_="unique")
        batch.drop_column("public_id")
