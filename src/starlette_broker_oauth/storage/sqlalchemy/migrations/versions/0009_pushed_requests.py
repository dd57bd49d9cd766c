"""Pushed authorization requests (RFC 9126), and clients that require them.

``pushed_requests`` keeps each pushed request, by the hash of its ``request_uri``'s
random part, until it is used once or expires (purged with expired codes). Clients get
``require_pushed_authorization_requests`` (RFC 9126 §6), false for every existing one.

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import UTCDateTime, prefix

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

HASH = sa.String(64)
FLAG = "require_pushed_authorization_requests"


def upgrade() -> None:
    p = prefix()
    op.create_table(
        f"{p}pushed_requests",
        sa.Column("request_hash", HASH, primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index(f"ix_{p}pushed_requests_expires_at", f"{p}pushed_requests", ["expires_at"])
    with op.batch_alter_table(f"{p}clients") as batch:
        batch.add_column(sa.Column(FLAG, sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    p = prefix()
    with op.batch_alter_table(f"{p}clients") as batch:
        batch.drop_column(FLAG)
    op.drop_table(f"{p}pushed_requests")
