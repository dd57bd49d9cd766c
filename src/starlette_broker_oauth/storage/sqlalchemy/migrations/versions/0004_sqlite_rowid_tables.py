"""SQLite: codes, tokens and refresh tokens become rowid tables.

As ``WITHOUT ROWID`` tables, every index of theirs was keyed by the random hash as well,
so each insert changed a random page of the table and of each of its five indexes, and
every change had to be copied from the log into the file. As rowid tables, a new row goes
to the end of the table and of its indexes (pages that stay in the log), and only the
hash's own index takes a random page. Reading a token by its hash costs one more B-tree
step.

Each table is rebuilt (SQLite cannot change a table's kind): created anew, its rows
copied, the old table dropped and the new one renamed, its indexes recreated. Nothing
changes on PostgreSQL.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import prefix

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("codes", "tokens", "refresh_tokens")


def upgrade() -> None:
    _rebuild(rowid=True)


def downgrade() -> None:
    _rebuild(rowid=False)


def _rebuild(*, rowid: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for name in TABLES:
        table = f"{prefix()}{name}"
        new = f"{table}_rebuilt"
        found = bind.execute(
            sa.text("SELECT type, sql FROM sqlite_master WHERE tbl_name = :t AND sql IS NOT NULL"),
            {"t": table},
        ).all()
        (create,) = [sql for kind, sql in found if kind == "table"]
        indexes = [sql for kind, sql in found if kind == "index"]
        body = re.sub(r"\)\s*WITHOUT\s+ROWID\s*$", ")", create.strip(), flags=re.IGNORECASE)
        if not rowid:
            body += " WITHOUT ROWID"
        body = re.sub(r"^CREATE TABLE\s+(\"[^\"]+\"|\S+)", f'CREATE TABLE "{new}"', body, count=1)
        op.execute(body)
        op.execute(f'INSERT INTO "{new}" SELECT * FROM "{table}"')  # noqa: S608 - prefix checked
        op.execute(f'DROP TABLE "{table}"')
        op.execute(f'ALTER TABLE "{new}" RENAME TO "{table}"')
        for index in indexes:
            op.execute(index)
