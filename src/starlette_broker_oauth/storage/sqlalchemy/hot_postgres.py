"""The hot path on PostgreSQL: reads by key and short writes on asyncpg's own pool.

asyncpg's pool hands out a connection without SQLAlchemy's checkout machinery, and each
connection keeps its prepared statements, so a read by key or a one-row insert is one
round trip. A transaction (a code's redemption) is ``BEGIN``, its statements and
``COMMIT`` back to back on one connection: its row locks are held for those few round
trips only. Nothing on these connections changes the session, so a connection goes back
to the pool without asyncpg's reset query (a round trip of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ...errors import StorageUnavailable
from .engines import is_transient

__all__ = ["PostgresPool"]

Statement = tuple[str, Sequence[Any]]


async def _no_reset(connection: Any) -> None:
    """These connections never change their session: nothing to reset."""


class PostgresPool:
    """An asyncpg pool for the hot path.

    Parameters:
        pool: The asyncpg pool (see :meth:`create`).
        timeout: How long to wait for a free connection, in seconds.
    """

    def __init__(self, pool: Any, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout

    @classmethod
    async def create(cls, engine: AsyncEngine, options: dict[str, Any]) -> PostgresPool:
        """A pool as large as the engine's (``pool_size`` + ``max_overflow``), connecting
        as the engine does: its URL and ``connect_args`` read by SQLAlchemy's asyncpg
        dialect, whose own options are translated (``prepared_statement_cache_size``
        becomes asyncpg's ``statement_cache_size``), or the engine's ``async_creator``."""
        import asyncpg

        args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs = {**kwargs, **options.get("connect_args", {})}
        cache_size = kwargs.pop("prepared_statement_cache_size", None)
        if cache_size is not None:
            kwargs.setdefault("statement_cache_size", int(cache_size))
        kwargs.pop("prepared_statement_name_func", None)  # names SQLAlchemy's statements
        kwargs.pop("async_creator_fn", None)
        creator = options.get("async_creator")  # the engine's own way to connect
        if creator is not None:
            kwargs["connect"] = lambda *a, **kw: creator()
        size = int(options.get("pool_size", 5)) + int(options.get("max_overflow", 10))
        # No connection yet (min_size=0): like the engine, it connects on first use, so a
        # database away at start-up is a 503 later, not a worker that cannot start.
        pool = await asyncpg.create_pool(
            *args, min_size=0, max_size=max(size, 1), reset=_no_reset, **kwargs
        )
        return cls(pool, float(options.get("pool_timeout", 10)))

    async def close(self) -> None:
        await self._pool.close()

    async def fetch_row(self, sql: str, args: Sequence[Any]) -> Any:
        """The first row of a read, or ``None``; a connection found dead is replaced and
        the read tried once more."""
        for attempt in (1, 2):
            try:
                async with self._pool.acquire(timeout=self._timeout) as conn:
                    return await conn.fetchrow(sql, *args)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == 2 or isinstance(exc, TimeoutError):  # no free connection
                    raise StorageUnavailable(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    async def run(self, statements: Sequence[Statement], *, guarded: bool) -> bool:
        """Run the statements as one transaction. ``guarded``: the first must change
        exactly one row, or nothing is written and the answer is ``False``."""
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn:
                if len(statements) == 1 and not guarded:
                    await conn.execute(statements[0][0], *statements[0][1])
                    return True
                async with conn.transaction():
                    for index, (sql, args) in enumerate(statements):
                        status = await conn.execute(sql, *args)
                        if guarded and index == 0 and _rowcount(status) != 1:
                            raise _Unchanged
                return True
        except _Unchanged:
            return False
        except Exception as exc:
            if is_transient(exc):
                raise StorageUnavailable(type(exc).__name__) from exc
            raise


class _Unchanged(Exception):
    """The guard changed no row: roll back."""


def _rowcount(status: str) -> int:
    """The row count of a command status (``UPDATE 1``, ``INSERT 0 1``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
