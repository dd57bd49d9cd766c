"""Refresh tokens, and token families in place of the code a token came from.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import UTCDateTime, prefix

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

HASH = sa.String(64)


def upgrade() -> None:
    p = prefix()
    # A token's family is the code it came from: the old column's values carry over.
    op.drop_index(f"ix_{p}tokens_code_hash", table_name=f"{p}tokens")
    with op.batch_alter_table(f"{p}tokens") as batch:
        batch.alter_column("code_hash", new_column_name="family_id", existing_type=HASH)
    op.create_index(f"ix_{p}tokens_family_id", f"{p}tokens", ["family_id"])
    op.create_table(
        f"{p}refresh_tokens",
        sa.Column("token_hash", HASH, primary_key=True),
        sa.Column("family_id", HASH, nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("account_live", sa.Boolean, nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_index(f"ix_{p}refresh_tokens_family_id", f"{p}refresh_tokens", ["family_id"])
    op.create_index(f"ix_{p}refresh_tokens_expires_at", f"{p}refresh_tokens", ["expires_at"])


def downgrade() -> None:
    p = prefix()
    op.drop_table(f"{p}refresh_tokens")
    op.drop_index(f"ix_{p}tokens_family_id", table_name=f"{p}tokens")
    with op.batch_alter_table(f"{p}tokens") as batch:
        batch.alter_column("family_id", new_column_name="code_hash", existing_type=HASH)
    op.create_index(f"ix_{p}tokens_code_hash", f"{p}tokens", ["code_hash"])
