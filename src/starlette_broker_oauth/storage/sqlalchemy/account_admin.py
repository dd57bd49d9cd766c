"""The account operations of :class:`~.repository.SQLAlchemyStorage`'s admin: listing
accounts with their owners, making one live or paper, deleting one; and revoking tokens
inside an admin transaction."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...security import utcnow
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

        def _revoking(
            self,
        ) -> AbstractAsyncContextManager[tuple[AsyncConnection, list[str]]]: ...

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
        a, t, r = self._accounts, self._tokens, self._refresh
        async with self._revoking() as (conn, announce):
            changed = await conn.execute(
                sa.update(a).where(a.c.account_id == account_id, a.c.live != live).values(live=live)
            )
            if changed.rowcount:  # its tokens say the account is what it no longer is
                announce.extend(
                    await self._revoke_in(
                        conn, t.c.account_id == account_id, r.c.account_id == account_id
                    )
                )
            row = (
                await conn.execute(self._account_query().where(a.c.account_id == account_id))
            ).first()
        return None if row is None else _details(row)

    async def delete_account(self, account_id: UUID) -> bool:
        a, pa, c = self._accounts, self._partner_accounts, self._codes
        t, r = self._tokens, self._refresh
        async with self._revoking() as (conn, announce):
            await conn.execute(sa.delete(pa).where(pa.c.account_id == account_id))
            deleted = await conn.execute(sa.delete(a).where(a.c.account_id == account_id))
            if not deleted.rowcount:
                return False
            await conn.execute(sa.delete(c).where(c.c.account_id == account_id))
            announce.extend(
                await self._revoke_in(
                    conn, t.c.account_id == account_id, r.c.account_id == account_id
                )
            )
        return True

    async def _revoke_in(
        self,
        conn: AsyncConnection,
        tokens: sa.ColumnElement[bool],
        refresh: sa.ColumnElement[bool],
    ) -> list[str]:
        """Revoke the access and refresh tokens the conditions pick, in this transaction;
        the messages announcing the access tokens."""
        t, r = self._tokens, self._refresh
        now = utcnow()
        await conn.execute(
            sa.update(r).where(refresh, r.c.revoked_at.is_(None)).values(revoked_at=now)
        )
        revoked = await conn.execute(
            sa.update(t)
            .where(tokens, t.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(t.c.token_hash)
        )
        return [f"t:{token_hash}" for token_hash in revoked.scalars()]

    def _account_query(self) -> sa.Select[Any]:
        a, pa = self._accounts, self._partner_accounts
        return sa.select(a.c.account_id, a.c.live, pa.c.partner_id).select_from(
            a.outerjoin(pa, pa.c.account_id == a.c.account_id)
        )


def _details(row: sa.Row[Any]) -> AccountDetails:
    return AccountDetails(account_id=row.account_id, live=row.live, partner=row.partner_id)
