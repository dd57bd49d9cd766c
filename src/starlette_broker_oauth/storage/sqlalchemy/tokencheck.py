"""The hot path: the token check's read (the token and its client, on every protected
request), the other reads by key (the partner, the partner's client and account, a code),
and the writes of issuance and redemption, each compiled once for the dialect and run on
the driver without SQLAlchemy's connection machinery.

Where they run: on a SQLite file, on the event loop itself
(:mod:`.hot_sqlite`); on PostgreSQL, on an asyncpg pool (:mod:`.hot_postgres`); on an
in-memory SQLite database, on the engine's one connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ...errors import ConfigurationError, StorageUnavailable
from ...models import AccessToken, Client
from .engines import is_transient
from .hot_postgres import PostgresPool
from .hot_sqlite import InlineSQLite
from .schema import Tables, client_from

__all__ = ["TokenCheck"]

_NOT_OPEN = (
    "the storage is not open: enter it (`async with storage:`) in the application's "
    "lifespan, and leave it on shutdown"
)
Processor = Callable[[Any], Any] | None
Statement = tuple[str, Sequence[Any]]
# A statement compiled for the dialect: SQL, its parameters in order with their bind
# processors, the result columns' processors, the result columns' names.
_Compiled = tuple[str, list[tuple[str, Processor]], list[Processor], list[str]]


class _HotPath(Protocol):
    async def fetch_row(self, sql: str, args: Sequence[Any]) -> Any: ...

    async def run(self, statements: Sequence[Statement], *, guarded: bool) -> bool: ...

    async def close(self) -> None: ...


class TokenCheck:
    """The hot path's statements, and the connection they run on.

    Parameters:
        tables: The library's tables.
    """

    def __init__(self, tables: Tables) -> None:
        tok, cli = tables.tokens, tables.clients
        self._token_columns = [c.name for c in tok.columns]
        self._client_columns = [c.name for c in cli.columns]
        self._statements: dict[str, sa.Select[Any] | sa.Insert | sa.Update] = {
            "token with client": sa.select(tok, cli)
            .select_from(tok.outerjoin(cli, cli.c.client_id == tok.c.client_id))
            .where(tok.c.token_hash == sa.bindparam("token_hash"))
        }
        self._compiled: dict[str, _Compiled] = {}
        self._path: _HotPath | None = None

    def register(self, name: str, statement: sa.Select[Any] | sa.Insert | sa.Update) -> None:
        """Add a statement; its parameters are ``bindparam`` names (an ``INSERT`` of a
        table: its column names), given to :meth:`one`, :meth:`execute` or
        :meth:`transaction`."""
        self._statements[name] = statement

    async def open(
        self,
        engine: AsyncEngine,
        options: dict[str, Any],
        *,
        in_memory: bool,
        writers: anyio.Lock | None,
    ) -> None:
        """Compile the statements for ``engine``'s dialect and open the hot path's
        connections beside it (created with the engine's ``options``). ``writers``: the
        lock this process's SQLite writers take turns on."""
        dialect = engine.dialect
        for name, statement in self._statements.items():
            compiled: Any = statement.compile(dialect=dialect)
            columns = _columns(statement)
            self._compiled[name] = (
                str(compiled),
                [
                    (key, compiled.binds[key].type.dialect_impl(dialect).bind_processor(dialect))
                    for key in list(compiled.positiontup or [])
                ],
                [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns],
                [c.name for c in columns],
            )
        url = engine.url
        if url.get_backend_name() == "postgresql":
            self._path = await PostgresPool.create(engine, options)
        elif in_memory:
            # An in-memory database exists on one connection: the engine's own.
            assert writers is not None
            self._path = _OnEngine(engine, writers)
        else:
            assert writers is not None
            self._path = InlineSQLite(url.database or "", writers)

    async def close(self) -> None:
        """Release the hot path's connections."""
        path, self._path = self._path, None
        self._compiled.clear()
        if path is not None:
            await path.close()

    async def __call__(self, token_hash: str) -> tuple[AccessToken, Client | None] | None:
        """The token with this hash and its client (``None`` if the client is gone)."""
        values = await self._values("token with client", {"token_hash": token_hash})
        if values is None:
            return None
        tokens = len(self._token_columns)
        token = AccessToken(**dict(zip(self._token_columns, values[:tokens], strict=True)))
        client = None
        if values[tokens] is not None:
            client = client_from(dict(zip(self._client_columns, values[tokens:], strict=True)))
        return token, client

    async def one(self, name: str, **params: Any) -> dict[str, Any] | None:
        """The first row of the read ``name``, by column name, or ``None``."""
        return await self._row(name, params)

    async def execute(self, name: str, **params: Any) -> None:
        """Run the one-statement write ``name``, committed on its own."""
        await self.transaction([(name, params)], guarded=False)

    async def transaction(
        self, steps: Sequence[tuple[str, dict[str, Any]]], *, guarded: bool = True
    ) -> bool:
        """Run the writes ``steps`` (name, parameters) as one transaction. ``guarded``:
        the first must change exactly one row (a code not yet used), or nothing is
        written and the answer is ``False``."""
        path = self._open_path()
        statements = [self._bound(name, params)[0:2] for name, params in steps]
        try:
            return await path.run(statements, guarded=guarded)
        except Exception as exc:
            raise _translated(exc) from exc

    async def _row(self, name: str, params: dict[str, Any]) -> dict[str, Any] | None:
        values = await self._values(name, params)
        return None if values is None else dict(zip(self._compiled[name][3], values, strict=True))

    async def _values(self, name: str, params: dict[str, Any]) -> list[Any] | None:
        path = self._open_path()
        sql, args, processors, _ = self._bound(name, params)
        try:
            row = await path.fetch_row(sql, args)
        except Exception as exc:
            raise _translated(exc) from exc
        if row is None:
            return None
        return [v if p is None else p(v) for p, v in zip(processors, tuple(row), strict=True)]

    def _open_path(self) -> _HotPath:
        if self._path is None:
            raise ConfigurationError(_NOT_OPEN)
        return self._path

    def _bound(
        self, name: str, params: dict[str, Any]
    ) -> tuple[str, list[Any], list[Processor], list[str]]:
        compiled = self._compiled.get(name)
        if compiled is None:  # compiled when the storage opens
            raise ConfigurationError(_NOT_OPEN)
        sql, binds, processors, columns = compiled
        args = [params[key] if bind is None else bind(params[key]) for key, bind in binds]
        return sql, args, processors, columns


class _OnEngine:
    """The hot path on an in-memory SQLite database: the engine's one connection, whose
    driver begins a transaction before a write and ends it on ``commit``."""

    def __init__(self, engine: AsyncEngine, writers: anyio.Lock) -> None:
        self._engine = engine
        self._writers = writers

    async def close(self) -> None:
        """The connection is the engine's: it closes with it."""

    async def fetch_row(self, sql: str, args: Sequence[Any]) -> Any:
        # One connection: a read ending (the pool's rollback) in the middle of a write
        # would undo it, so reads take the writers' turn too.
        async with self._writers, self._engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            rows = await driver.execute_fetchall(sql, args)
            return rows[0] if rows else None

    async def run(self, statements: Sequence[Statement], *, guarded: bool) -> bool:
        async with self._writers, self._engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            try:
                for index, (sql, args) in enumerate(statements):
                    cursor = await driver.execute(sql, args)
                    if guarded and index == 0 and cursor.rowcount != 1:
                        await driver.rollback()
                        return False
                await driver.commit()
            except BaseException:
                await driver.rollback()
                raise
            return True


def _translated(exc: Exception) -> Exception:
    """A transient failure as :class:`StorageUnavailable`; anything else as it is."""
    return StorageUnavailable(type(exc).__name__) if is_transient(exc) else exc


def _columns(statement: Any) -> list[Any]:
    """The columns a statement returns (none for a write without ``RETURNING``)."""
    return list(statement.selected_columns) if isinstance(statement, sa.Select) else []
