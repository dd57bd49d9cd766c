"""The token check's read: the token and its client, in one driver round trip.

It runs on every protected request. The joined ``SELECT`` is compiled once and run on a
raw driver connection with the columns' result processors applied here: on SQLite, one
shared aiosqlite connection on which concurrent checks pipeline (one thread hop each); on
PostgreSQL, one round trip on an autocommit pool (no ``BEGIN``, no ``ROLLBACK`` on return).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ...errors import StorageError, StorageUnavailable
from ...models import AccessToken, Client
from .engines import is_transient, open_checker, translated
from .schema import Tables, client_from

__all__ = ["TokenCheck"]


class TokenCheck:
    """Reads a token and its client by the token's hash.

    Parameters:
        tables: The library's tables.
    """

    def __init__(self, tables: Tables) -> None:
        tok, cli = tables.tokens, tables.clients
        self._statement = (
            sa.select(tok, cli)
            .select_from(tok.outerjoin(cli, cli.c.client_id == tok.c.client_id))
            .where(tok.c.token_hash == sa.bindparam("token_hash"))
        )
        self._token_columns = [c.name for c in tok.columns]
        self._client_columns = [c.name for c in cli.columns]
        self._sql: str | None = None
        self._processors: list[Callable[[Any], Any] | None] = []
        self._reader: AsyncEngine | None = None
        self._owns_reader = False
        self._checker: Any = None
        self._postgres = False

    async def open(self, engine: AsyncEngine, options: dict[str, Any], *, in_memory: bool) -> None:
        """Prepare the check's connections beside ``engine`` (created with ``options``)."""
        url = engine.url
        self._postgres = url.get_backend_name() == "postgresql"
        dialect = engine.dialect
        self._sql = str(self._statement.compile(dialect=dialect))
        self._processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self._statement.selected_columns
        ]
        if in_memory:
            # An in-memory SQLite database exists on one connection: the engine's own.
            self._reader = engine
            return
        if url.get_backend_name() == "sqlite":
            self._checker = await open_checker(url.database or "")
            return
        reader_options = dict(options, isolation_level="AUTOCOMMIT")
        reader_options["pool_reset_on_return"] = None
        reader_options["pool_pre_ping"] = False  # a failed check invalidates instead
        self._reader = create_async_engine(url, **reader_options)
        self._owns_reader = True

    async def close(self) -> None:
        """Release the check's connections."""
        if self._checker is not None:
            checker, self._checker = self._checker, None
            await checker.close()
        if self._reader is not None and self._owns_reader:
            await self._reader.dispose()
        self._reader = None
        self._owns_reader = False

    async def __call__(self, token_hash: str) -> tuple[AccessToken, Client | None] | None:
        """The token with this hash and its client (``None`` if the client is gone)."""
        row = await self._row(token_hash)
        if row is None:
            return None
        tokens = len(self._token_columns)
        token = AccessToken(**dict(zip(self._token_columns, row[:tokens], strict=True)))
        client = None
        if row[tokens] is not None:
            client = client_from(dict(zip(self._client_columns, row[tokens:], strict=True)))
        return token, client

    async def _row(self, token_hash: str) -> tuple[Any, ...] | None:
        if self._checker is not None:
            # aiosqlite queues calls on its one thread: concurrent checks pipeline on one
            # connection instead of each holding a pooled one across its await.
            with translated():
                rows = await self._checker.execute_fetchall(self._sql, (token_hash,))
            return self._processed(rows[0]) if rows else None
        if self._reader is None:
            raise StorageError("storage is not open: enter it with 'async with storage:'")
        # A pooled connection may have died while idle (the server restarted): it is
        # discarded and the check retried once on a fresh one before answering 503.
        for attempt in (1, 2):
            try:
                record = await self._fetch(self._reader, token_hash)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == 2:
                    raise StorageUnavailable(type(exc).__name__) from exc
        return None if record is None else self._processed(record)

    async def _fetch(self, reader: AsyncEngine, token_hash: str) -> Any:
        async with reader.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                if self._postgres:
                    return await driver.fetchrow(self._sql, token_hash)
                rows = await driver.execute_fetchall(self._sql, (token_hash,))
                return rows[0] if rows else None
            except BaseException:
                await conn.invalidate()  # a connection that failed mid-call is not reused
                raise

    def _processed(self, record: Any) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self._processors, tuple(record), strict=True)
        )
