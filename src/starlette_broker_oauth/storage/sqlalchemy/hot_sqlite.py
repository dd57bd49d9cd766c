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
- it never checkpoints (``wal_autocheckpoint=0``): every few thousand rows written,
  threads of its own are woken to do it (see ``_Checkpointer``), off the loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ...errors import StorageUnavailable
from .engines import SQLITE_PRAGMAS

__all__ = ["InlineSQLite"]

log = logging.getLogger("starlette_broker_oauth")

Statement = tuple[str, Sequence[Any]]
T = TypeVar("T")

# Rows written between two copies of the log into the database file (a row changes a
# few pages of its table and indexes). Each copy ends with an fsync, which slows every
# write on the host for a moment: under sustained load, fewer and longer copies keep the
# latency tail lower (issuing tokens, p99/p50: 4.8 copying every 1000 rows, 3.1 every
# 5000 with rewinds past 60,000 pages).
COPY_EVERY = 5000
# Pages in the log past which it is rewound (50,000 pages of 4 KiB: about 200 MiB). A
# rewind holds writers up for a few milliseconds (the pages written since the last copy,
# and an fsync, under the write lock).
RESTART_PAGES = 50_000
RESTART_ATTEMPTS = 200
# Inserts closer together than this are grouped (see InlineSQLite._grouped).
GROUP_WITHIN = 0.001
# How long a statement waits for another process's lock, as a busy timeout would.
LOCK_WAIT = 30.0
# The engine's settings, but never a wait inside SQLite.
PRAGMAS = (*(p for p in SQLITE_PRAGMAS if not p.startswith("busy_timeout=")), "busy_timeout=0")


class Busy(Exception):
    """The database is locked by another connection: try again."""


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # pragma: no cover - Python < 3.11
        return "locked" in str(exc) or "busy" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


async def _retrying(attempt: Callable[[], T]) -> T:
    """``attempt()`` until it does not find the database locked, pausing on the loop
    between tries (short first, then up to 1 ms: another process holds the lock for a
    commit, well under a millisecond), for :data:`LOCK_WAIT` seconds in all."""
    deadline = time.monotonic() + LOCK_WAIT
    pause = 0.0001
    while time.monotonic() < deadline:
        try:
            return attempt()
        except Busy:
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.001)
    raise StorageUnavailable("the SQLite database stayed locked")


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
        # Every use below runs to its end without an await, so the loop never interleaves
        # two of them; the guard keeps each whole for loops in other threads.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._guard = threading.Lock()
        self._owner = threading.get_ident()  # the loop's thread: groups and turns are its
        for pragma in PRAGMAS:
            self._conn.execute(f"PRAGMA {pragma}")
        self._rows = 0
        self._checkpointer = _Checkpointer(path)
        self._pending: list[_Pending] = []
        self._last_insert = 0.0

    async def close(self) -> None:
        self._checkpointer.stop()
        with self._guard:
            self._conn.close()

    async def fetch_row(self, sql: str, args: Sequence[Any]) -> Any:
        """The first row of a read, or ``None``."""
        try:
            return self._first(sql, args)  # the token check's path: nothing more
        except Busy:
            return await _retrying(lambda: self._first(sql, args))

    def _first(self, sql: str, args: Sequence[Any]) -> Any:
        try:
            # fetchall runs the statement to its end: no read stays open.
            with self._guard:
                rows = self._conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise Busy from exc
            raise
        return rows[0] if rows else None

    async def run(self, statements: Sequence[Statement], *, guarded: bool) -> bool:
        """Run the statements as one transaction. ``guarded``: the first must change
        exactly one row, or nothing is written and the answer is ``False``."""
        if threading.get_ident() != self._owner:
            return await self._from_another_thread(statements, guarded)
        if len(statements) == 1 and not guarded:
            await self._grouped(statements[0])
            return True
        return await self._transaction(statements, guarded)

    async def _from_another_thread(self, statements: Sequence[Statement], guarded: bool) -> bool:
        """A write from an event loop in another thread than the one that opened the
        storage: no group, no turn on the (single-loop) writers' lock; the connection's
        guard keeps each transaction whole."""
        return await _retrying(lambda: self._committed(statements, guarded))

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
            except Exception as exc:
                entry.error = exc
            finally:
                for pending in group:
                    pending.done.set()
        entry.outcome()

    async def _write_group(self, group: list[_Pending]) -> None:
        try:
            await self._transaction([pending.statement for pending in group], False)
            return
        except sqlite3.IntegrityError:
            if len(group) == 1:
                raise
        except Exception as exc:  # the database, not a row: the same answer for all
            for pending in group:
                pending.error = exc
            return
        for pending in group:  # one row was refused: each on its own, for its own answer
            try:
                await self._transaction([pending.statement], False)
            except Exception as exc:
                pending.error = exc

    async def _transaction(self, statements: Sequence[Statement], guarded: bool) -> bool:
        if not self._writers.locked():
            try:
                return self._committed(statements, guarded)  # no await: nobody waits
            except Busy:
                pass
        async with self._writers:
            return await _retrying(lambda: self._committed(statements, guarded))

    def _committed(self, statements: Sequence[Statement], guarded: bool) -> bool:
        done = self._commit(statements, guarded)
        self._after_commit(len(statements))
        return done

    def _commit(self, statements: Sequence[Statement], guarded: bool) -> bool:
        with self._guard:
            return self._commit_here(statements, guarded)

    def _commit_here(self, statements: Sequence[Statement], guarded: bool) -> bool:
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

    def _after_commit(self, rows: int) -> None:
        self._rows += rows
        if self._rows >= COPY_EVERY:
            self._rows = 0
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
    """Two threads that keep the log short, so that copying it into the database file
    and its ``fsync`` never hold up the loop, a request or this process's writers.

    When woken, the first, at the lowest CPU priority, copies the log (``PASSIVE``:
    writers go on meanwhile). Writers go on appending while it copies, so under load the
    log is never wholly copied, and a log not wholly copied is never rewound: once it
    is longer than :data:`RESTART_PAGES`, the second thread, at normal priority,
    restarts it (``RESTART``): it takes the write lock to copy the few pages written
    since the copy, and rewinds the log. Writers meanwhile find the
    database locked and wait their turn (a millisecond or so).
    """

    def __init__(self, path: str) -> None:
        self._copier = _Waker(
            lambda: copy(path, self._restarter.wake), "sqlite-checkpoint", nice=True
        )
        self._restarter = _Waker(lambda: restart(path), "sqlite-restart")

    def wake(self) -> None:
        self._copier.wake()

    def stop(self) -> None:
        self._copier.stop()
        self._restarter.stop()


class _Waker:
    """A thread that runs ``work`` each time it is woken (wakes while it works add up to
    one more run)."""

    def __init__(self, work: Callable[[], object], name: str, *, nice: bool = False) -> None:
        self._work = work
        self._name = name
        self._nice = nice  # at the lowest CPU priority
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        if self._thread is None:  # started on first use, from the loop's thread
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._wanted.set()

    def stop(self) -> None:
        """Let the thread end after its current run (not waited for: it holds nothing
        the storage needs)."""
        self._stopping = True
        self._wanted.set()

    def _run(self) -> None:
        if self._nice:
            with contextlib.suppress(OSError, AttributeError):  # where threads have a nice
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopping:
                return
            try:
                self._work()
            except Exception:  # the next wake tries again: the thread must live on
                log.warning("SQLite checkpoint (%s) failed", self._name, exc_info=True)


def copy(path: str, restart_wanted: Callable[[], None]) -> None:
    """Copy the log into the database file without holding writers up; ask for a
    rewind once the log is longer than :data:`RESTART_PAGES`."""
    with _connection(path) as conn:
        _, pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if pages >= RESTART_PAGES:
            restart_wanted()


def restart(path: str) -> bool:
    """Copy what is left of the log and rewind it; whether it could.

    ``RESTART`` takes the write lock, copies the pages written since the last copy, and
    rewinds the log once no reader is looking at it. Without a busy timeout: SQLite's own
    sleeps 1, 2, 5 ms… while it holds the write lock, which holds every writer up as
    long. Here a ``RESTART`` that found the lock taken, or a reader, lets go at once and
    is tried again 0.5 ms later.
    """
    with _connection(path, timeout=0) as conn:
        # First copy, without the lock, what was written during the low-priority copy:
        # what is left for the locked part is then a few pages.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        for _ in range(RESTART_ATTEMPTS):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if not busy:
                return True
            time.sleep(0.0005)
    return False


@contextlib.contextmanager
def _connection(path: str, timeout: float = 1) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None, timeout=timeout)
    try:
        yield conn
    except sqlite3.OperationalError as exc:
        if not _busy(exc):
            raise
        # busy: the next one will do it
    finally:
        conn.close()
