"""UTMStack v12's second-factor login: a session remembers that its login passed the
user's second factor (its access tokens then carry ``amr`` ``otp``, refreshes included).

Revision ID: 0012_v12_session_factor
Revises: 0011_v12_sessions
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_v12_session_factor"
down_revision: str | None = "0011_v12_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing sessions passed no second factor: v12 logins refused users who had one.
    op.add_column(
        "sessions",
        sa.Column("second_factor", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("second_factor")
