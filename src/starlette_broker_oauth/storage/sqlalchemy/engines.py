"""Engines and driver tuning for SQLite (aiosqlite) and PostgreSQL (asyncpg), and what
their failures mean.

A transient failure - the database is away, restarting, out of connections, or a
serialisation conflict - becomes :class:`~starlette_broker_oauth.errors.StorageUnavailable`
(answered 503); anything else is a bug and stays as it is.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ...errors import ConfigurationError, StorageUnavailable

__all__ = [
    "SQLITE_PRAGMAS",
    "async_url",
    "enable_wal",
    "engine_options",
    "is_transient",
    "require_asyncpg",
    "sqlite_on_connect",
    "translated",
]

_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)


# SQLSTATE classes that mean "not now": 08 connection exception, 53 insufficient
# resources, 57P0x shutting down / starting up, 40001/40P01 serialization / deadlock.
_TRANSIENT_SQLSTATES = ("08", "53", "57P0", "40001", "40P01")


# Driver exception classes that mean the connection is gone. InternalClientError:
# asyncpg's protocol left mid-error by a connection the server closed while it was idle.
_TRANSIENT_DRIVER_ERRORS = frozenset(
    {"ConnectionDoesNotExistError", "InterfaceError", "InternalClientError", "OperationalError"}
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot serve right now (retry later): SQLAlchemy's
    wrapped errors and the drivers' own (asyncpg, sqlite3) alike."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        inner = (exc.orig, getattr(exc.orig, "__cause__", None))
        return any(e is not None and e is not exc and is_transient(e) for e in inner)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith(_TRANSIENT_SQLSTATES):
        return True
    return type(exc).__name__ in _TRANSIENT_DRIVER_ERRORS


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn a transient database failure into :class:`StorageUnavailable`."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise StorageUnavailable(type(exc).__name__) from exc
        raise


def require_asyncpg() -> None:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise ImportError(
            "PostgreSQL needs asyncpg: pip install 'starlette-broker-oauth[postgres]'"
        ) from None


def async_url(database_url: str) -> sa.URL:
    url = sa.make_url(database_url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
    if url.drivername in driver:
        url = url.set(drivername=driver[url.drivername])
    if url.drivername not in driver.values():
        raise ConfigurationError(
            f"unsupported database URL scheme {url.drivername!r}: "
            "use sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    return url


def sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    """Per-connection SQLite settings (the journal mode is the file's, set once by
    :func:`enable_wal`)."""
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


SQLITE_PRAGMAS = (
    "foreign_keys=ON",
    "busy_timeout=30000",
    "synchronous=NORMAL",
    # The storage's threads copy the log (hot_sqlite.py): a commit here must not do it
    # while this process's writers wait for their turn.
    "wal_autocheckpoint=0",
    # Token lookups are random reads over the whole table: map it rather than read it.
    "mmap_size=1073741824",
    "cache_size=-32768",
)


async def enable_wal(path: str, *, attempts: int = 200) -> None:
    """Put a SQLite file in WAL mode, once: the mode belongs to the file and lasts.

    Switching needs the file to itself, so processes opening it at once take turns; the
    wait is an ``anyio.sleep`` on the event loop, never a blocking one.
    """
    import aiosqlite

    async with aiosqlite.connect(path, isolation_level=None, timeout=0) as connection:
        for _ in range(attempts):
            try:
                cursor = await connection.execute("PRAGMA journal_mode=WAL")
                row = await cursor.fetchone()
                if row is not None and str(row[0]).lower() == "wal":
                    return
            except sqlite3.OperationalError:
                pass
            await anyio.sleep(0.025)
    raise StorageUnavailable(f"could not switch {path} to WAL mode: the file is locked")


def engine_options(url: sa.URL, options: dict[str, Any], *, in_memory: bool) -> dict[str, Any]:
    """``create_async_engine`` options: the caller's, over the library's defaults."""
    options = dict(options)
    if in_memory:
        from sqlalchemy.pool import StaticPool

        options.setdefault("poolclass", StaticPool)
    if url.get_backend_name() == "sqlite":
        options.setdefault("connect_args", {}).setdefault("timeout", 30)
    else:
        # Fail fast while the database is away, and come back by itself: a dead pooled
        # connection is noticed at checkout (pre-ping) and replaced.
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_timeout", 10)
        connect_args = options.setdefault("connect_args", {})
        connect_args.setdefault("timeout", 5)
        connect_args.setdefault("command_timeout", 10)
    return options
