"""SQLAlchemy 2.0 async storage: SQLite (aiosqlite) embedded, PostgreSQL (asyncpg) in production.

Tables are SQLAlchemy Core tables named under a configurable prefix, so they can live
beside the platform's own. Core rather than ORM keeps the token check a single
compiled ``SELECT`` with no identity map, and lets the prefix be chosen at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
import anyio.lowlevel
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ..errors import ConfigurationError, StorageError, StorageUnavailable
from ..models import (
    AccessToken,
    Account,
    AuthorizationCode,
    Client,
    ClientCredentials,
    ClientStatus,
    Partner,
    PartnerCredentials,
    RefreshToken,
)
from ..security import hash_secret, new_client_id, new_secret, secrets_equal
from .base import ClientRepository, PurgeResult, Storage

__all__ = ["SQLAlchemyStorage", "build_metadata"]

_NO_SECRET = hash_secret("")


class _UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def build_metadata(prefix: str = "oauth_") -> sa.MetaData:
    """The library's tables, named ``{prefix}clients``, ``{prefix}tokens``, ….

    Parameters:
        prefix: Prepended to every table name; letters, digits and underscores.
    """
    if not prefix.replace("_", "").isalnum() and prefix != "":
        raise ConfigurationError(f"table prefix must be letters, digits, underscores: {prefix!r}")
    md = sa.MetaData()
    hash_col = sa.String(64)
    sa.Table(
        f"{prefix}clients",
        md,
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("secret_hash", hash_col, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, default=""),
        sa.Column("url", sa.Text, nullable=False, default=""),
        sa.Column("terms_of_use", sa.Text, nullable=False, default=""),
        sa.Column("privacy_policy", sa.Text, nullable=False, default=""),
        sa.Column("status", sa.String(16), nullable=False, default="ACTIVE"),
        sa.Column("live_trading_approved", sa.Boolean, nullable=False, default=False),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=True),
        sa.Column("response_types", sa.Text, nullable=False),
    )
    sa.Table(
        f"{prefix}accounts",
        md,
        sa.Column("account_id", sa.Uuid, primary_key=True),
        sa.Column("live", sa.Boolean, nullable=False, default=False),
    )
    sa.Table(
        f"{prefix}partners",
        md,
        sa.Column("partner_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", hash_col, nullable=False),
    )
    sa.Table(
        f"{prefix}partner_clients",
        md,
        sa.Column(
            "partner_id",
            sa.String(128),
            sa.ForeignKey(f"{prefix}partners.partner_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "client_id",
            sa.String(128),
            sa.ForeignKey(f"{prefix}clients.client_id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    sa.Table(
        f"{prefix}codes",
        md,
        sa.Column("code_hash", hash_col, primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("issued_at", _UTCDateTime, nullable=False),
        sa.Column("expires_at", _UTCDateTime, nullable=False, index=True),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("code_challenge_method", sa.String(16), nullable=True),
        sa.Column("used_at", _UTCDateTime, nullable=True),
        sqlite_with_rowid=False,
    )
    sa.Table(
        f"{prefix}tokens",
        md,
        sa.Column("token_hash", hash_col, primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False, index=True),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("account_live", sa.Boolean, nullable=False),
        sa.Column("issued_at", _UTCDateTime, nullable=False),
        sa.Column("expires_at", _UTCDateTime, nullable=True, index=True),
        sa.Column("revoked_at", _UTCDateTime, nullable=True),
        sa.Column("family_id", hash_col, nullable=True, index=True),
        # SQLite: the table is its primary-key B-tree, so a check is one descent.
        sqlite_with_rowid=False,
    )
    sa.Table(
        f"{prefix}refresh_tokens",
        md,
        sa.Column("token_hash", hash_col, primary_key=True),
        sa.Column("family_id", hash_col, nullable=False, index=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("account_id", sa.Uuid, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("account_live", sa.Boolean, nullable=False),
        sa.Column("issued_at", _UTCDateTime, nullable=False),
        sa.Column("expires_at", _UTCDateTime, nullable=False, index=True),
        sa.Column("used_at", _UTCDateTime, nullable=True),
        sa.Column("revoked_at", _UTCDateTime, nullable=True),
        sqlite_with_rowid=False,
    )
    return md


_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)


# SQLSTATE classes that mean "not now": 08 connection exception, 53 insufficient
# resources, 57P0x shutting down / starting up, 40001/40P01 serialization / deadlock.
_TRANSIENT_SQLSTATES = ("08", "53", "57P0", "40001", "40P01")


# Driver exception classes that mean the connection is gone. InternalClientError:
# asyncpg's protocol left mid-error by a connection the server closed while it was idle.
_TRANSIENT_DRIVER_ERRORS = frozenset(
    {"ConnectionDoesNotExistError", "InterfaceError", "InternalClientError", "OperationalError"}
)


def _transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot serve right now (retry later): SQLAlchemy's
    wrapped errors and the drivers' own (asyncpg, sqlite3) alike."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        inner = (exc.orig, getattr(exc.orig, "__cause__", None))
        return any(e is not None and e is not exc and _transient(e) for e in inner)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith(_TRANSIENT_SQLSTATES):
        return True
    return type(exc).__name__ in _TRANSIENT_DRIVER_ERRORS


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Turn a transient database failure into :class:`StorageUnavailable`."""
    try:
        yield
    except Exception as exc:
        if _transient(exc):
            raise StorageUnavailable(type(exc).__name__) from exc
        raise


class SQLAlchemyStorage(Storage):
    """All repositories on one async SQLAlchemy engine.

    Parameters:
        database_url: ``sqlite+aiosqlite:///path.db`` (embedded default) or
            ``postgresql+asyncpg://…``. A plain ``sqlite:///`` or ``postgresql://`` URL
            gets the async driver.
        table_prefix: Prefix of the library's table names.
        migrate: Bring the tables up to date (Alembic ``upgrade head``) when the storage is
            opened. Idempotent, and serialised between processes on PostgreSQL. Turn it off
            where migrations are a deployment step (``broker-oauth db upgrade``).
        engine_options: Extra keyword arguments for ``create_async_engine``: pool size,
            ``pool_timeout``, ``connect_args`` (asyncpg's ``timeout`` and
            ``command_timeout`` are set to 10 s unless given), …
    """

    def __init__(
        self,
        database_url: str,
        *,
        table_prefix: str = "oauth_",
        migrate: bool = True,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = _async_url(database_url)
        self.metadata = build_metadata(table_prefix)
        self._prefix = table_prefix
        self._migrate = migrate
        self._engine_options = dict(engine_options or {})
        self._engine: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._checker: Any = None  # SQLite file: one shared aiosqlite connection for checks
        self._postgres = self.url.get_backend_name() == "postgresql"
        self._listener: asyncio.Task[None] | None = None
        self._local_announcements: list[str] = []
        t = self.metadata.tables
        self._clients = t[f"{table_prefix}clients"]
        self._accounts = t[f"{table_prefix}accounts"]
        self._partners = t[f"{table_prefix}partners"]
        self._partner_clients = t[f"{table_prefix}partner_clients"]
        self._codes = t[f"{table_prefix}codes"]
        self._tokens = t[f"{table_prefix}tokens"]
        self._refresh = t[f"{table_prefix}refresh_tokens"]
        tok, cli = self._tokens, self._clients
        self._token_check = (
            sa.select(tok, cli)
            .select_from(tok.outerjoin(cli, cli.c.client_id == tok.c.client_id))
            .where(tok.c.token_hash == sa.bindparam("token_hash"))
        )
        self._token_columns = [c.name for c in tok.columns]
        self._client_columns = [c.name for c in cli.columns]
        self._token_sql: str | None = None
        self._token_processors: list[Callable[[Any], Any] | None] = []

    @property
    def table_prefix(self) -> str:
        """The prefix of the library's table names."""
        return self._prefix

    @property
    def engine(self) -> AsyncEngine:
        """The engine; available between :meth:`open` and :meth:`close`."""
        if self._engine is None:
            raise StorageError("storage is not open: enter it with 'async with storage:'")
        return self._engine

    async def open(self) -> None:
        if self._engine is not None:
            return
        options = dict(self._engine_options)
        sqlite = self.url.get_backend_name() == "sqlite"
        in_memory = sqlite and (self.url.database or "") in ("", ":memory:")
        if in_memory:
            options.setdefault("poolclass", StaticPool)
        if sqlite:
            options.setdefault("connect_args", {}).setdefault("timeout", 30)
        else:
            # Fail fast while the database is away, and come back by itself: a dead pooled
            # connection is noticed at checkout (pre-ping) and replaced.
            options.setdefault("pool_pre_ping", True)
            options.setdefault("pool_timeout", 10)
            connect_args = options.setdefault("connect_args", {})
            connect_args.setdefault("timeout", 5)
            connect_args.setdefault("command_timeout", 10)
            _require_asyncpg()
        engine = create_async_engine(self.url, **options)
        if sqlite:
            sa.event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        self._engine = engine
        # The token check reads through its own autocommit engine: no BEGIN, no ROLLBACK
        # on return to the pool, one round trip per check. An in-memory SQLite database
        # exists on one connection only, so there the main engine serves it.
        self._reader = engine
        if not in_memory:
            reader_options = dict(options, isolation_level="AUTOCOMMIT")
            reader_options["pool_reset_on_return"] = None
            reader_options["pool_pre_ping"] = False  # a failed check invalidates instead
            self._reader = create_async_engine(self.url, **reader_options)
            if sqlite:
                sa.event.listen(self._reader.sync_engine, "connect", _sqlite_on_connect)
        try:
            if self._migrate:
                await self.upgrade()
            if sqlite and not in_memory:
                self._checker = await _open_checker(self.url.database or "")
        except BaseException:
            await self.close()  # no connection (or its thread) outlives a failed open
            raise
        self._start_listening()

    async def upgrade(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision`` (idempotent).

        Concurrent upgrades are serialised (PostgreSQL: a transaction-scoped advisory lock;
        SQLite: the database write lock, taken first), so many workers may start at once.
        """
        async with self._write() as conn:
            if self.url.get_backend_name() == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                key = int(hash_secret("migrate:" + self._prefix)[:15], 16)
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            await conn.run_sync(_alembic, "upgrade", self._prefix, revision)

    async def current_revision(self) -> str | None:
        """The Alembic revision the tables are at, or ``None`` before the first."""
        version_table = f"{self._prefix}alembic_version"
        async with self._read() as conn:
            exists = await conn.run_sync(lambda c: sa.inspect(c).has_table(version_table))
            if not exists:
                return None
            query = sa.text(f"SELECT version_num FROM {version_table}")  # noqa: S608 - checked prefix
            row = (await conn.execute(query)).first()
        return None if row is None else str(row[0])

    @property
    def revocation_channel(self) -> str:
        """The PostgreSQL ``NOTIFY`` channel of revocations."""
        return f"{self._prefix}revocations"

    async def _notify(self, conn: AsyncConnection, messages: list[str]) -> None:
        """Announce revocations: on PostgreSQL, ``NOTIFY`` inside the revoking transaction
        (delivered to every process on commit); elsewhere to this process's listeners."""
        if not messages:
            return
        if self._postgres:
            for message in messages:
                await conn.execute(
                    sa.text("SELECT pg_notify(:channel, :message)"),
                    {"channel": self.revocation_channel, "message": message},
                )
        else:
            self._local_announcements.extend(messages)

    def _flush_local(self) -> None:
        messages, self._local_announcements = self._local_announcements, []
        for message in messages:
            self.announce_revocation(message)

    def add_revocation_listener(self, listener: Callable[[str], None]) -> None:
        super().add_revocation_listener(listener)
        if self._engine is not None:
            self._start_listening()

    def _start_listening(self) -> None:
        """On PostgreSQL, once something listens (a token cache), hold a ``LISTEN``
        connection. asyncpg runs on asyncio only, so this is an asyncio task."""
        if self._postgres and self._listener is None and self.__dict__.get("_revocation_listeners"):
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Hold a ``LISTEN`` connection; reconnect with backoff when it drops."""
        import asyncpg

        dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        delay = 0.1
        while True:
            try:
                connection = await asyncpg.connect(dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                lost = anyio.Event()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(
                    self.revocation_channel, lambda *args: self.announce_revocation(args[3])
                )
                # Whatever happened while nobody listened is unknown: start from scratch.
                self.announce_revocation("*")
                while not lost.is_set() and not connection.is_closed():
                    with anyio.move_on_after(5):
                        await lost.wait()
                    if not lost.is_set():
                        try:  # notice a silently dead connection
                            await connection.execute("SELECT 1", timeout=5)
                        except (OSError, asyncpg.PostgresError, TimeoutError):
                            break
            finally:
                self.announce_revocation("*")
                connection.terminate()

    async def close(self) -> None:
        if self._checker is not None:
            checker, self._checker = self._checker, None
            await checker.close()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(BaseException), anyio.move_on_after(5):
                await self._listener
            self._listener = None
        if self._reader is not None and self._reader is not self._engine:
            await self._reader.dispose()
        self._reader = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with _translated():
            async with self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with _translated():
            async with self.engine.begin() as conn:
                yield conn

    # ClientRepository, AccountRepository

    async def get_client(self, client_id: str) -> Client | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    sa.select(self._clients).where(self._clients.c.client_id == client_id)
                )
            ).first()
        return None if row is None else _client(row)

    async def get_account(self, account_id: UUID) -> Account | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    sa.select(self._accounts).where(self._accounts.c.account_id == account_id)
                )
            ).first()
        return None if row is None else Account(account_id=row.account_id, live=row.live)

    # PartnerAuthenticator

    async def authenticate_partner(self, key_id: str, secret: str) -> Partner | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    sa.select(self._partners).where(self._partners.c.partner_id == key_id)
                )
            ).first()
        stored = _NO_SECRET if row is None else row.secret_hash
        if secrets_equal(hash_secret(secret), stored) and row is not None:
            return Partner(partner_id=row.partner_id, name=row.name)
        return None

    async def partner_can_use_client(self, partner: Partner, client_id: str) -> bool:
        pc = self._partner_clients
        async with self._read() as conn:
            row = (
                await conn.execute(
                    sa.select(sa.literal(1)).where(
                        pc.c.partner_id == partner.partner_id, pc.c.client_id == client_id
                    )
                )
            ).first()
        return row is not None

    # GrantStore

    async def save_code(self, code: AuthorizationCode) -> None:
        async with self._write() as conn:
            await conn.execute(sa.insert(self._codes).values(**_fields(code)))

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    sa.select(self._codes).where(self._codes.c.code_hash == code_hash)
                )
            ).first()
        return None if row is None else AuthorizationCode(**row._asdict())

    async def redeem_code(
        self,
        code_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken | None = None,
        now: datetime,
    ) -> bool:
        c = self._codes
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(c)
                .where(
                    c.c.code_hash == code_hash,
                    c.c.client_id == client_id,
                    c.c.used_at.is_(None),
                    c.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if result.rowcount != 1:
                return False
            await conn.execute(sa.insert(self._tokens).values(**_fields(token)))
            if refresh_token is not None:
                await conn.execute(sa.insert(self._refresh).values(**_fields(refresh_token)))
        return True

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        r = self._refresh
        async with self._read() as conn:
            row = (await conn.execute(sa.select(r).where(r.c.token_hash == token_hash))).first()
        return None if row is None else RefreshToken(**row._asdict())

    async def rotate_refresh_token(
        self,
        token_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken,
        now: datetime,
    ) -> bool:
        r = self._refresh
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(r)
                .where(
                    r.c.token_hash == token_hash,
                    r.c.client_id == client_id,
                    r.c.used_at.is_(None),
                    r.c.revoked_at.is_(None),
                    r.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if result.rowcount != 1:
                return False
            await conn.execute(sa.insert(self._tokens).values(**_fields(token)))
            await conn.execute(sa.insert(r).values(**_fields(refresh_token)))
        return True

    async def revoke_family(self, family_id: str, *, now: datetime) -> list[str]:
        t, r = self._tokens, self._refresh
        async with self._write() as conn:
            await conn.execute(
                sa.update(r)
                .where(r.c.family_id == family_id, r.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            result = await conn.execute(
                sa.update(t)
                .where(t.c.family_id == family_id, t.c.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(t.c.token_hash)
            )
            hashes = list(result.scalars())
            await self._notify(conn, [f"t:{h}" for h in hashes])
        self._flush_local()
        return hashes

    async def save_token(self, token: AccessToken) -> None:
        async with self._write() as conn:
            await conn.execute(sa.insert(self._tokens).values(**_fields(token)))

    async def get_token(self, token_hash: str) -> AccessToken | None:
        async with self._read() as conn:
            row = (
                await conn.execute(
                    sa.select(self._tokens).where(self._tokens.c.token_hash == token_hash)
                )
            ).first()
        return None if row is None else AccessToken(**row._asdict())

    async def get_token_with_client(
        self, token_hash: str, clients: ClientRepository
    ) -> tuple[AccessToken, Client | None] | None:
        if clients is not self:
            return await super().get_token_with_client(token_hash, clients)
        if self._reader is None:
            raise StorageError("storage is not open: enter it with 'async with storage:'")
        row = await self._token_check_row(token_hash)
        if row is None:
            return None
        tokens = len(self._token_columns)
        token = AccessToken(**dict(zip(self._token_columns, row[:tokens], strict=True)))
        client = None
        if row[tokens] is not None:
            client = _client_from(dict(zip(self._client_columns, row[tokens:], strict=True)), None)
        return token, client

    async def _token_check_row(self, token_hash: str) -> tuple[Any, ...] | None:
        """The joined token-and-client row, in one driver round trip.

        The statement is compiled once; it runs on the reader's raw driver connection
        (autocommit), and the columns' result processors are applied here: one thread hop
        on aiosqlite and one network round trip on asyncpg, where going through the ORM-less
        Core path still costs several of each.
        """
        assert self._reader is not None
        if self._token_sql is None:
            dialect = self._reader.dialect
            self._token_sql = str(self._token_check.compile(dialect=dialect))
            self._token_processors = [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self._token_check.selected_columns
            ]
        if self._checker is not None:
            # aiosqlite queues calls on its one thread: concurrent checks pipeline on one
            # connection instead of each holding a pooled one across its await.
            with _translated():
                rows = await self._checker.execute_fetchall(self._token_sql, (token_hash,))
            record = rows[0] if rows else None
            return None if record is None else self._processed(record)
        # A pooled connection may have died while idle (the server restarted): it is
        # discarded and the check retried once on a fresh one before answering 503.
        for attempt in (1, 2):
            try:
                record = await self._fetch_token_row(token_hash)
                break
            except Exception as exc:
                if not _transient(exc):
                    raise
                if attempt == 2:
                    raise StorageUnavailable(type(exc).__name__) from exc
        return None if record is None else self._processed(record)

    async def _fetch_token_row(self, token_hash: str) -> Any:
        assert self._reader is not None
        async with self._reader.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                if self._postgres:
                    return await driver.fetchrow(self._token_sql, token_hash)
                rows = await driver.execute_fetchall(self._token_sql, (token_hash,))
                return rows[0] if rows else None
            except BaseException:
                await conn.invalidate()  # a connection that failed mid-call is not reused
                raise

    def _processed(self, record: Any) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self._token_processors, tuple(record), strict=True)
        )

    async def revoke_token(self, token_hash: str, *, now: datetime) -> AccessToken | None:
        t = self._tokens
        async with self._write() as conn:
            row = (
                await conn.execute(
                    sa.update(t)
                    .where(t.c.token_hash == token_hash, t.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                    .returning(*t.columns)
                )
            ).first()
            if row is not None:  # as it was: unrevoked
                await self._notify(conn, [f"t:{token_hash}"])
                revoked: AccessToken | None = dataclasses.replace(
                    AccessToken(**row._asdict()), revoked_at=None
                )
            else:
                row = (await conn.execute(sa.select(t).where(t.c.token_hash == token_hash))).first()
                revoked = None if row is None else AccessToken(**row._asdict())
        self._flush_local()
        return revoked

    # admin

    async def create_client(
        self,
        *,
        name: str,
        redirect_uris: Iterable[str],
        description: str = "",
        url: str = "",
        terms_of_use: str = "",
        privacy_policy: str = "",
        live_trading_approved: bool = False,
        scopes: Iterable[str] | None = None,
        response_types: Iterable[str] = ("code", "token"),
        client_id: str | None = None,
    ) -> ClientCredentials:
        client_id = client_id or new_client_id()
        secret = new_secret()
        async with self._write() as conn:
            await conn.execute(
                sa.insert(self._clients).values(
                    client_id=client_id,
                    secret_hash=hash_secret(secret),
                    name=name,
                    description=description,
                    url=url,
                    terms_of_use=terms_of_use,
                    privacy_policy=privacy_policy,
                    status=ClientStatus.ACTIVE.value,
                    live_trading_approved=live_trading_approved,
                    redirect_uris=json.dumps(list(redirect_uris)),
                    scopes=None if scopes is None else json.dumps(sorted(scopes)),
                    response_types=json.dumps(sorted(response_types)),
                )
            )
        return ClientCredentials(client_id=client_id, client_secret=secret)

    async def set_client_status(self, client_id: str, status: ClientStatus) -> bool:
        c = self._clients
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(c).where(c.c.client_id == client_id).values(status=status.value)
            )
            if result.rowcount and status is ClientStatus.DISABLED:
                await self._notify(conn, [f"c:{client_id}"])
        self._flush_local()
        return bool(result.rowcount)

    async def reset_client_secret(self, client_id: str) -> ClientCredentials | None:
        c = self._clients
        secret = new_secret()
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(c)
                .where(c.c.client_id == client_id)
                .values(secret_hash=hash_secret(secret))
            )
        if not result.rowcount:
            return None
        return ClientCredentials(client_id=client_id, client_secret=secret)

    async def create_partner(self, *, name: str, key_id: str | None = None) -> PartnerCredentials:
        key_id = key_id or new_client_id()
        secret = new_secret()
        async with self._write() as conn:
            await conn.execute(
                sa.insert(self._partners).values(
                    partner_id=key_id, name=name, secret_hash=hash_secret(secret)
                )
            )
        return PartnerCredentials(key_id=key_id, secret=secret)

    async def reset_partner_secret(self, key_id: str) -> PartnerCredentials | None:
        p = self._partners
        secret = new_secret()
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(p).where(p.c.partner_id == key_id).values(secret_hash=hash_secret(secret))
            )
        if not result.rowcount:
            return None
        return PartnerCredentials(key_id=key_id, secret=secret)

    async def allow_partner_client(self, key_id: str, client_id: str) -> None:
        pc = self._partner_clients
        async with self._write() as conn:
            exists = (
                await conn.execute(
                    sa.select(sa.literal(1)).where(
                        pc.c.partner_id == key_id, pc.c.client_id == client_id
                    )
                )
            ).first()
            if exists is None:
                await conn.execute(sa.insert(pc).values(partner_id=key_id, client_id=client_id))

    async def purge_expired(
        self, *, now: datetime, retention: timedelta = timedelta(days=1), batch_size: int = 1000
    ) -> PurgeResult:
        cutoff = now - retention
        c, t, r = self._codes, self._tokens, self._refresh
        counts = [
            await self._purge(c, c.c.code_hash, c.c.expires_at < cutoff, batch_size),
            await self._purge(
                t,
                t.c.token_hash,
                sa.or_(t.c.expires_at < cutoff, t.c.revoked_at < cutoff),
                batch_size,
            ),
            await self._purge(
                r,
                r.c.token_hash,
                sa.or_(r.c.expires_at < cutoff, r.c.revoked_at < cutoff),
                batch_size,
            ),
        ]
        return PurgeResult(*counts)

    async def _purge(
        self,
        table: sa.Table,
        key: sa.Column[Any],
        condition: sa.ColumnElement[bool],
        batch_size: int,
    ) -> int:
        total = 0
        batch = sa.select(key).where(condition).limit(batch_size).scalar_subquery()
        statement = sa.delete(table).where(key.in_(batch))
        while True:
            async with self._write() as conn:  # one short transaction per batch
                deleted = int((await conn.execute(statement)).rowcount)
            total += deleted
            if deleted < batch_size:
                return total
            await anyio.lowlevel.checkpoint()  # let requests in between batches

    async def create_account(
        self, *, account_id: UUID | None = None, live: bool = False
    ) -> Account:
        account_id = account_id or uuid.uuid4()
        a = self._accounts
        async with self._write() as conn:
            row = (await conn.execute(sa.select(a).where(a.c.account_id == account_id))).first()
            if row is not None:
                return Account(account_id=row.account_id, live=row.live)
            await conn.execute(sa.insert(a).values(account_id=account_id, live=live))
        return Account(account_id=account_id, live=live)


def _alembic(connection: sa.Connection, command_name: str, prefix: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "starlette_broker_oauth:migrations")
    config.attributes["connection"] = connection
    config.attributes["table_prefix"] = prefix
    getattr(command, command_name)(config, revision)


def _require_asyncpg() -> None:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise ImportError(
            "PostgreSQL needs asyncpg: pip install 'starlette-broker-oauth[postgres]'"
        ) from None


def _async_url(database_url: str) -> sa.URL:
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


async def _open_checker(path: str) -> Any:
    import aiosqlite

    connection = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    for pragma in ("busy_timeout=30000", "mmap_size=1073741824", "cache_size=-32768"):
        await connection.execute(f"PRAGMA {pragma}")
    return connection


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Switching a new file to WAL needs it to itself; several processes (or pooled
    # connections) opening it at once wait their turn.
    for _ in range(200):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError:
            time.sleep(0.025)
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Token lookups are random reads over the whole table: map it rather than read it.
    cursor.execute("PRAGMA mmap_size=1073741824")
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.close()


def _client(row: Row[Any]) -> Client:
    return _client_from(row._mapping, None)


def _client_from(values: Any, table: sa.Table | None) -> Client:
    def get(name: str) -> Any:
        return values[table.c[name] if table is not None else name]

    scopes: Sequence[str] | None = None if get("scopes") is None else json.loads(get("scopes"))
    return Client(
        client_id=get("client_id"),
        secret_hash=get("secret_hash"),
        name=get("name"),
        description=get("description"),
        url=get("url"),
        terms_of_use=get("terms_of_use"),
        privacy_policy=get("privacy_policy"),
        status=ClientStatus(get("status")),
        live_trading_approved=get("live_trading_approved"),
        redirect_uris=tuple(json.loads(get("redirect_uris"))),
        scopes=None if scopes is None else frozenset(scopes),
        response_types=frozenset(json.loads(get("response_types"))),
    )


def _fields(record: AuthorizationCode | AccessToken | RefreshToken) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}
