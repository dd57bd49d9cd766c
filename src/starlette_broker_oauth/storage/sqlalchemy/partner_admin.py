"""The partner operations of :class:`~.repository.SQLAlchemyStorage`'s admin: registering,
listing, renaming and deleting partners, their secrets, and the clients they may use."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import PartnerCredentials
from ...security import hash_secret, new_client_id, new_secret
from ..admin import PartnerDetails

__all__ = ["PartnerAdmin"]


class PartnerAdmin:
    """Mixed into :class:`~.repository.SQLAlchemyStorage` (through
    :class:`~.admin.AdminOperations`), whose tables and transactions it uses."""

    _clients: sa.Table
    _partners: sa.Table
    _partner_clients: sa.Table
    _partner_accounts: sa.Table

    if TYPE_CHECKING:

        def _write(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

    async def create_partner(self, *, name: str, key_id: str | None = None) -> PartnerCredentials:
        key_id = key_id or new_client_id()
        secret = new_secret()
        try:
            async with self._write() as conn:
                await conn.execute(
                    sa.insert(self._partners).values(
                        partner_id=key_id, name=name, secret_hash=hash_secret(secret)
                    )
                )
        except sa_exc.IntegrityError:
            raise ValueError(f"partner {key_id!r} already exists") from None
        return PartnerCredentials(key_id=key_id, secret=secret)

    async def list_partners(self) -> list[PartnerDetails]:
        return await self._partner_details(None)

    async def get_partner_details(self, key_id: str) -> PartnerDetails | None:
        found = await self._partner_details(key_id)
        return found[0] if found else None

    async def update_partner(self, key_id: str, *, name: str) -> PartnerDetails | None:
        p = self._partners
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(p).where(p.c.partner_id == key_id).values(name=name)
            )
        return await self.get_partner_details(key_id) if result.rowcount else None

    async def delete_partner(self, key_id: str) -> bool:
        p, pa, pc = self._partners, self._partner_accounts, self._partner_clients
        async with self._write() as conn:
            await conn.execute(sa.delete(pc).where(pc.c.partner_id == key_id))
            await conn.execute(sa.delete(pa).where(pa.c.partner_id == key_id))
            deleted = await conn.execute(sa.delete(p).where(p.c.partner_id == key_id))
        return bool(deleted.rowcount)

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

    async def allow_partner_client(self, key_id: str, client_id: str) -> bool:
        return await self._set_allowed(key_id, client_id, allowed=True)

    async def disallow_partner_client(self, key_id: str, client_id: str) -> bool:
        return await self._set_allowed(key_id, client_id, allowed=False)

    async def _set_allowed(self, key_id: str, client_id: str, *, allowed: bool) -> bool:
        """Record that the partner may use the client, or not; ``False`` if the partner
        is unknown."""
        p, pc = self._partners, self._partner_clients
        async with self._write() as conn:
            known, was_allowed = (
                await conn.execute(
                    sa.select(
                        sa.select(p.c.partner_id).where(p.c.partner_id == key_id).exists(),
                        sa.select(pc.c.partner_id)
                        .where(pc.c.partner_id == key_id, pc.c.client_id == client_id)
                        .exists(),
                    )
                )
            ).one()
            if not known:
                return False
            if allowed and not was_allowed:
                await conn.execute(sa.insert(pc).values(partner_id=key_id, client_id=client_id))
            elif was_allowed and not allowed:
                await conn.execute(
                    sa.delete(pc).where(pc.c.partner_id == key_id, pc.c.client_id == client_id)
                )
        return True

    async def _partner_details(self, key_id: str | None) -> list[PartnerDetails]:
        """Every partner's details, or the one partner's."""
        p, pc, pa = self._partners, self._partner_clients, self._partner_accounts
        partners = sa.select(p.c.partner_id, p.c.name)
        clients = sa.select(pc.c.partner_id, pc.c.client_id)
        owned = sa.select(pa.c.partner_id, sa.func.count()).group_by(pa.c.partner_id)
        if key_id is not None:
            partners = partners.where(p.c.partner_id == key_id)
            clients = clients.where(pc.c.partner_id == key_id)
            owned = owned.where(pa.c.partner_id == key_id)
        async with self._read() as conn:
            rows = list(await conn.execute(partners))
            allowed: dict[str, list[str]] = {}
            for partner_id, client_id in await conn.execute(clients):
                allowed.setdefault(partner_id, []).append(client_id)
            counts = {partner_id: int(count) for partner_id, count in await conn.execute(owned)}
        return sorted(
            (
                PartnerDetails(
                    key_id=row.partner_id,
                    name=row.name,
                    clients=tuple(sorted(allowed.get(row.partner_id, ()))),
                    accounts=counts.get(row.partner_id, 0),
                )
                for row in rows
            ),
            key=lambda partner: partner.key_id,
        )
