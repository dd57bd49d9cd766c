"""SQLAlchemy 2.0 async storage: SQLite (aiosqlite) embedded, PostgreSQL (asyncpg) in
production. One module per concept:

* ``schema.py`` - the tables and the mapping of rows to records;
* ``database.py`` - the engine, its settings per database, units of work, and what
  failures mean;
* ``clients.py``, ``accounts.py``, ``partners.py``, ``grants.py`` - each repository with
  its administration;
* ``notify.py`` - revocations across processes (PostgreSQL ``LISTEN``/``NOTIFY``);
* ``migrations.py`` - the Alembic migrations;
* ``repository.py`` - :class:`SQLAlchemyStorage`, all of them on one engine.
"""

from .repository import SQLAlchemyStorage
from .schema import build_metadata

__all__ = ["SQLAlchemyStorage", "build_metadata"]
