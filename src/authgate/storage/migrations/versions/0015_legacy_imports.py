"""What ``authgate import utmstack`` imported, by UTMStack id: a user or key deleted in
authgate is not re-created by a later run, and a key's imported fields are remembered so
that a later run applies only what changed in UTMStack since.

Revision ID: 0015_legacy_imports
Revises: 0014_key_public_ids
Create Date: 2026-12-06
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0015_legacy_imports"
down_revision: str | None = "0014_key_public_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    legacy_imports = op.create_table(
        "legacy_imports",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("legacy_id", sa.String(64), nullable=False),
        sa.Column("imported", sa.Text()),
        sa.Column("first_imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "legacy_id", name="pk_legacy_imports"),
    )
    # What earlier imports left: from now on, deleting one of them is remembered.
    connection = op.get_bind()
    now = datetime.now(UTC)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # as UTCDateTime stores it there
    rows = []
    for kind, table in (("user", "users"), ("key", "api_keys")):
        source = sa.table(table, sa.column("legacy_id", sa.String))
        ids = connection.execute(
            sa.select(source.c.legacy_id).where(source.c.legacy_id.is_not(None))
        ).scalars()
        rows += [{"kind": kind, "legacy_id": each, "first_imported_at": now} for each in ids]
    if rows:
        op.bulk_insert(legacy_imports, rows)


def downgrade() -> None:
    op.drop_table("legacy_imports")
