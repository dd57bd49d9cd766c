"""The hot path on a SQLite file: reads by key and short writes, run on the event loop.

A key lookup in WAL mode takes a few microseconds and a one-row insert a few dozen
(``synchronous=NORMAL``: a commit writes the log without waiting for the disk). Handing
either to a thread and back costs more than the work, so they run here, on one
connection, without leaving the loop. Nothing on this connection ever waits inside
SQLite:

- its busy timeout is zero: a statement that finds the database locked by another
  process fails at once, and is retried after an ``anyio.sleep`` (the loop serves other
  requests meanwhile);
- this process's writers take turns on one lock, so they never meet in SQLite; a write
  with the lock free and the database free is done at once, without awaiting anything;
- it never checkpoints (``wal_autocheckpoint=0``): every thousand commits, a checkpoint
  runs in a worker thread, so copying the log into the file and its ``fsync`` happen off
  the loop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anyio

from ...errors import StorageUnavailable

__all__ = ["InlineSQLite"]

Statement = tuple[str, Sequence[Any]]

# Commits between two checkpoints (SQLite's own default is 1000 pages).
CHECKPOINT_EVERY = 1000
# How long a statement waits for another process's lock, as a busy timeout would.
LOCK_WAIT = 30.0
PRAGMAS = (
    "foreign_keys=ON",
    "busy_timeout=0",
    "synchronous=NORMAL",
    "wal_autocheckpoint=0",
    # Token lookups are random reads over the whole table: map it rather than read it.
    "mmap_size=1073741824",
    "cache_size=-32768",
)


class Busy(Exception):
    """The database is locked by another connection: try again."""


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # pragma: no cover - Python < 3.11
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _pauses() -> Iterator[float]:
    """Pauses between attempts on a locked database: short first, then up to 10 ms,
    for :data:`LOCK_WAIT` seconds in all."""
    deadline = time.monotonic() + LOCK_WAIT
    pause = 0.0005
    while time.monotonic() < deadline:
        yield pause
        pause = min(pause * 2, 0.01)


class InlineSQLite:
    """One SQLite connection used on the event loop's thread (see the module).

    Parameters:
        path: The database file.
        writers: The lock this process's writers take turns on (shared with the
            storage's SQLAlchemy transactions).
    """

    def __init__(self, path: str, writers: anyio.Lock) -> None:
        self._path = path
        self._writers = writers
        # Used from one thread at a time: every call below runs to its end without an
        # await, so the loop never interleaves two of them.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            self._conn.execute(f"PRAGMA {pragma}")
        self._commits = 0
        self._checkpointing = False

    def close(self) -> None:
        self._conn.close()

    async def fetch_row(self, sql: str, args: Sequence[Any]) -> Any:
        """The first row of a read, or ``None``."""
        try:
            return self._first(sql, args)
        except Busy:
            pass
        for pause in _pauses():
            await anyio.sleep(pause)
            try:
                return self._first(sql, args)
            except Busy:
                continue
        raise StorageUnavailable("the SQLite database stayed locked")

    def _first(self, sql: str, args: Sequence[Any]) -> Any:
        try:
            # fetchall runs the statement to its end: no read stays open.
            rows = self._conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise Busy from exc
            raise
        return rows[0] if rows else None

    async def run(self, statements: Sequence[Statement], *, guarded: bool) -> bool:
        """Run the statements as one transaction. ``guarded``: the first must change
        exactly one row, or nothing is written and the answer is ``False``."""
        if not self._writers.locked():
            try:
                done = self._commit(statements, guarded)
            except Busy:
                pass
            else:
                await self._after_commit()
                return done
        async with self._writers:
            for pause in _pauses():
                try:
                    done = self._commit(statements, guarded)
                except Busy:
                    await anyio.sleep(pause)
                    continue
                await self._after_commit()
                return done
        raise StorageUnavailable("the SQLite database stayed locked")

    def _commit(self, statements: Sequence[Statement], guarded: bool) -> bool:
        conn = self._conn
        try:
            if len(statements) == 1 and not guarded:
                conn.execute(*statements[0])  # one statement is its own transaction
                return True
            conn.execute("BEGIN IMMEDIATE")
            try:
                for index, statement in enumerate(statements):
                    changed = conn.execute(*statement).rowcount
                    if guarded and index == 0 and changed != 1:
                        conn.execute("ROLLBACK")
                        return False
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return True
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise Busy from exc
            raise

    async def _after_commit(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and not self._checkpointing:
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        """Copy the log into the database file, in a worker thread."""
        if self._checkpointing:
            return
        self._checkpointing, self._commits = True, 0
        try:
            await anyio.to_thread.run_sync(_checkpoint, self._path)
        finally:
            self._checkpointing = False


def _checkpoint(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.OperationalError:
        pass  # busy: the next one will do it
    finally:
        conn.close()
