"""Opening the database a command works on, and saying in one line why it cannot be used:
built from the URL (host and port, or the SQLite path; never the password) and from what
the driver raised."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio

from ..errors import ConfigurationError, StorageUnavailable
from ..storage.sqlalchemy import SQLAlchemyStorage
from .output import CommandError

__all__ = ["connected", "open_or_explain", "unusable"]

_E = TypeVar("_E", bound=BaseException)

_URL_FORM = (
    "cannot parse the database URL: expected sqlite+aiosqlite:///PATH "
    "or postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE"
)


@asynccontextmanager
async def connected(args: argparse.Namespace) -> AsyncIterator[SQLAlchemyStorage]:
    """The storage of ``--database-url``, open; a database that cannot be used, now or
    midway, is a :class:`CommandError` naming it."""
    try:
        storage = SQLAlchemyStorage(
            args.database_url, table_prefix=args.table_prefix, migrate=args.migrate
        )
    except (ConfigurationError, ImportError) as exc:  # a scheme it does not take, a driver
        raise CommandError(str(exc)) from None
    except Exception:  # the URL itself: SQLAlchemy's parser says why with the password
        raise CommandError(_URL_FORM) from None
    if args.reads_only or args.existing_only:
        missing = _missing_file(storage)
        if missing is not None:
            raise CommandError(
                f"there is no SQLite database at {missing}: check --database-url, or "
                "create it with 'broker-oauth db upgrade'"
            )
    await open_or_explain(storage)
    try:
        if args.reads_only and await storage.current_revision() is None:
            raise CommandError(
                f"the database {_where(storage)} has no tables: check --database-url and "
                "--table-prefix, or create them with 'broker-oauth db upgrade'"
            )
        yield storage
    except StorageUnavailable as exc:
        raise CommandError(unusable(storage, exc)) from None
    finally:
        await storage.close()


async def open_or_explain(storage: SQLAlchemyStorage) -> None:
    """Open the storage, or raise a :class:`CommandError` saying why it cannot be."""
    problem = _sqlite_problem(storage)
    if problem is not None:
        raise CommandError(_sqlite_failure(storage, problem))
    try:
        await storage.open()
    except Exception as exc:
        await anyio.sleep(0.1)  # let a driver thread that failed finish before the loop ends
        raise CommandError(unusable(storage, exc)) from None


def unusable(storage: SQLAlchemyStorage, exc: BaseException) -> str:
    """Why the database cannot be used, in one line."""
    url = storage.url
    causes = list(_causes(exc))
    if url.get_backend_name() == "sqlite":
        return _sqlite_failure(storage, _sqlite_reason(exc, causes))
    place = f"{url.host or 'localhost'}:{url.port or 5432}"
    missing = _first(causes, ImportError)
    if missing is not None:
        return str(missing)
    for kind, reason in (
        (ConnectionRefusedError, "connection refused"),
        (socket.gaierror, "unknown host"),
        (TimeoutError, "timed out"),
    ):
        if _first(causes, kind) is not None:
            return f"cannot reach the database at {place} ({reason})"
    said = [cause for cause in causes if getattr(cause, "sqlstate", None)]
    if said:  # the server's own words, from the driver's exception (the innermost)
        return f"the database at {place} refused: {_first_line(said[-1])}"
    failed = _first(causes, OSError)
    if failed is not None:
        return f"cannot reach the database at {place} ({failed.strerror or _first_line(failed)})"
    return f"cannot use the database at {place}: {type(exc).__name__}: {_first_line(exc)}"


def _missing_file(storage: SQLAlchemyStorage) -> str | None:
    """The SQLite file's path if it does not exist (a command that only reads must not
    create it)."""
    path = _sqlite_path(storage)
    if path is None or path.startswith("file:") or _sqlite_problem(storage) is not None:
        return None  # (what stops the file being opened at all is said first)
    return None if Path(path).exists() else path


def _where(storage: SQLAlchemyStorage) -> str:
    """The database, named without its password."""
    path = _sqlite_path(storage)
    if path is not None:
        return f"at {path}"
    url = storage.url
    return f"{url.database or ''} at {url.host or 'localhost'}:{url.port or 5432}"


def _first(causes: list[BaseException], kind: type[_E]) -> _E | None:
    return next((cause for cause in causes if isinstance(cause, kind)), None)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and every one it came from (SQLAlchemy's ``orig`` included)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        cause = pending.pop(0)
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        for nearer in (getattr(cause, "orig", None), cause.__cause__, cause.__context__):
            if isinstance(nearer, BaseException):
                pending.append(nearer)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sqlite_path(storage: SQLAlchemyStorage) -> str | None:
    """The SQLite file's path, or ``None`` for another database or an in-memory one."""
    url = storage.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return database


def _sqlite_failure(storage: SQLAlchemyStorage, reason: str) -> str:
    return f"cannot open the SQLite database {_sqlite_path(storage)}: {reason}"


def _sqlite_problem(storage: SQLAlchemyStorage) -> str | None:
    """What stops SQLite opening (or creating) the file, if the file system says."""
    database = _sqlite_path(storage)
    if database is None or database.startswith("file:"):
        return None
    path = Path(database)
    if path.is_dir():
        return "it is a directory"
    if not path.parent.exists():
        return "the directory does not exist"
    if not path.parent.is_dir():
        return f"{path.parent} is not a directory"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "permission denied"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return "its directory is not writable"
    return None


def _sqlite_reason(exc: BaseException, causes: list[BaseException]) -> str:
    # The driver's own error, which says what SQLite found.
    driver = next((c for c in causes if type(c).__module__ == "sqlite3"), None)
    found = (
        driver
        or _first(causes, ImportError)
        or _first(causes, OSError)
        or _first(causes, StorageUnavailable)
    )
    if found is None:
        return f"{type(exc).__name__}: {_first_line(exc)}"
    text = _first_line(found)
    if "locked" in text:
        return "the file is locked"
    if "not a database" in text:
        return "the file is not a SQLite database"
    return text
