"""Each node registers the fingerprint of its second-factor key (``AUTHGATE_TFA_KEY``),
so that a node whose key differs from the running nodes' is refused at start: the TOTP
secrets one node encrypts, the other could not read, and its users' codes were refused
there (a 500 before).

Revision ID: 0017_cluster_tfa_key
Revises: 0016_second_factor_session
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_cluster_tfa_key"
down_revision: str | None = "0016_second_factor_session"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("cluster_nodes", sa.Column("tfa_key_fingerprint", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("cluster_nodes") as batch:
        batch.drop_column("tfa_key_fingerprint")
