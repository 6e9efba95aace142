"""The session that enrolled a user's second factor: it proved the factor while
enrolling (a code of it, at the verify step), so it counts as a session that passed it.
Without it, the very session that turned the factor on was refused credential changes
(403) until its user signed in again, which UTMStack's clients answer by logging out.

Revision ID: 0016_second_factor_session
Revises: 0015_legacy_imports
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_second_factor_session"
down_revision: str | None = "0015_legacy_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Factors enrolled before: their sessions have signed in again since, or will.
    op.add_column("users", sa.Column("second_factor_session", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("second_factor_session")
