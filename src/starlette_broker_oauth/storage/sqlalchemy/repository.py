"""All repositories on one async SQLAlchemy engine."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ...errors import ConfigurationError
from ...models import AccessToken, Account, AuthorizationCode, Client, Partner, RefreshToken
from ...security import hash_secret, new_client_id, secrets_equal
from ..base import ClientRepository, Storage
from . import engines, migrations
from .admin import AdminOperations
from .notify import RevocationListener, notify
from .schema import Tables, client_from, fields
from .tenancy import Tenancy
from .tokencheck import TokenCheck

__all__ = ["SQLAlchemyStorage"]

_NO_SECRET = hash_secret("")


class SQLAlchemyStorage(AdminOperations, Tenancy, Storage):
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
        self.url = engines.async_url(database_url)
        self.tables = Tables(table_prefix)
        self.metadata = self.tables.metadata
        self._prefix = table_prefix
        self._migrate = migrate
        self._engine_options = dict(engine_options or {})
        self._engine: AsyncEngine | None = None
        self._postgres = self.url.get_backend_name() == "postgresql"
        if self._postgres:
            engines.require_asyncpg()  # a missing extra is said here, not on first use
        self._token_check = TokenCheck(self.tables)
        self._listener: RevocationListener | None = None
        self._writers: anyio.Lock | None = None
        self._in_memory = False
        self._owner = threading.get_ident()
        self._origin = new_client_id()  # names this instance in NOTIFY payloads
        t = self.tables
        self._clients = t.clients
        self._accounts = t.accounts
        self._partners = t.partners
        self._partner_clients = t.partner_clients
        self._partner_accounts = t.partner_accounts
        self._used_keys = t.used_keys
        self._codes = t.codes
        self._tokens = t.tokens
        self._refresh = t.refresh_tokens
        for name, statement in self.hot_reads().items():
            self._token_check.register(name, statement)
        for name, table in (("code", self._codes), ("token", self._tokens)):
            self._token_check.register(f"insert {name}", sa.insert(table))
        self._token_check.register("insert refresh", sa.insert(self._refresh))
        c, r = self._codes, self._refresh
        self._token_check.register(
            "use code",
            sa.update(c)
            .where(
                c.c.code_hash == sa.bindparam("code_hash"),
                c.c.client_id == sa.bindparam("client_id"),
                c.c.used_at.is_(None),
                c.c.expires_at > sa.bindparam("now"),
            )
            .values(used_at=sa.bindparam("used_now", type_=c.c.used_at.type)),
        )
        self._token_check.register(
            "use refresh",
            sa.update(r)
            .where(
                r.c.token_hash == sa.bindparam("token_hash"),
                r.c.client_id == sa.bindparam("client_id"),
                r.c.used_at.is_(None),
                r.c.revoked_at.is_(None),
                r.c.expires_at > sa.bindparam("now"),
            )
            .values(used_at=sa.bindparam("used_now", type_=r.c.used_at.type)),
        )

    @property
    def table_prefix(self) -> str:
        """The prefix of the library's table names."""
        return self._prefix

    @property
    def engine(self) -> AsyncEngine:
        """The engine; available between :meth:`open` and :meth:`close`."""
        if self._engine is None:
            raise ConfigurationError(
                "the storage is not open: enter it (`async with storage:`) in the "
                "application's lifespan, and leave it on shutdown"
            )
        return self._engine

    async def open(self) -> None:
        if self._engine is not None:
            return
        sqlite = self.url.get_backend_name() == "sqlite"
        database = self.url.database or ""
        in_memory = sqlite and database in ("", ":memory:")
        options = engines.engine_options(self.url, self._engine_options, in_memory=in_memory)
        if not sqlite:
            engines.require_asyncpg()
        elif not in_memory:
            await engines.enable_wal(database)
        engine = create_async_engine(self.url, **options)
        self._in_memory = in_memory
        self._owner = threading.get_ident()
        if sqlite:
            sa.event.listen(engine.sync_engine, "connect", engines.sqlite_on_connect)
            # SQLite has one writer at a time: this process's writers queue here rather
            # than spin in SQLite's busy handler against each other.
            self._writers = anyio.Lock()
        self._engine = engine
        try:
            if self._migrate:
                await self.upgrade()
            await self._token_check.open(
                engine, options, in_memory=in_memory, writers=self._writers
            )
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
            await migrations.upgrade(conn, self._prefix, revision)

    async def current_revision(self) -> str | None:
        """The Alembic revision the tables are at, or ``None`` before the first."""
        async with self._read() as conn:
            return await migrations.current_revision(conn, self._prefix)

    @property
    def revocation_channel(self) -> str:
        """The PostgreSQL ``NOTIFY`` channel of revocations."""
        return f"{self._prefix}revocations"

    def add_revocation_listener(self, listener: Callable[[str], None]) -> None:
        super().add_revocation_listener(listener)
        if self._engine is not None:
            self._start_listening()

    def _start_listening(self) -> None:
        """On PostgreSQL, once something listens (a token cache), hold a ``LISTEN``
        connection for the revocations of other processes."""
        if self._postgres and self._listener is None and self.__dict__.get("_revocation_listeners"):
            dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = RevocationListener(
                dsn, self.revocation_channel, self.announce_revocation, origin=self._origin
            )
            self._listener.start()

    async def close(self) -> None:
        await self._token_check.close()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stop()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        # An in-memory database is one connection: a read ending (a rollback) in the
        # middle of a write would undo it, so reads take the writers' turn too.
        turn = self._writer_turn() if self._in_memory else nullcontext()
        with engines.translated():
            async with turn, self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with engines.translated():
            async with self._writer_turn(), self.engine.begin() as conn:
                yield conn

    @asynccontextmanager
    async def _revoking(self) -> AsyncIterator[tuple[AsyncConnection, list[str]]]:
        """A write transaction whose revocation messages (appended to the list) are
        announced only once it commits: to this process's listeners at once, and on
        PostgreSQL to every process through ``NOTIFY``. A rolled-back transaction
        announces nothing; transactions never share messages."""
        messages: list[str] = []
        async with self._write() as conn:
            yield conn, messages
            if messages and self._postgres:
                await notify(conn, self.revocation_channel, messages, origin=self._origin)
        for message in messages:
            self.announce_revocation(message)

    # ClientRepository, AccountRepository

    async def get_client(self, client_id: str) -> Client | None:
        row = await self._token_check.one("client", client_id=client_id)
        return None if row is None else client_from(row)

    async def get_account(self, account_id: UUID) -> Account | None:
        row = await self._token_check.one("account", account_id=account_id)
        return None if row is None else Account(account_id=row["account_id"], live=row["live"])

    # PartnerAuthenticator

    async def authenticate_partner(self, key_id: str, secret: str) -> Partner | None:
        row = await self._token_check.one("partner", key_id=key_id)
        stored = _NO_SECRET if row is None else row["secret_hash"]
        if secrets_equal(hash_secret(secret), stored) and row is not None:
            return Partner(partner_id=row["partner_id"], name=row["name"])
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
        await self._token_check.execute("insert code", **fields(code))

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        row = await self._token_check.one("code", code_hash=code_hash)
        return None if row is None else AuthorizationCode(**row)

    async def redeem_code(
        self,
        code_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken | None = None,
        now: datetime,
    ) -> bool:
        # One transaction: the code is spent and its tokens saved, or neither.
        steps = [
            (
                "use code",
                {"code_hash": code_hash, "client_id": client_id, "now": now, "used_now": now},
            ),
            ("insert token", fields(token)),
        ]
        if refresh_token is not None:
            steps.append(("insert refresh", fields(refresh_token)))
        return await self._token_check.transaction(steps)

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        row = await self._token_check.one("refresh", token_hash=token_hash)
        return None if row is None else RefreshToken(**row)

    async def rotate_refresh_token(
        self,
        token_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken,
        now: datetime,
    ) -> bool:
        # One transaction: the refresh token is spent and its successors saved, or none.
        return await self._token_check.transaction(
            [
                (
                    "use refresh",
                    {"token_hash": token_hash, "client_id": client_id, "now": now, "used_now": now},
                ),
                ("insert token", fields(token)),
                ("insert refresh", fields(refresh_token)),
            ]
        )

    async def revoke_family(self, family_id: str, *, now: datetime) -> list[str]:
        t, r = self._tokens, self._refresh
        return await self._revoke_where(t.c.family_id == family_id, r.c.family_id == family_id, now)

    async def revoke_tokens(
        self, *, account_id: UUID, client_id: str | None = None, now: datetime
    ) -> list[str]:
        t, r = self._tokens, self._refresh
        tokens: sa.ColumnElement[bool] = t.c.account_id == account_id
        refresh: sa.ColumnElement[bool] = r.c.account_id == account_id
        if client_id is not None:
            tokens = sa.and_(tokens, t.c.client_id == client_id)
            refresh = sa.and_(refresh, r.c.client_id == client_id)
        return await self._revoke_where(tokens, refresh, now)

    async def _revoke_where(
        self,
        tokens: sa.ColumnElement[bool],
        refresh: sa.ColumnElement[bool],
        now: datetime,
    ) -> list[str]:
        t, r = self._tokens, self._refresh
        async with self._revoking() as (conn, announce):
            await conn.execute(
                sa.update(r).where(refresh, r.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            result = await conn.execute(
                sa.update(t)
                .where(tokens, t.c.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(t.c.token_hash)
            )
            hashes = list(result.scalars())
            announce.extend(f"t:{h}" for h in hashes)
        return hashes

    async def save_token(self, token: AccessToken) -> None:
        await self._token_check.execute("insert token", **fields(token))

    def _writer_turn(self) -> AbstractAsyncContextManager[object]:
        """This process's SQLite writers take turns (on the loop that opened the storage:
        the lock is that loop's; from another thread, SQLite's busy timeout orders them);
        other databases need no turn."""
        if self._writers is not None and threading.get_ident() == self._owner:
            return self._writers
        return nullcontext()

    async def get_token(self, token_hash: str) -> AccessToken | None:
        row = await self._token_check.one("token", token_hash=token_hash)
        return None if row is None else AccessToken(**row)

    async def get_token_with_client(
        self, token_hash: str, clients: ClientRepository
    ) -> tuple[AccessToken, Client | None] | None:
        if clients is not self:
            return await super().get_token_with_client(token_hash, clients)
        return await self._token_check(token_hash)

    async def revoke_token(self, token_hash: str, *, now: datetime) -> AccessToken | None:
        t = self._tokens
        async with self._revoking() as (conn, announce):
            row = (
                await conn.execute(
                    sa.update(t)
                    .where(t.c.token_hash == token_hash, t.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                    .returning(*t.columns)
                )
            ).first()
            if row is not None:  # as it was: unrevoked
                announce.append(f"t:{token_hash}")
                revoked: AccessToken | None = dataclasses.replace(
                    AccessToken(**row._asdict()), revoked_at=None
                )
            else:
                row = (await conn.execute(sa.select(t).where(t.c.token_hash == token_hash))).first()
                revoked = None if row is None else AccessToken(**row._asdict())
        return revoked
