"""The library's Alembic migrations (this directory: ``env.py`` and ``versions/``,
``starlette_broker_oauth.storage.sqlalchemy:migrations``) and what runs them; a
``broker-oauth db upgrade`` or an opening storage upgrades the tables."""

from __future__ import annotations

import functools

import sqlalchemy as sa
from alembic.util.exc import CommandError
from sqlalchemy.ext.asyncio import AsyncConnection

from ....security import hash_secret

__all__ = ["current_revision", "revisions", "upgrade"]


async def upgrade(conn: AsyncConnection, prefix: str, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` in ``conn``'s transaction (idempotent).

    Concurrent upgrades are serialised (PostgreSQL: a transaction-scoped advisory lock;
    SQLite: the write lock, which the transaction took as it began), so many workers may
    start at once.
    """
    if conn.dialect.name != "sqlite":
        key = int(hash_secret("migrate:" + prefix)[:15], 16)
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    try:
        await conn.run_sync(_alembic, "upgrade", prefix, revision)
    except CommandError as exc:  # an unknown revision: the caller's mistake, said plainly
        known = ", ".join(revisions())
        raise ValueError(f"unknown revision {revision!r}: give head or one of {known}") from exc


async def current_revision(conn: AsyncConnection, prefix: str) -> str | None:
    """The revision the tables are at, or ``None`` before the first."""
    version_table = f"{prefix}alembic_version"
    exists = await conn.run_sync(lambda c: sa.inspect(c).has_table(version_table))
    if not exists:
        return None
    query = sa.text(f"SELECT version_num FROM {version_table}")  # noqa: S608 - checked prefix
    row = (await conn.execute(query)).first()
    return None if row is None else str(row[0])


@functools.cache
def revisions() -> tuple[str, ...]:
    """The shipped revisions, oldest first: the last is the one this version works with."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", "starlette_broker_oauth.storage.sqlalchemy:migrations"
    )
    return tuple(
        script.revision
        for script in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))
    )


def _alembic(connection: sa.Connection, command_name: str, prefix: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", "starlette_broker_oauth.storage.sqlalchemy:migrations"
    )
    config.attributes["connection"] = connection
    config.attributes["table_prefix"] = prefix
    getattr(command, command_name)(config, revision)
