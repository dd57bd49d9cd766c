"""The hot reads: the token check's (the token and its client, on every protected request)
and the partner endpoints' (the partner, the partner's client, the partner's account), each
in one driver round trip.

 The joined ``SELECT`` is compiled once and run on a
raw driver connection with the columns' result processors applied here: on SQLite, one
shared aiosqlite connection on which concurrent checks pipeline (one thread hop each); on
PostgreSQL, one round trip on an autocommit pool (no ``BEGIN``, no ``ROLLBACK`` on return).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ...errors import ConfigurationError, StorageUnavailable
from ...models import AccessToken, Client
from .engines import is_transient, open_checker, translated
from .schema import Tables, client_from

__all__ = ["TokenCheck"]

_NOT_OPEN = (
    "the storage is not open: enter it (`async with storage:`) in the application's "
    "lifespan, and leave it on shutdown"
)
Processor = Callable[[Any], Any] | None
# A hot read compiled for the dialect: SQL, its parameters in order with their bind
# processors, the result columns' processors, the result columns' names.
_Compiled = tuple[str, list[tuple[str, Processor]], list[Processor], list[str]]


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
        # Other hot reads, by name: (statement, compiled SQL, its parameters in order,
        # result processors, column names).
        self._reads: dict[str, sa.Select[Any]] = {}  # and single INSERTs
        self._compiled: dict[str, _Compiled] = {}
        self._reader: AsyncEngine | None = None
        self._owns_reader = False
        self._checker: Any = None
        self._postgres = False

    def register(self, name: str, statement: sa.Select[Any] | sa.Insert) -> None:
        """Add a hot read (or a one-statement write); its parameters are ``bindparam``
        names (an ``INSERT`` of a table: its column names), given to :meth:`one` or
        :meth:`execute`."""
        self._reads[name] = statement  # type: ignore[assignment]

    async def open(self, engine: AsyncEngine, options: dict[str, Any], *, in_memory: bool) -> None:
        """Prepare the check's connections beside ``engine`` (created with ``options``)."""
        url = engine.url
        self._postgres = url.get_backend_name() == "postgresql"
        dialect = engine.dialect
        for name, statement in self._reads.items():
            compiled = statement.compile(dialect=dialect)
            order = list(compiled.positiontup or [])
            self._compiled[name] = (
                str(compiled),
                [
                    (key, compiled.binds[key].type.dialect_impl(dialect).bind_processor(dialect))
                    for key in order
                ],
                [
                    column.type.dialect_impl(dialect).result_processor(dialect, None)
                    for column in _columns(statement)
                ],
                [column.name for column in _columns(statement)],
            )
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

    async def one(self, name: str, **params: Any) -> dict[str, Any] | None:
        """The first row of the hot read ``name``, by column name, or ``None``."""
        if name not in self._compiled:  # compiled when the storage opens
            raise ConfigurationError(_NOT_OPEN)
        sql, binds, processors, columns = self._compiled[name]
        args = tuple(params[key] if bind is None else bind(params[key]) for key, bind in binds)
        row = await self._fetch_row(sql, args)
        if row is None:
            return None
        values = (v if p is None else p(v) for p, v in zip(processors, tuple(row), strict=True))
        return dict(zip(columns, values, strict=True))

    async def execute(self, name: str, **params: Any) -> None:
        """Run the one-statement write ``name``: one driver round trip, committed on its
        own (autocommit), so it needs no transaction around it."""
        if name not in self._compiled:
            raise ConfigurationError(_NOT_OPEN)
        sql, binds, _, _ = self._compiled[name]
        args = tuple(params[key] if bind is None else bind(params[key]) for key, bind in binds)
        if self._checker is not None:
            with translated():
                await self._checker.execute(sql, args)
            return
        if self._reader is None:
            raise ConfigurationError(_NOT_OPEN)
        async with self._reader.connect() as conn:
            with translated():
                raw = await conn.get_raw_connection()
                driver: Any = raw.driver_connection
                if self._postgres:
                    await driver.execute(sql, *args)
                else:  # in-memory SQLite: the engine's own connection, in a transaction
                    await driver.execute(sql, args)
                    await driver.commit()

    async def _row(self, token_hash: str) -> tuple[Any, ...] | None:
        assert self._sql is not None
        record = await self._fetch_row(self._sql, (token_hash,))
        return None if record is None else self._processed(record)

    async def _fetch_row(self, sql: str, args: tuple[Any, ...]) -> Any:
        if self._checker is not None:
            # aiosqlite queues calls on its one thread: concurrent checks pipeline on one
            # connection instead of each holding a pooled one across its await.
            with translated():
                rows = await self._checker.execute_fetchall(sql, args)
            return rows[0] if rows else None
        if self._reader is None:
            raise ConfigurationError(_NOT_OPEN)
        # A pooled connection may have died while idle (the server restarted): it is
        # discarded and the check retried once on a fresh one before answering 503.
        for attempt in (1, 2):
            try:
                return await self._fetch(self._reader, sql, args)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == 2:
                    raise StorageUnavailable(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    async def _fetch(self, reader: AsyncEngine, sql: str, args: tuple[Any, ...]) -> Any:
        async with reader.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                if self._postgres:
                    return await driver.fetchrow(sql, *args)
                rows = await driver.execute_fetchall(sql, args)
                return rows[0] if rows else None
            except BaseException:
                await conn.invalidate()  # a connection that failed mid-call is not reused
                raise

    def _processed(self, record: Any) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self._processors, tuple(record), strict=True)
        )


def _columns(statement: Any) -> list[Any]:
    """The columns a statement returns (none for an ``INSERT`` without ``RETURNING``)."""
    return list(statement.selected_columns) if isinstance(statement, sa.Select) else []
