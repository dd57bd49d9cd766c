"""Partners on SQL: who they are, which clients they may use, which accounts they own, and
their administration.

An account belongs to at most one partner (``partner_accounts``); whether a partner may
act for an account no partner owns is the core's rule, which these facts answer.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import Partner, PartnerCredentials
from ...security import hash_secret, new_client_id, new_secret
from ...telemetry import instrumented
from ..admin import PartnerDetails
from .database import Database, Repository
from .schema import Tables

__all__ = ["SQLPartners", "give", "partner_exists"]


@instrumented
class SQLPartners(Repository):
    """The partners (``{prefix}partners``, ``partner_clients``, ``partner_accounts``)."""

    def __init__(self, database: Database, tables: Tables) -> None:
        super().__init__(database, tables)
        p, pc, pa = tables.partners, tables.partner_clients, tables.partner_accounts
        self._partner = sa.select(p).where(p.c.partner_id == sa.bindparam("key_id"))
        self._allowed = sa.select(pc.c.client_id).where(
            pc.c.partner_id == sa.bindparam("partner_id"),
            pc.c.client_id == sa.bindparam("client_id"),
        )
        self._owner = sa.select(pa.c.partner_id).where(
            pa.c.account_id == sa.bindparam("account_id", type_=sa.Uuid)
        )
        self._count = sa.select(sa.func.count()).select_from(p)

    # PartnerRepository

    async def get_partner(self, key_id: str) -> Partner | None:
        row = await self.database.first(self._partner, {"key_id": key_id})
        if row is None:
            return None
        return Partner(partner_id=row.partner_id, name=row.name, secret_hash=row.secret_hash)

    async def is_client_allowed(self, partner_id: str, client_id: str) -> bool:
        params = {"partner_id": partner_id, "client_id": client_id}
        return await self.database.first(self._allowed, params) is not None

    async def account_owner(self, account_id: UUID) -> str | None:
        row = await self.database.first(self._owner, {"account_id": account_id})
        return None if row is None else str(row.partner_id)

    async def partner_count(self) -> int:
        row = await self.database.first(self._count, {})
        return 0 if row is None else int(row[0])

    # administration

    async def create_partner(self, *, name: str, key_id: str | None = None) -> PartnerCredentials:
        key_id = key_id or new_client_id()
        secret = new_secret()
        try:
            async with self.database.transaction() as conn:
                await conn.execute(
                    sa.insert(self.tables.partners).values(
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
        p = self.tables.partners
        async with self.database.transaction() as conn:
            result = await conn.execute(
                sa.update(p).where(p.c.partner_id == key_id).values(name=name)
            )
        return await self.get_partner_details(key_id) if result.rowcount else None

    async def delete_partner(self, key_id: str) -> bool:
        t = self.tables
        p, pa, pc = t.partners, t.partner_accounts, t.partner_clients
        async with self.database.transaction() as conn:
            await conn.execute(sa.delete(pc).where(pc.c.partner_id == key_id))
            await conn.execute(sa.delete(pa).where(pa.c.partner_id == key_id))
            deleted = await conn.execute(sa.delete(p).where(p.c.partner_id == key_id))
        return bool(deleted.rowcount)

    async def reset_partner_secret(self, key_id: str) -> PartnerCredentials | None:
        p = self.tables.partners
        secret = new_secret()
        async with self.database.transaction() as conn:
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

    async def give_account(self, account_id: UUID, key_id: str) -> bool:
        async with self.database.transaction() as conn:
            if not await partner_exists(conn, self.tables, key_id):
                return False
            await give(conn, self.tables, account_id, key_id)
        return True

    async def _set_allowed(self, key_id: str, client_id: str, *, allowed: bool) -> bool:
        """Record that the partner may use the client, or not; ``False`` if the partner
        is unknown."""
        p, pc = self.tables.partners, self.tables.partner_clients
        async with self.database.transaction() as conn:
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
        t = self.tables
        p, pc, pa = t.partners, t.partner_clients, t.partner_accounts
        partners = sa.select(p.c.partner_id, p.c.name)
        clients = sa.select(pc.c.partner_id, pc.c.client_id)
        owned = sa.select(pa.c.partner_id, sa.func.count()).group_by(pa.c.partner_id)
        if key_id is not None:
            partners = partners.where(p.c.partner_id == key_id)
            clients = clients.where(pc.c.partner_id == key_id)
            owned = owned.where(pa.c.partner_id == key_id)
        async with self.database.reading() as conn:
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


async def partner_exists(conn: AsyncConnection, tables: Tables, key_id: str) -> bool:
    """Whether the partner is registered, in ``conn``'s transaction."""
    p = tables.partners
    found = await conn.execute(sa.select(p.c.partner_id).where(p.c.partner_id == key_id))
    return found.first() is not None


async def give(conn: AsyncConnection, tables: Tables, account_id: UUID, key_id: str) -> None:
    """Make the partner the account's one owner, in ``conn``'s transaction."""
    pa = tables.partner_accounts
    await conn.execute(sa.delete(pa).where(pa.c.account_id == account_id))
    await conn.execute(sa.insert(pa).values(account_id=account_id, partner_id=key_id))
