"""The account operations of :class:`~.repository.SQLAlchemyStorage`'s admin: listing
accounts with their owners, making one live or paper, deleting one; and revoking tokens
inside an admin transaction."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..admin import AccountDetails

__all__ = ["AccountAdmin"]


class AccountAdmin:
    """Mixed into :class:`~.repository.SQLAlchemyStorage` (through
    :class:`~.admin.AdminOperations`), whose tables and transactions it uses."""

    _accounts: sa.Table
    _partners: sa.Table
    _partner_accounts: sa.Table
    _codes: sa.Table
    _tokens: sa.Table
    _refresh: sa.Table

    if TYPE_CHECKING:

        def _read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _write(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def list_accounts(self, partner: str | None = None) -> list[AccountDetails]:
        p, pa = self._partners, self._partner_accounts
        query = self._account_query().order_by(self._accounts.c.account_id)
        async with self._read() as conn:
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
        query = self._account_query().where(self._accounts.c.account_id == account_id)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _details(row)

    async def update_account(self, account_id: UUID, *, live: bool) -> AccountDetails | None:
        a = self._accounts
        async with self._write() as conn:
            await conn.execute(sa.update(a).where(a.c.account_id == account_id).values(live=live))
            row = (
                await conn.execute(self._account_query().where(a.c.account_id == account_id))
            ).first()
        return None if row is None else _details(row)

    async def delete_account(self, account_id: UUID) -> bool:
        a, pa, c = self._accounts, self._partner_accounts, self._codes
        async with self._write() as conn:
            await conn.execute(sa.delete(pa).where(pa.c.account_id == account_id))
            await conn.execute(sa.delete(c).where(c.c.account_id == account_id))
            deleted = await conn.execute(sa.delete(a).where(a.c.account_id == account_id))
        return bool(deleted.rowcount)

    def _account_query(self) -> sa.Select[Any]:
        a, pa = self._accounts, self._partner_accounts
        return sa.select(a.c.account_id, a.c.live, pa.c.partner_id).select_from(
            a.outerjoin(pa, pa.c.account_id == a.c.account_id)
        )


def _details(row: sa.Row[Any]) -> AccountDetails:
    return AccountDetails(account_id=row.account_id, live=row.live, partner=row.partner_id)
