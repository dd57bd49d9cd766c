"""Index tokens by account, for connected apps and account-wide revocation.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from starlette_broker_oauth.migrations.versions import prefix

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = prefix()
    for table in ("tokens", "refresh_tokens"):
        op.create_index(
            f"ix_{p}{table}_account_id_client_id", f"{p}{table}", ["account_id", "client_id"]
        )


def downgrade() -> None:
    p = prefix()
    for table in ("tokens", "refresh_tokens"):
        op.drop_index(f"ix_{p}{table}_account_id_client_id", table_name=f"{p}{table}")
