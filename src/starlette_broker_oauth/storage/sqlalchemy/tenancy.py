"""Which partner owns which account, and keys that may be used once: the parts of
:class:`~.repository.SQLAlchemyStorage` that record partners' accounts and forms."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import Account
from .tokencheck import TokenCheck

__all__ = ["Tenancy"]


class Tenancy:
    """Mixed into :class:`~.repository.SQLAlchemyStorage`, whose tables and transactions
    it uses.

    An account belongs to at most one partner (``partner_accounts``). An account no
    partner owns may be used by the platform's only partner, so a platform with one
    partner needs no setup; once there are several, each account must be given to one.
    """

    _clients: sa.Table
    _accounts: sa.Table
    _partners: sa.Table
    _partner_clients: sa.Table
    _partner_accounts: sa.Table
    _used_keys: sa.Table
    _codes: sa.Table
    _tokens: sa.Table
    _refresh: sa.Table
    _postgres: bool
    _token_check: TokenCheck

    if TYPE_CHECKING:

        def _write(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

    def hot_reads(self) -> dict[str, sa.Select[Any]]:
        """The reads of every request, run on the token check's raw connection (one driver
        round trip each): records by key, and the partner endpoints' partner, partner's
        client and partner's account."""
        p, c, pc, a, pa = (
            self._partners,
            self._clients,
            self._partner_clients,
            self._accounts,
            self._partner_accounts,
        )
        account = sa.bindparam("account_id", type_=sa.Uuid)
        code, token, refresh = self._codes, self._tokens, self._refresh
        return {
            "client": sa.select(c).where(c.c.client_id == sa.bindparam("client_id")),
            "account": sa.select(a).where(
                a.c.account_id == sa.bindparam("account_id", type_=sa.Uuid)
            ),
            "code": sa.select(code).where(code.c.code_hash == sa.bindparam("code_hash")),
            "token": sa.select(token).where(token.c.token_hash == sa.bindparam("token_hash")),
            "refresh": sa.select(refresh).where(refresh.c.token_hash == sa.bindparam("token_hash")),
            "partner": sa.select(p).where(p.c.partner_id == sa.bindparam("key_id")),
            "partner_client": sa.select(pc.c.client_id).where(
                pc.c.partner_id == sa.bindparam("partner_id"),
                pc.c.client_id == sa.bindparam("client_id"),
            ),
            "account_owner": sa.select(pa.c.partner_id).where(pa.c.account_id == account),
            "partner_count": sa.select(sa.func.count().label("partners")).select_from(p),
        }

    async def create_account(
        self, *, account_id: UUID | None = None, live: bool = False, partner: str | None = None
    ) -> Account:
        account_id = account_id or uuid.uuid4()
        a = self._accounts
        async with self._write() as conn:
            if partner is not None and not await self._partner_exists(conn, partner):
                raise ValueError(f"unknown partner {partner!r}")
            row = (await conn.execute(sa.select(a).where(a.c.account_id == account_id))).first()
            if row is None:
                await conn.execute(sa.insert(a).values(account_id=account_id, live=live))
                account = Account(account_id=account_id, live=live)
            else:
                account = Account(account_id=row.account_id, live=row.live)
            if partner is not None:
                await self._own(conn, account_id, partner)
        return account

    async def give_account(self, account_id: UUID, key_id: str) -> bool:
        async with self._write() as conn:
            if not await self._partner_exists(conn, key_id):
                return False
            await self._own(conn, account_id, key_id)
        return True

    async def _partner_exists(self, conn: AsyncConnection, key_id: str) -> bool:
        p = self._partners
        found = await conn.execute(sa.select(p.c.partner_id).where(p.c.partner_id == key_id))
        return found.first() is not None

    async def _own(self, conn: AsyncConnection, account_id: UUID, key_id: str) -> None:
        pa = self._partner_accounts
        await conn.execute(sa.delete(pa).where(pa.c.account_id == account_id))
        await conn.execute(sa.insert(pa).values(account_id=account_id, partner_id=key_id))

    async def use_once(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        u = self._used_keys
        insert = (postgresql.insert if self._postgres else sqlite.insert)(u)
        statement = insert.values(key=key, expires_at=expires_at).on_conflict_do_nothing()
        async with self._write() as conn:
            # An expired record of the key does not count (purge may not have run yet).
            await conn.execute(sa.delete(u).where(u.c.key == key, u.c.expires_at <= now))
            inserted = (await conn.execute(statement)).rowcount
        return bool(inserted == 1)
