"""Clients register public keys for ``private_key_jwt`` (RFC 7523 §2.2).

``jwks`` holds a client's JWK Set as JSON text (``NULL``: none registered);
``token_endpoint_auth_method`` says whether it may still use its secret
(``client_secret_basic``, every existing client) or its keys only (``private_key_jwt``).

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import prefix

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table(f"{prefix()}clients") as batch:
        batch.add_column(sa.Column("jwks", sa.Text, nullable=True))
        batch.add_column(
            sa.Column(
                "token_endpoint_auth_method",
                sa.String(32),
                nullable=False,
                server_default="client_secret_basic",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table(f"{prefix()}clients") as batch:
        batch.drop_column("token_endpoint_auth_method")
        batch.drop_column("jwks")
