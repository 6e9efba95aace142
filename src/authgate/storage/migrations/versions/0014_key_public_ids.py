"""API keys get a public UUID (UTMStack v11's and v12's key ids are UUIDs); the bigint
primary key stays internal. A key imported from UTMStack keeps UTMStack's UUID.

Revision ID: 0014_key_public_ids
Revises: 0013_service_credentials
Create Date: 2026-12-05
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_key_public_ids"
down_revision: str | None = "0013_service_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's table rebuild must keep AUTOINCREMENT: key ids are never reused.
_AUTOINCREMENT = {"sqlite_autoincrement": True}


def _public_id(legacy_id: str | None) -> str:
    """UTMStack's own UUID for an imported key (its clients stored that id), else a new one."""
    if legacy_id:
        try:
            return str(uuid.UUID(legacy_id))
        except ValueError:
            pass  # not a UUID: the key gets a fresh one like any other
    return str(uuid.uuid4())


def upgrade() -> None:
    # Nullable first, backfilled, then required.
    op.add_column("api_keys", sa.Column("public_id", sa.String(36)))
    connection = op.get_bind()
    api_keys = sa.table(
        "api_keys",
        sa.column("id", sa.BigInteger),
        sa.column("legacy_id", sa.String),
        sa.column("public_id", sa.String),
    )
    rows = connection.execute(sa.select(api_keys.c.id, api_keys.c.legacy_id)).all()
    for key_pk, legacy_id in rows:
        connection.execute(
            api_keys.update().where(api_keys.c.id == key_pk).values(public_id=_public_id(legacy_id))
        )
    with op.batch_alter_table("api_keys", table_kwargs=_AUTOINCREMENT) as batch:
        batch.alter_column("public_id", existing_type=sa.String(36), nullable=False)
        batch.create_unique_constraint("uq_api_keys_public_id", ["public_id"])


def downgrade() -> None:
    with op.batch_alter_table("api_keys", table_kwargs=_AUTOINCREMENT) as batch:
        batch.drop_constraint("uq_api_keys_public_id", type_="unique")
        batch.drop_column("public_id")
