"""Alembic environment: runs on the connection and table prefix the caller passes in."""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
prefix: str = config.attributes.get("table_prefix", "oauth_")

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=f"{prefix}alembic_version",
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
