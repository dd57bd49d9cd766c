"""Accounts on SQL: the account repository and the accounts' administration."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from ...models import Account
from ...telemetry import instrumented
from ..admin import AccountDetails
from .database import Database, Repository
from .partners import give, partner_exists
from .schema import Tables

__all__ = ["SQLAccounts"]


@instrumented
class SQLAccounts(Repository):
    """The platform's accounts (``{prefix}accounts``), each owned by at most one partner."""

    def __init__(self, database: Database, tables: Tables) -> None:
        super().__init__(database, tables)
        a = tables.accounts
        self._account = sa.select(a).where(
            a.c.account_id == sa.bindparam("account_id", type_=sa.Uuid)
        )

    async def get_account(self, account_id: UUID) -> Account | None:
        row = await self.database.first(self._account, {"account_id": account_id})
        return None if row is None else Account(account_id=row.account_id, live=row.live)

    async def create_account(
        self, *, account_id: UUID | None = None, live: bool = False, partner: str | None = None
    ) -> Account:
        account_id = account_id or uuid.uuid4()
        a = self.tables.accounts
        async with self.database.transaction() as conn:
            if partner is not None and not await partner_exists(conn, self.tables, partner):
                raise ValueError(f"unknown partner {partner!r}")
            row = (await conn.execute(sa.select(a).where(a.c.account_id == account_id))).first()
            if row is None:
                await conn.execute(sa.insert(a).values(account_id=account_id, live=live))
                account = Account(account_id=account_id, live=live)
            else:
                account = Account(account_id=row.account_id, live=row.live)
            if partner is not None:
                await give(conn, self.tables, account_id, partner)
        return account

    async def list_accounts(self, partner: str | None = None) -> list[AccountDetails]:
        p, pa = self.tables.partners, self.tables.partner_accounts
        query = self._account_query().order_by(self.tables.accounts.c.account_id)
        async with self.database.reading() as conn:
            if partner is not None:
                known = await conn.execute(
                    sa.select(p.c.partner_id).where(p.c.partner_id == partner)
                )
                if known.first() is None:
                    raise ValueError(f"unknown partner {partner!r}")
                query = query.where(pa.c.partner_id == partner)
            rows = list(await conn.execute(query))
        return [_details(row) for row in rows]

    async def get_account_details(self, account_id: UUID) -> AccountDetails | None:
        query = self._account_query().where(self.tables.accounts.c.account_id == account_id)
        async with self.database.reading() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _details(row)

    async def update_account(self, account_id: UUID, *, live: bool) -> AccountDetails | None:
        a = self.tables.accounts
        async with self.database.transaction() as conn:
            await conn.execute(sa.update(a).where(a.c.account_id == account_id).values(live=live))
            row = (
                await conn.execute(self._account_query().where(a.c.account_id == account_id))
            ).first()
        return None if row is None else _details(row)

    async def delete_account(self, account_id: UUID) -> bool:
        t = self.tables
        a, pa, c = t.accounts, t.partner_accounts, t.codes
        async with self.database.transaction() as conn:
            await conn.execute(sa.delete(pa).where(pa.c.account_id == account_id))
            await conn.execute(sa.delete(c).where(c.c.account_id == account_id))
            deleted = await conn.execute(sa.delete(a).where(a.c.account_id == account_id))
        return bool(deleted.rowcount)

    def _account_query(self) -> sa.Select[Any]:
        a, pa = self.tables.accounts, self.tables.partner_accounts
        return sa.select(a.c.account_id, a.c.live, pa.c.partner_id).select_from(
            a.outerjoin(pa, pa.c.account_id == a.c.account_id)
        )


def _details(row: sa.Row[Any]) -> AccountDetails:
    return AccountDetails(account_id=row.account_id, live=row.live, partner=row.partner_id)
