"""All repositories on one SQLAlchemy engine: :class:`SQLAlchemyStorage`."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ...security import new_client_id
from ..base import ManagedStorage, RevocationMessage, SchemaState
from ..base import RevocationListener as RevocationListenerFunction
from . import migrations
from .accounts import SQLAccounts
from .clients import SQLClients
from .database import Database, async_url
from .grants import SQLGrants
from .notify import RevocationListener, from_wire, notify, wire_messages
from .partners import SQLPartners
from .schema import Tables

__all__ = ["SQLAlchemyStorage"]


class SQLAlchemyStorage(SQLClients, SQLAccounts, SQLPartners, SQLGrants, ManagedStorage):
    """All repositories on one async SQLAlchemy engine.

    Parameters:
        database_url: ``sqlite+aiosqlite:///path.db`` (embedded default) or
            ``postgresql+asyncpg://…``. A plain ``sqlite:///`` or ``postgresql://`` URL
            gets the async driver.
        table_prefix: Prefix of the library's table names.
        migrate: Bring the tables up to date (Alembic ``upgrade head``) when the storage is
            opened. Idempotent, and serialised between processes on PostgreSQL. Turn it off
            where migrations are a deployment step (``broker-oauth db upgrade``).
        engine_options: Extra keyword arguments for ``create_async_engine``: pool size,
            ``pool_timeout``, ``connect_args`` (asyncpg's ``timeout`` and
            ``command_timeout`` are set to 5 s and 10 s unless given, SQLite's busy
            ``timeout`` to 5 s), …. On PostgreSQL the pool keeps 10 connections, each in
            autocommit between the storage's write transactions (``READ COMMITTED``, or
            the ``isolation_level`` given here).
    """

    def __init__(
        self,
        database_url: str,
        *,
        table_prefix: str = "oauth_",
        migrate: bool = True,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        ManagedStorage.__init__(self)
        tables = Tables(table_prefix)
        super().__init__(Database(async_url(database_url), engine_options), tables)
        self._migrate = migrate
        self._listener: RevocationListener | None = None
        self._origin = new_client_id()  # names this instance in NOTIFY payloads

    @property
    def url(self) -> sa.URL:
        """The database's URL, with its async driver."""
        return self.database.url

    @property
    def metadata(self) -> sa.MetaData:
        """The library's tables (for ``create_all`` in tests, or a platform's own
        Alembic environment)."""
        return self.tables.metadata

    @property
    def table_prefix(self) -> str:
        """The prefix of the library's table names."""
        return self.tables.prefix

    @property
    def engine(self) -> AsyncEngine:
        """The engine; available between :meth:`open` and :meth:`close`."""
        return self.database.engine

    async def open(self) -> None:
        if self.database.is_open:
            return
        await self.database.open()
        try:
            if self._migrate:
                await self.upgrade()
        except BaseException:
            await self.close()  # no connection (or its thread) outlives a failed open
            raise
        self._start_listening()

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stop()
        await self.database.close()

    def unit_of_work(self) -> AbstractAsyncContextManager[object]:
        """Until the block ends, this task's statements share one connection (see
        :meth:`.database.Database.unit`)."""
        return self.database.unit()

    async def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision`` (idempotent).

        Concurrent upgrades are serialised (PostgreSQL: a transaction-scoped advisory lock;
        SQLite: the database write lock, taken first), so many workers may start at once.
        """
        async with self.database.transaction() as conn:
            await migrations.upgrade(conn, self.tables.prefix, revision)

    async def current_revision(self) -> str | None:
        """The Alembic revision the tables are at, or ``None`` before the first."""
        async with self.database.reading() as conn:
            return await migrations.current_revision(conn, self.tables.prefix)

    async def ping(self) -> bool:
        """``SELECT 1``. On PostgreSQL, once this worker has seen the database away, it
        fails at once, without a connection attempt, until the database is back."""
        await self.database.first(sa.text("SELECT 1"), {})
        return True

    async def schema_state(self) -> SchemaState:
        """The Alembic revision the tables are at, and the newest this version ships."""
        *earlier, expected = migrations.revisions()
        return SchemaState(
            revision=await self.current_revision(), expected=expected, earlier=tuple(earlier)
        )

    @property
    def listener_connected(self) -> bool | None:
        """On PostgreSQL with a token cache, whether the ``LISTEN`` connection is up."""
        return None if self._listener is None else self._listener.connected

    @property
    def revocation_channel(self) -> str:
        """The PostgreSQL ``NOTIFY`` channel of revocations."""
        return f"{self.tables.prefix}revocations"

    @property
    def reaches_every_process(self) -> bool:
        """On PostgreSQL, announcements reach every process (``NOTIFY``)."""
        return self.database.postgres

    def add_revocation_listener(self, listener: RevocationListenerFunction) -> None:
        super().add_revocation_listener(listener)
        if self.database.is_open:
            self._start_listening()

    async def announce(self, message: RevocationMessage) -> None:
        # This process first: what was revoked has committed, and a failure to reach the
        # other processes must not leave it valid here.
        self.tell_listeners(message)
        if self.database.postgres:
            async with self.database.transaction() as conn:
                await notify(
                    conn, self.revocation_channel, wire_messages(message), origin=self._origin
                )

    def _heard(self, wire: str) -> None:
        self.tell_listeners(from_wire(wire))

    def _start_listening(self) -> None:
        """On PostgreSQL, once something listens (a token cache), hold a ``LISTEN``
        connection for the revocations of other processes."""
        if self.database.postgres and self._listener is None and self.revocation_listeners:
            self._listener = RevocationListener(
                self.engine, self.revocation_channel, self._heard, origin=self._origin
            )
            self._listener.start()
