"""DPoP (RFC 9449): tokens, refresh tokens and codes bound to a key; clients that require it.

``dpop_jkt`` holds the RFC 7638 thumbprint of the key a token or refresh token is bound
to, or that the authorization request bound a code to (``dpop_jkt``, RFC 9449 §10);
``NULL`` for bearer tokens and unbound codes, so every existing row stays as it was.
``clients.dpop_bound_access_tokens`` (RFC 9449 §5.2) is false for every existing client.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import prefix

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BOUND = ("codes", "tokens", "refresh_tokens")
THUMBPRINT = sa.String(64)


def upgrade() -> None:
    p = prefix()
    for name in BOUND:
        with op.batch_alter_table(f"{p}{name}") as batch:
            batch.add_column(sa.Column("dpop_jkt", THUMBPRINT, nullable=True))
    with op.batch_alter_table(f"{p}clients") as batch:
        batch.add_column(
            sa.Column(
                "dpop_bound_access_tokens",
                sa.Boolean,
                nullable=False,
                server_default=sa.false(),
            )
        )


def downgrade() -> None:
    p = prefix()
    with op.batch_alter_table(f"{p}clients") as batch:
        batch.drop_column("dpop_bound_access_tokens")
    for name in BOUND:
        with op.batch_alter_table(f"{p}{name}") as batch:
            batch.drop_column("dpop_jkt")
