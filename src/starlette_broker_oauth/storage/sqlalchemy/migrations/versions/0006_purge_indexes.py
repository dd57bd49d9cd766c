"""Revoked codes and tokens are purged through an index.

``broker-oauth db purge`` deletes rows expired or revoked before a cutoff, a batch at a
time. Each condition now has its own index, so each batch walks an index from its start
instead of scanning the table: its cost no longer grows with the table.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import prefix

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("tokens", "refresh_tokens")


def upgrade() -> None:
    for name in TABLES:
        table = f"{prefix()}{name}"
        op.create_index(f"ix_{table}_revoked_at", table, ["revoked_at"])


def downgrade() -> None:
    for name in TABLES:
        table = f"{prefix()}{name}"
        op.drop_index(f"ix_{table}_revoked_at", table_name=table)
