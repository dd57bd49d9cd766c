"""All repositories on one async SQLAlchemy engine."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ...errors import ConfigurationError
from ...models import AccessToken, Account, AuthorizationCode, Client, Partner, RefreshToken
from ...security import new_client_id
from ..base import ManagedStorage, RevocationMessage
from ..base import RevocationListener as RevocationListenerFunction
from . import engines, migrations
from .admin import AdminOperations
from .notify import RevocationListener, from_wire, notify, wire_messages
from .schema import Tables, client_from, fields
from .tenancy import Tenancy
from .tokencheck import TokenCheck

__all__ = ["SQLAlchemyStorage"]

# A grant rotated faster than it is revoked, each round seeing one more successor.
_REVOKE_ROUNDS = 20

# A client row as a typical one: decoded when an id is unknown.
_PLACEHOLDER_CLIENT = {
    "client_id": "0" * 32,
    "secret_hash": "0" * 64,
    "name": "Unknown",
    "description": "",
    "url": "",
    "terms_of_use": "",
    "privacy_policy": "",
    "status": "ACTIVE",
    "live_trading_approved": False,
    "redirect_uris": '["https://app.example/callback", "https://app.example/other"]',
    "scopes": '["general", "trading"]',
    "response_types": '["code", "token"]',
}


class SQLAlchemyStorage(AdminOperations, Tenancy, ManagedStorage):
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
        super().__init__()
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

    @property
    def reaches_every_process(self) -> bool:
        """On PostgreSQL, announcements reach every process (``NOTIFY``)."""
        return self._postgres

    def add_revocation_listener(self, listener: RevocationListenerFunction) -> None:
        super().add_revocation_listener(listener)
        if self._engine is not None:
            self._start_listening()

    async def announce(self, message: RevocationMessage) -> None:
        if self._postgres:
            with engines.translated():
                async with self.engine.begin() as conn:
                    await notify(
                        conn, self.revocation_channel, wire_messages(message), origin=self._origin
                    )
        self.tell_listeners(message)

    def _heard(self, wire: str) -> None:
        self.tell_listeners(from_wire(wire))

    def _start_listening(self) -> None:
        """On PostgreSQL, once something listens (a token cache), hold a ``LISTEN``
        connection for the revocations of other processes."""
        if self._postgres and self._listener is None and self.revocation_listeners:
            self._listener = RevocationListener(
                self.engine, self.revocation_channel, self._heard, origin=self._origin
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

    # ClientRepository, AccountRepository

    async def get_client(self, client_id: str) -> Client | None:
        row = await self._token_check.one("client", client_id=client_id)
        if row is None:
            # The same work as for a known id, so that client ids cannot be probed by
            # timing client authentication (benchmarks/client_auth.py).
            client_from(_PLACEHOLDER_CLIENT)
            return None
        return client_from(row)

    async def get_account(self, account_id: UUID) -> Account | None:
        row = await self._token_check.one("account", account_id=account_id)
        return None if row is None else Account(account_id=row["account_id"], live=row["live"])

    # PartnerRepository

    async def get_partner(self, key_id: str) -> Partner | None:
        row = await self._token_check.one("partner", key_id=key_id)
        if row is None:
            return None
        return Partner(
            partner_id=row["partner_id"], name=row["name"], secret_hash=row["secret_hash"]
        )

    async def is_client_allowed(self, partner_id: str, client_id: str) -> bool:
        row = await self._token_check.one(
            "partner_client", partner_id=partner_id, client_id=client_id
        )
        return row is not None

    async def account_owner(self, account_id: UUID) -> str | None:
        row = await self._token_check.one("account_owner", account_id=account_id)
        return None if row is None else str(row["partner_id"])

    async def partner_count(self) -> int:
        row = await self._token_check.one("partner_count")
        return 0 if row is None else int(row["partners"])

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

    async def revoke_grant(
        self, family_id: str, *, account_id: UUID, client_id: str, now: datetime
    ) -> list[str]:
        t, r, c = self._tokens, self._refresh, self._codes
        return await self._revoke_where(
            t.c.family_id == family_id,
            r.c.family_id == family_id,
            sa.and_(c.c.account_id == account_id, c.c.client_id == client_id),
            now,
        )

    async def revoke_tokens(
        self,
        *,
        account_id: UUID | None = None,
        client_id: str | None = None,
        live_only: bool = False,
        now: datetime,
    ) -> list[str]:
        if account_id is None and client_id is None:
            raise ValueError("revoke_tokens needs an account_id or a client_id")
        t, r, c = self._tokens, self._refresh, self._codes
        tokens: list[sa.ColumnElement[bool]] = []
        refresh: list[sa.ColumnElement[bool]] = []
        codes: list[sa.ColumnElement[bool]] = []
        if account_id is not None:
            tokens.append(t.c.account_id == account_id)
            refresh.append(r.c.account_id == account_id)
            codes.append(c.c.account_id == account_id)
        if client_id is not None:
            tokens.append(t.c.client_id == client_id)
            refresh.append(r.c.client_id == client_id)
            codes.append(c.c.client_id == client_id)
        if live_only:
            tokens.append(t.c.account_live.is_(True))
            refresh.append(r.c.account_live.is_(True))
        # Every unused code goes, live_only or not: a code does not say whether its
        # account is live.
        return await self._revoke_where(sa.and_(*tokens), sa.and_(*refresh), sa.and_(*codes), now)

    async def _revoke_where(
        self,
        tokens: sa.ColumnElement[bool],
        refresh: sa.ColumnElement[bool],
        codes: sa.ColumnElement[bool] | None,
        now: datetime,
    ) -> list[str]:
        """One transaction: the unused codes go first, so that a redemption racing it
        either finds its code gone or has committed a token this then revokes."""
        t, r, c = self._tokens, self._refresh, self._codes
        async with self._write() as conn:
            if codes is not None:
                await conn.execute(sa.delete(c).where(codes, c.c.used_at.is_(None)))
            # Until nothing changes: on PostgreSQL (READ COMMITTED) a rotation that
            # committed while this waited on its old row inserted a successor this
            # statement could not see; the next one sees it, and holds it until commit,
            # so a rotation of it waits and then finds it revoked.
            for _ in range(_REVOKE_ROUNDS):
                changed = await conn.execute(
                    sa.update(r).where(refresh, r.c.revoked_at.is_(None)).values(revoked_at=now)
                )
                if not changed.rowcount:
                    break
            result = await conn.execute(
                sa.update(t)
                .where(tokens, t.c.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(t.c.token_hash)
            )
            return list(result.scalars())

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

    async def token_with_client(self, token_hash: str) -> tuple[AccessToken, Client | None] | None:
        return await self._token_check(token_hash)

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
                return dataclasses.replace(AccessToken(**row._asdict()), revoked_at=None)
            row = (await conn.execute(sa.select(t).where(t.c.token_hash == token_hash))).first()
            return None if row is None else AccessToken(**row._asdict())
