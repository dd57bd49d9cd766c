"""Accounts owned by partners; single-use keys; tokens indexed by account.

* ``partner_accounts``: which partner an account belongs to (at most one). Existing
  accounts get no row: an account no partner owns may be used by the platform's only
  partner, so a single-partner platform works as before, and a platform with several
  partners must give each account to one before its partners can use it.
* ``used_keys``: keys that may be used once (a consent form's approval), until they
  expire.
* Tokens and refresh tokens indexed by ``(account_id, client_id)``: connected apps and
  account-wide revocation.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import UTCDateTime, prefix

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = prefix()
    op.create_table(
        f"{p}partner_accounts",
        sa.Column(
            "account_id",
            sa.Uuid,
            sa.ForeignKey(f"{p}accounts.account_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "partner_id",
            sa.String(128),
            sa.ForeignKey(f"{p}partners.partner_id", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    op.create_index(f"ix_{p}partner_accounts_partner_id", f"{p}partner_accounts", ["partner_id"])
    op.create_table(
        f"{p}used_keys",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index(f"ix_{p}used_keys_expires_at", f"{p}used_keys", ["expires_at"])
    for table in ("tokens", "refresh_tokens"):
        op.create_index(
            f"ix_{p}{table}_account_id_client_id", f"{p}{table}", ["account_id", "client_id"]
        )


def downgrade() -> None:
    p = prefix()
    op.drop_table(f"{p}used_keys")
    op.drop_table(f"{p}partner_accounts")
    for table in ("tokens", "refresh_tokens"):
        op.drop_index(f"ix_{p}{table}_account_id_client_id", table_name=f"{p}{table}")
