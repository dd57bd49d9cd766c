"""Clients, accounts, partners, codes and access tokens.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import UTCDateTime, prefix

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

HASH = sa.String(64)


def upgrade() -> None:
    p = prefix()
    op.create_table(
        f"{p}clients",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("secret_hash", HASH, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("terms_of_use", sa.Text, nullable=False),
        sa.Column("privacy_policy", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("live_trading_approved", sa.Boolean, nullable=False),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=True),
        sa.Column("response_types", sa.Text, nullable=False),
    )
    op.create_table(
        f"{p}accounts",
        sa.Column("account_id", sa.Uuid, primary_key=True),
        sa.Column("live", sa.Boolean, nullable=False),
    )
    op.create_table(
        f"{p}partners",
        sa.Column("partner_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", HASH, nullable=False),
    )
    op.create_table(
        f"{p}partner_clients",
        sa.Column(
            "partner_id",
            sa.String(128),
            sa.ForeignKey(f"{p}partners.partner_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "client_id",
            sa.String(128),
            sa.ForeignKey(f"{p}clients.client_id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        f"{p}codes",
        sa.Column("code_hash", HASH, primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("code_challenge_method", sa.String(16), nullable=True),
        sa.Column("used_at", UTCDateTime, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_index(f"ix_{p}codes_expires_at", f"{p}codes", ["expires_at"])
    op.create_table(
        f"{p}tokens",
        sa.Column("token_hash", HASH, primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("account_live", sa.Boolean, nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("code_hash", HASH, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_index(f"ix_{p}tokens_client_id", f"{p}tokens", ["client_id"])
    op.create_index(f"ix_{p}tokens_expires_at", f"{p}tokens", ["expires_at"])
    op.create_index(f"ix_{p}tokens_code_hash", f"{p}tokens", ["code_hash"])


def downgrade() -> None:
    p = prefix()
    for table in ("tokens", "codes", "partner_clients", "partners", "accounts", "clients"):
        op.drop_table(f"{p}{table}")
