"""SQLAlchemy 2.0 async storage: SQLite (aiosqlite) embedded, PostgreSQL (asyncpg) in
production. One module per concern:

* ``schema.py`` - the tables and the mapping of rows to records;
* ``engines.py`` - engines, SQLite and asyncpg tuning, transient-error mapping;
* ``tokencheck.py`` - the token check's one-round-trip read;
* ``notify.py`` - revocations across processes (PostgreSQL ``LISTEN``/``NOTIFY``);
* ``migrations.py`` - the Alembic migrations;
* ``repository.py`` - :class:`SQLAlchemyStorage`, every repository and admin operation.
"""

from .repository import SQLAlchemyStorage
from .schema import build_metadata

__all__ = ["SQLAlchemyStorage", "build_metadata"]
