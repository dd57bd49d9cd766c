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
- the one-row inserts of requests served in the same turn of the loop are committed
  together (group commit), as one transaction;
- it never checkpoints (``wal_autocheckpoint=0``): every thousand commits, a thread of
  its own is woken to checkpoint (see :func:`checkpoint`), so copying the log into the
  file and its ``fsync`` happen off the loop.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import anyio.lowlevel

from ...errors import StorageUnavailable

__all__ = ["InlineSQLite"]

Statement = tuple[str, Sequence[Any]]

# Commits between two checkpoints (SQLite's own default is 1000 pages).
CHECKPOINT_EVERY = 1000
# Inserts closer together than this are grouped (see InlineSQLite._grouped).
GROUP_WITHIN = 0.001
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
    """Pauses between attempts on a locked database: short first, then up to 1 ms,
    for :data:`LOCK_WAIT` seconds in all."""
    deadline = time.monotonic() + LOCK_WAIT
    pause = 0.0001
    while time.monotonic() < deadline:
        yield pause
        # Another process holds the lock for a commit: well under a millisecond.
        pause = min(pause * 2, 0.001)


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
        self._checkpointer = _Checkpointer(path)
        self._pending: list[_Pending] = []
        self._last_insert = 0.0

    def close(self) -> None:
        self._checkpointer.stop()
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
        if len(statements) == 1 and not guarded:
            await self._grouped(statements[0])
            return True
        return await self._transaction(statements, guarded)

    async def _grouped(self, statement: Statement) -> None:
        """Group commit: the one-row inserts that requests ask for in the same turn of
        the loop are written in one transaction. A commit writes every page it changed to
        the log, and inserts into the same tables change mostly the same index pages, so
        a group costs little more than one insert. Only while inserts come closer together
        than :data:`GROUP_WITHIN`: on an idle server an insert is written at once."""
        now = time.monotonic()
        busy, self._last_insert = now - self._last_insert < GROUP_WITHIN, now
        if not busy and not self._pending:  # an idle server writes at once
            await self._transaction([statement], False)
            return
        entry = _Pending(statement)
        self._pending.append(entry)
        if len(self._pending) > 1:
            await entry.done.wait()  # the first of the group writes it
            entry.outcome()
            return
        # The first: let the other requests that are ready queue theirs, then write the
        # group. Shielded: a cancelled request does not leave the others unwritten.
        with anyio.CancelScope(shield=True):
            await anyio.lowlevel.checkpoint()
            group, self._pending = self._pending, []
            try:
                await self._write_group(group)
            finally:
                for pending in group:
                    pending.done.set()
        entry.outcome()

    async def _write_group(self, group: list[_Pending]) -> None:
        try:
            await self._transaction([pending.statement for pending in group], False)
            return
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
                return
        for pending in group:  # one of them failed: each on its own, for its own answer
            try:
                await self._transaction([pending.statement], False)
            except Exception as exc:
                pending.error = exc

    async def _transaction(self, statements: Sequence[Statement], guarded: bool) -> bool:
        if not self._writers.locked():
            try:
                done = self._commit(statements, guarded)
            except Busy:
                pass
            else:
                self._after_commit()
                return done
        async with self._writers:
            for pause in _pauses():
                try:
                    done = self._commit(statements, guarded)
                except Busy:
                    await anyio.sleep(pause)
                    continue
                self._after_commit()
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

    def _after_commit(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            self._checkpointer.wake()


class _Pending:
    """An insert waiting for its group's commit."""

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.done = anyio.Event()
        self.error: Exception | None = None

    def outcome(self) -> None:
        if self.error is not None:
            raise self.error


class _Checkpointer:
    """A thread that copies the log into the database file when woken, so that the copy
    and its ``fsync`` never hold up the loop, a request or this process's writers."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        if self._thread is None:  # started on first use
            self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
            self._thread.start()
        self._wanted.set()

    def stop(self) -> None:
        self._stopping = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            checkpoint(self._path)


def checkpoint(path: str) -> None:
    """Copy the log into the database file, then have the next writer start the log
    again from its beginning.

    ``PASSIVE`` copies while writers go on, so it seldom finishes with nothing left; a log
    that is never wholly copied is never rewound, and grows for as long as writes keep
    coming. ``RESTART`` then takes the write lock to copy what was written meanwhile (a
    few pages: a millisecond or so), which is what lets the log be rewound. Writers
    meanwhile find the database locked and wait their turn; the wait for them here is
    this thread's, never the loop's.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=1)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    except sqlite3.OperationalError:
        pass  # busy: the next one will do it
    finally:
        conn.close()
