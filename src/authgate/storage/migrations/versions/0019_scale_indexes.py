"""Indexes for large installations: the audit trail's filters and sort (actor, client
address, event type, each newest first), a user's own API-key usage, and the trim of a
key's sampled requests that every usage flush runs (a partial index of accepted
requests, so that a key's refusals are not walked every second).

Building them locks writes to ``audit_events`` and ``api_key_usage`` while it runs
(longer the larger they are): run ``authgate migrate`` with the nodes stopped, as for
every upgrade.

Revision ID: 0019_scale_indexes
Revises: 0018_adopted_service_secrets
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_scale_indexes"
down_revision: str | None = "0018_adopted_service_secrets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT_INDEXES = {
    "ix_audit_events_actor_login": ["actor_login", "id"],
    "ix_audit_events_api_key_name": ["api_key_name", "id"],
    "ix_audit_events_client_ip": ["client_ip", "id"],
    "ix_audit_events_type_id": ["event_type", "id"],
}
_ACCEPTED = sa.text("failure_reason IS NULL")


def upgrade() -> None:
    for name, columns in _AUDIT_INDEXES.items():
        op.create_index(name, "audit_events", columns)
    op.create_index("ix_api_key_usage_user_time", "api_key_usage", ["user_id", "occurred_at"])
    op.create_index(
        "ix_api_key_usage_key_successes",
        "api_key_usage",
        ["api_key_id", "occurred_at", "id"],
        sqlite_where=_ACCEPTED,
        postgresql_where=_ACCEPTED,
    )


def downgrade() -> None:
    op.drop_index("ix_api_key_usage_key_successes", table_name="api_key_usage")
    op.drop_index("ix_api_key_usage_user_time", table_name="api_key_usage")
    for name in reversed(_AUDIT_INDEXES):
        op.drop_index(name, table_name="audit_events")
