"""Partners may be allowed the platform's own clients and own the platform's own accounts.

A platform that keeps its clients or accounts in its own repositories still records, in
the library's tables, which clients each partner may use and which partner owns which
account. Those records name clients and accounts that are not in the library's own
tables, so ``partner_clients.client_id`` and ``partner_accounts.account_id`` no longer
reference them. Deleting a built-in client or account deletes its records explicitly.

SQLite cannot drop a constraint: each table is rebuilt without it, its rows copied. On
PostgreSQL the constraint is dropped. A downgrade first deletes the records that name
clients or accounts the library does not hold, then restores the constraints.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

from starlette_broker_oauth.storage.sqlalchemy.migrations.versions import prefix

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, referenced table)
LINKS = (
    ("partner_clients", "client_id", "clients"),
    ("partner_accounts", "account_id", "accounts"),
)


def upgrade() -> None:
    bind = op.get_bind()
    for name, column, referent in LINKS:
        table, target = f"{prefix()}{name}", f"{prefix()}{referent}"
        if bind.dialect.name == "sqlite":
            _rebuild(table, lambda sql, c=column: _without_reference(sql, c))
        else:
            found = bind.execute(
                sa.text(
                    "SELECT conname FROM pg_constraint WHERE contype = 'f'"
                    " AND conrelid = CAST(:table AS regclass)"
                    " AND confrelid = CAST(:target AS regclass)"
                ),
                {"table": table, "target": target},
            ).scalars()
            for constraint in found:
                op.drop_constraint(constraint, table, type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    for name, column, referent in LINKS:
        table, target = f"{prefix()}{name}", f"{prefix()}{referent}"
        op.execute(
            f'DELETE FROM "{table}" WHERE "{column}" NOT IN '  # noqa: S608 - prefix checked
            f'(SELECT "{column}" FROM "{target}")'
        )
        if bind.dialect.name == "sqlite":
            clause = f'FOREIGN KEY({column}) REFERENCES "{target}" ({column}) ON DELETE CASCADE'
            _rebuild(table, lambda sql, c=clause: re.sub(r"\)\s*$", f", {c}\n)", sql.strip()))
        else:
            op.create_foreign_key(None, table, target, [column], [column], ondelete="CASCADE")


def _without_reference(create: str, column: str) -> str:
    """The ``CREATE TABLE`` statement without the foreign key on ``column``."""
    return re.sub(
        rf",\s*FOREIGN KEY\s*\(\s*\"?{column}\"?\s*\)\s*REFERENCES[^,)]*\([^)]*\)"
        r"(\s*ON DELETE CASCADE)?",
        "",
        create,
        flags=re.IGNORECASE,
    )


def _rebuild(table: str, rewrite: object) -> None:
    """Rebuild a SQLite table from its ``CREATE`` statement as ``rewrite`` changes it."""
    assert callable(rewrite)
    bind = op.get_bind()
    found = bind.execute(
        sa.text("SELECT type, sql FROM sqlite_master WHERE tbl_name = :t AND sql IS NOT NULL"),
        {"t": table},
    ).all()
    (create,) = [sql for kind, sql in found if kind == "table"]
    indexes = [sql for kind, sql in found if kind == "index"]
    new = f"{table}_rebuilt"
    body = rewrite(create)
    body = re.sub(r"^CREATE TABLE\s+(\"[^\"]+\"|\S+)", f'CREATE TABLE "{new}"', body, count=1)
    op.execute(body)
    op.execute(f'INSERT INTO "{new}" SELECT * FROM "{table}"')  # noqa: S608 - prefix checked
    op.execute(f'DROP TABLE "{table}"')
    op.execute(f'ALTER TABLE "{new}" RENAME TO "{table}"')
    for index in indexes:
        op.execute(index)
