"""The database: one async SQLAlchemy engine, its settings, and what its failures mean.

Every statement goes through SQLAlchemy's engine and public API, compiled once by its
statement cache. What each database is given:

* **SQLite**: the database's own settings on every connection - WAL,
  ``synchronous=NORMAL``, automatic checkpoints, a journal size limit and a busy timeout -
  and ``BEGIN IMMEDIATE`` for writers, so a writer takes the write lock when it begins
  and never fails half-way on a lock another connection holds. SQLite runs in the
  process, and each call into it blocks; aiosqlite makes each call a trip to its thread
  and back (three per statement), which costs more than the statement. So a request's
  statements go to a second engine on the same file and settings, SQLAlchemy's
  synchronous one: reads by key on the event loop (a read in WAL mode never waits for a
  writer, and takes microseconds), and a request's write transaction whole in one worker
  thread (``anyio.to_thread``; it may wait for another process's write lock). The async
  engine serves the rest (administration, migrations, purging).
* **PostgreSQL** (asyncpg): reads run in autocommit (one round trip each, no
  ``BEGIN``/``ROLLBACK`` around them); inside a unit of work (:meth:`Database.unit`, one
  per request) a request's statements share one connection, reads and writes alike.

A transient failure - the database is away, restarting, out of connections, or a
serialisation conflict - becomes :class:`~starlette_broker_oauth.errors.StorageUnavailable`
(answered 503); anything else is a bug and stays as it is.

While a PostgreSQL database is away, a worker answers at once. Once one of its connections
fails (refused, timed out connecting, lost: :func:`is_disconnect`), every statement that
would take a connection from the pool raises ``StorageUnavailable`` without touching the
pool, and one task probes for the database's return, a connection attempt (the pool's
checkout with its pre-ping, within the driver's timeouts) every quarter of a second;
service resumes with the first that succeeds. Neither SQLAlchemy's pool nor asyncpg has a
setting for this: each checkout from a pool whose database is away makes its own attempt
and waits out the connect timeout (5 s when the server accepts the TCP connection but does
not answer), for as long as the outage lasts. SQLite needs nothing of the kind: it is a
file on the worker's own disk, whose failures are immediate or a wait for a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ...errors import ConfigurationError, StorageUnavailable
from .schema import Tables

__all__ = [
    "SQLITE_PRAGMAS",
    "Database",
    "Repository",
    "async_url",
    "is_disconnect",
    "is_transient",
    "require_asyncpg",
    "translated",
]

# Set on every SQLite connection (the busy timeout is the driver's ``timeout``, 5 s
# unless given). WAL is the file's mode, set once when the storage opens.
SQLITE_PRAGMAS = (
    "synchronous=NORMAL",
    "foreign_keys=ON",
    # A commit that leaves 1000 pages (4 MiB) in the log copies them into the database;
    # the log is then reused from its start, and cut back to this size if it grew past it.
    "wal_autocheckpoint=1000",
    "journal_size_limit=67108864",
    "cache_size=-32768",
)

_NOT_OPEN = (
    "the storage is not open: enter it (`async with storage:`) in the application's "
    "lifespan, and leave it on shutdown"
)

_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)

# SQLSTATE classes that mean "not now": 08 connection exception, 53 insufficient
# resources, 57P0x shutting down / starting up, 40001/40P01 serialization / deadlock.
_TRANSIENT_SQLSTATES = ("08", "53", "57P0", "40001", "40P01")

# Driver exception classes that mean the connection is gone. InternalClientError:
# asyncpg's protocol left mid-error by a connection the server closed while it was idle.
_TRANSIENT_DRIVER_ERRORS = frozenset(
    {"ConnectionDoesNotExistError", "InterfaceError", "InternalClientError", "OperationalError"}
)


# SQLSTATE classes that mean the connection or the server is gone: 08 connection exception,
# 57P0x shutting down / starting up (57P01: the backend was terminated).
_DISCONNECT_SQLSTATES = ("08", "57P0")
# How often a worker that saw its database go away tries a connection, in seconds.
PROBE_EVERY = 0.1

log = logging.getLogger("starlette_broker_oauth")


# SQLite's primary result codes that mean "not now": BUSY, LOCKED, IOERR, FULL, CANTOPEN,
# PROTOCOL. Every other code (no such table, read-only file, a misuse) is a bug or a
# misconfiguration, answered 500 like any other.
_TRANSIENT_SQLITE_CODES = frozenset({5, 6, 10, 13, 14, 15})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot serve right now (retry later): SQLAlchemy's
    wrapped errors and the drivers' own alike."""
    code = getattr(
        exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc, "sqlite_errorcode", None
    )
    if code is not None:
        return code & 0xFF in _TRANSIENT_SQLITE_CODES
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


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached: the connection was refused,
    reset or closed, or the server is shutting down or starting up. Not a database that is
    busy: a serialisation conflict, a full pool, too many connections, a lock or a statement
    that timed out. (A connect that timed out is one; :class:`Database` tells it from a
    statement's timeout by where it happened.)"""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        inner = (exc.orig, getattr(exc.orig, "__cause__", None))
        return any(e is not None and e is not exc and is_disconnect(e) for e in inner)
    if isinstance(exc, OSError):
        return not isinstance(exc, TimeoutError)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate.startswith(_DISCONNECT_SQLSTATES) or (
        type(exc).__name__ == "ConnectionDoesNotExistError"
    )


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn a transient database failure into :class:`StorageUnavailable`."""
    try:
        yield
    except (sa_exc.SQLAlchemyError, OSError) as exc:
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
    """The URL with its async driver (``sqlite`` → aiosqlite, ``postgresql`` → asyncpg)."""
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


def _sqlite_connected(dbapi_connection: Any, connection_record: Any) -> None:
    """Every SQLite connection: the settings above, and transactions begun by the
    ``begin`` event below rather than by the driver."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    """Begin a transaction as the connection's engine says: ``BEGIN IMMEDIATE`` for the
    storage's writers (taking the write lock first), none for a read by key, SQLite's
    own ``BEGIN`` otherwise."""
    mode = conn.get_execution_options().get("sqlite_begin", "BEGIN")
    if mode is not None:
        conn.exec_driver_sql(mode)


class _Unit:
    """A unit of work: the one connection a request's statements share (PostgreSQL). It
    is the task's that entered it: a task started inside it (which inherits the context)
    takes connections of its own, and so does anything running after it ended."""

    __slots__ = ("connection", "database", "ended", "held", "task")

    def __init__(self, database: Database) -> None:
        self.database = database
        self.connection: AsyncConnection | None = None
        self.held = contextlib.AsyncExitStack()  # gives the connection back when it ends
        self.task = anyio.get_current_task().id
        self.ended = False


_UNIT: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar(
    "starlette_broker_oauth_unit", default=None
)


class Database:
    """One async engine and the ways the repositories use it.

    Parameters:
        url: An async URL (:func:`async_url`).
        engine_options: Extra keyword arguments for ``create_async_engine``: pool size,
            ``pool_timeout``, ``connect_args`` (the busy timeout of SQLite, the
            driver's ``timeout``, is 5 s unless given; asyncpg's connect ``timeout`` and
            ``command_timeout`` 5 s and 10 s), ….
    """

    def __init__(self, url: sa.URL, engine_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.postgres = url.get_backend_name() == "postgresql"
        self.sqlite = url.get_backend_name() == "sqlite"
        self.in_memory = self.sqlite and (url.database or "") in ("", ":memory:")
        if self.postgres:
            require_asyncpg()  # a missing extra is said here, not on first use
        self._options = dict(engine_options or {})
        self._engine: AsyncEngine | None = None
        self._autocommit: AsyncEngine | None = None
        self._sync: sa.Engine | None = None
        # SQLite's request path: reads by key, on the event loop only, where each runs
        # whole; they begin no transaction (one statement, which in WAL mode sees the
        # last commit). Write transactions, in one worker thread at a time (this
        # process's writers take turns), begun ``IMMEDIATE``.
        self._reader = _Held(begin=None)
        self._writer = _Held(begin="BEGIN IMMEDIATE")
        self._writers: anyio.Lock | None = None
        self._writer_thread = threading.Lock()
        self._busy_timeout = 5.0
        self._write_level = "READ COMMITTED"
        self._async_writes: AsyncEngine | None = None
        # PostgreSQL: since when the database has been seen away (None: it is not), and
        # the one task probing for its return (see the module's docstring).
        self._away_since: float | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The engine; available between :meth:`open` and :meth:`close`."""
        if self._engine is None:
            raise ConfigurationError(_NOT_OPEN)
        return self._engine

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    async def open(self) -> None:
        """Create the engine. A SQLite file is opened (and put in WAL mode) here, so that
        a path that is not a database fails now; PostgreSQL is connected to on first use,
        so a database away at start-up is a 503 later, not a worker that cannot start."""
        if self._engine is not None:
            return
        options = self._engine_options()
        if self.sqlite:
            self._busy_timeout = float(options["connect_args"]["timeout"])
        engine = create_async_engine(self.url, **options)
        if self.sqlite:
            # SQLite has one writer at a time: this process's writers queue here rather
            # than poll in SQLite's busy handler against each other.
            self._writers = anyio.Lock()
            event.listen(engine.sync_engine, "connect", _sqlite_connected)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
            if not self.in_memory:
                # The request path: the same file and settings, used synchronously, on
                # two connections held open (see _Held).
                sync = sa.create_engine(
                    self.url.set(drivername="sqlite+pysqlite"),
                    connect_args={**options.get("connect_args", {}), "check_same_thread": False},
                )
                event.listen(sync, "connect", _sqlite_connected)
                event.listen(sync, "begin", _sqlite_begin)
                self._sync = sync
            self._async_writes = engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        else:
            self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._async_writes = engine.execution_options(isolation_level=self._write_level)
        self._engine = engine
        if self.sqlite and not self.in_memory:
            try:
                await self._switch_to_wal()
            except BaseException:
                await self.close()
                raise

    async def _switch_to_wal(self) -> None:
        """Put the file in WAL mode (a no-op once it is). The switch needs the file to
        itself, and two connections asking for it at once are refused at once rather
        than made to wait (SQLite does not call its busy handler where waiting could
        deadlock), so processes opening a new file together take turns here, for as
        long as the busy timeout."""
        assert self._sync is not None
        deadline = anyio.current_time() + self._busy_timeout
        while True:
            try:
                with translated():
                    mode = await anyio.to_thread.run_sync(self._journal_mode_wal)
            except StorageUnavailable:
                if anyio.current_time() >= deadline:
                    raise
                await anyio.sleep(0.025)
                continue
            if mode == "wal":
                return
            raise ConfigurationError(f"{self.url.database} cannot be put in WAL mode ({mode})")

    def _journal_mode_wal(self) -> str:
        assert self._sync is not None
        with self._sync.connect().execution_options(sqlite_begin=None) as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode=WAL").scalar()).lower()

    async def close(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.wait([probe])
        self._away_since = None
        engine, self._engine = self._engine, None
        self._autocommit = self._async_writes = None
        self._writers = None
        self._reader.close()
        with self._writer_thread:  # a write still running in its thread ends first
            self._writer.close()
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.dispose()
        if engine is not None:
            await engine.dispose()

    def _engine_options(self) -> dict[str, Any]:
        """``create_async_engine`` options: the caller's, over the library's defaults."""
        options = dict(self._options)
        if self.in_memory:
            options.setdefault("poolclass", StaticPool)
        if self.sqlite:
            options.setdefault("connect_args", {}).setdefault("timeout", 5)
        else:
            # Connections read in autocommit (no BEGIN and ROLLBACK around a read, and a
            # checkout's ping is one round trip); write transactions ask for their level.
            self._write_level = options.get("isolation_level", "READ COMMITTED")
            options.setdefault("isolation_level", "AUTOCOMMIT")
            # As many connections as a worker serves requests at once, kept: a connection
            # opened past the pool's size is closed when it is returned.
            options.setdefault("pool_size", 10)
            # Fail fast while the database is away, and come back by itself: a dead pooled
            # connection is noticed at checkout (pre-ping) and replaced.
            options.setdefault("pool_pre_ping", True)
            options.setdefault("pool_timeout", 10)
            connect_args = options.setdefault("connect_args", {})
            connect_args.setdefault("timeout", 5)
            connect_args.setdefault("command_timeout", 10)
        return options

    # units of work

    @contextlib.asynccontextmanager
    async def unit(self) -> AsyncIterator[None]:
        """A unit of work: until it ends, this task's statements share one connection,
        taken at the first statement that needs one (on PostgreSQL; SQLite's reads need
        none and its writers each take the write lock for their transaction)."""
        if not self.postgres or self._own_unit() is not None:
            yield
            return
        unit = _Unit(self)
        token = _UNIT.set(unit)
        try:
            yield
        finally:
            _UNIT.reset(token)
            unit.ended = True
            with self._watched():
                await unit.held.aclose()

    def _own_unit(self) -> _Unit | None:
        """This task's unit of work on this database, if it is in one."""
        unit = _UNIT.get()
        if (
            unit is None
            or unit.database is not self
            or unit.ended
            or unit.task != anyio.get_current_task().id
        ):
            return None
        return unit

    async def _unit_connection(self) -> AsyncConnection | None:
        unit = self._own_unit()
        if unit is None:
            return None
        if unit.connection is None:
            assert self._autocommit is not None
            unit.connection = await unit.held.enter_async_context(self._connected(self._autocommit))
        return unit.connection

    # the database away (PostgreSQL)

    @contextlib.asynccontextmanager
    async def _connected(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """One of the pool's connections. While the database is away, ``StorageUnavailable``
        at once, the pool untouched; a connect that times out (asyncpg's ``timeout``, or a
        pooled connection's pre-ping) is the database seen away."""
        if self._away_since is not None:
            away = anyio.current_time() - self._away_since
            # No I/O on this path: let the probe and other tasks run before answering.
            await anyio.lowlevel.checkpoint()
            raise StorageUnavailable(f"the database has been unreachable for {away:.1f} s")
        connected = False
        try:
            async with engine.connect() as conn:
                connected = True
                yield conn
        except TimeoutError as exc:
            if not connected:
                self._seen_away(exc)
            raise

    @contextlib.contextmanager
    def _watched(self) -> Iterator[None]:
        """:func:`translated`, and a connection-level failure is the database seen away."""
        try:
            with translated():
                yield
        except StorageUnavailable as exc:
            if exc.__cause__ is not None and is_disconnect(exc.__cause__):
                self._seen_away(exc.__cause__)
            raise

    def _seen_away(self, exc: BaseException) -> None:
        """The database is away (PostgreSQL): answer at once until the probe sees it back."""
        if not self.postgres or self._away_since is not None or self._autocommit is None:
            return
        self._away_since = since = anyio.current_time()
        log.warning(
            "the database is unreachable (%s): answering 503 until it is back, "
            "trying a connection every %.2f s",
            type(exc).__name__,
            PROBE_EVERY,
        )
        # A task of the storage's, not of the request that saw the failure (its context
        # is left behind); asyncpg runs on asyncio only. close() ends it.
        self._probe = asyncio.get_running_loop().create_task(
            self._wait_for_return(self._autocommit, since), context=contextvars.Context()
        )

    async def _wait_for_return(self, engine: AsyncEngine, since: float) -> None:
        try:
            while True:
                if await self._answers(engine):
                    break
                await anyio.sleep(PROBE_EVERY)
            log.warning("the database answers again, after %.1f s", anyio.current_time() - since)
        finally:
            self._away_since = None
            self._probe = None

    @staticmethod
    async def _answers(engine: AsyncEngine) -> bool:
        """Whether a connection can be had (a pooled one that answers its pre-ping, or a
        new one within the driver's connect timeout). A failure other than the
        database's absence (too many connections, a refused login) is an answer too:
        requests meet it themselves."""
        try:
            async with engine.connect():
                return True
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            return not (isinstance(exc, TimeoutError) or is_disconnect(exc))

    # reads

    async def first(self, statement: sa.Executable, params: Mapping[str, Any]) -> Any:
        """The first row of a read (a ``Row``), or ``None``."""
        if self._sync is not None:
            with translated(), self._reader.use(self._sync) as reader:
                return reader.execute(statement, params).first()
        if self.postgres:
            with self._watched():
                unit = await self._unit_connection()
                if unit is not None:
                    return (await unit.execute(statement, params)).first()
                assert self._autocommit is not None
                async with self._connected(self._autocommit) as own:
                    return (await own.execute(statement, params)).first()
        async with self.reading() as conn:
            return (await conn.execute(statement, params)).first()

    @contextlib.asynccontextmanager
    async def _turn(self, *, reading: bool = False) -> AsyncIterator[None]:
        """This process's SQLite writers take turns, each waiting for its turn no longer
        than the busy timeout (a writer that would wait longer is answered 503, as one
        that waits that long for another process is); on an in-memory database (one
        connection) readers too, and no statement there is cancelled half-way
        (SQLAlchemy would drop the connection, and the database with it)."""
        if self._writers is None or (reading and not self.in_memory):
            yield
            return
        with anyio.CancelScope(shield=self.in_memory):
            try:
                with anyio.fail_after(self._busy_timeout):
                    await self._writers.acquire()
            except TimeoutError:
                raise StorageUnavailable("the database is locked") from None
            try:
                yield
            finally:
                self._writers.release()

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for several reads (admin listings, a page's list): in a unit of
        work its connection (in autocommit: each read sees the last commit); otherwise
        one of its own, in a read transaction."""
        with self._watched():
            unit = await self._unit_connection()
            if unit is not None:
                yield unit
                return
            async with (
                self._turn(reading=True),
                self._connected(self.engine) as conn,
                conn.begin(),
            ):
                yield conn

    # writes

    async def write(
        self, steps: Sequence[tuple[sa.Executable, Mapping[str, Any]]], *, guarded: bool = False
    ) -> bool:
        """Run the statements ``steps`` (statement, parameters) as one transaction.
        ``guarded``: the first must change exactly one row (a code not yet used), or
        nothing else is run and the answer is ``False``."""
        if self._sync is not None:
            async with self._turn():
                with translated():
                    return await anyio.to_thread.run_sync(self._write_here, steps, guarded)
        async with self.transaction() as conn:
            for index, (statement, params) in enumerate(steps):
                result = await conn.execute(statement, params)
                if guarded and index == 0 and result.rowcount != 1:
                    return False
        return True

    def _write_here(
        self, steps: Sequence[tuple[sa.Executable, Mapping[str, Any]]], guarded: bool
    ) -> bool:
        # The thread's own turn: an asyncio cancellation of the request may release the
        # writers' turn while this thread still runs; the next writer's thread waits here.
        with self._writer_thread, self._writer.use(self._sync_engine()) as conn, conn.begin():
            for index, (statement, params) in enumerate(steps):
                result = conn.execute(statement, params)
                if guarded and index == 0 and result.rowcount != 1:
                    return False
        return True

    def _sync_engine(self) -> sa.Engine:
        if self._sync is None:
            raise ConfigurationError(_NOT_OPEN)
        return self._sync

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends (rolled back if it raises);
        on SQLite it holds the write lock from its start."""
        with self._watched():
            conn = await self._unit_connection()
            if conn is None:
                if self._async_writes is None:
                    raise ConfigurationError(_NOT_OPEN)
                async with self._turn(), self._connected(self._async_writes) as own, own.begin():
                    yield own
                return
            # The unit's connection reads in autocommit; a transaction on it is begun for
            # real, and it reads in autocommit again afterwards. (Its reads leave
            # SQLAlchemy's record of a transaction begun, which wrote nothing.)
            if conn.in_transaction():
                await conn.commit()
            await conn.execution_options(isolation_level=self._write_level)
            try:
                async with conn.begin():
                    yield conn
            finally:
                await conn.execution_options(isolation_level="AUTOCOMMIT")


class _Held:
    """A connection of the synchronous engine, held open between uses (no pool checkout
    per statement) and replaced after a failure.

    Parameters:
        begin: How its transactions begin (the ``sqlite_begin`` execution option).
    """

    def __init__(self, *, begin: str | None) -> None:
        self.begin = begin
        self.connection: sa.Connection | None = None

    @contextlib.contextmanager
    def use(self, engine: sa.Engine) -> Iterator[sa.Connection]:
        if self.connection is None:
            self.connection = engine.connect().execution_options(sqlite_begin=self.begin)
        try:
            yield self.connection
        except BaseException:
            held, self.connection = self.connection, None
            held.invalidate()
            raise

    def close(self) -> None:
        held, self.connection = self.connection, None
        if held is not None:
            held.close()


class Repository:
    """A share of the storage: the library's tables on one database.

    Parameters:
        database: Where the tables live.
        tables: The library's tables.
    """

    def __init__(self, database: Database, tables: Tables) -> None:
        self.database = database
        self.tables = tables

    @property
    def db_system(self) -> str:
        """The database's name in telemetry: ``sqlite`` or ``postgresql``."""
        return self.database.url.get_backend_name()
