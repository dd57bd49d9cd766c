"""The admin operations of :class:`~.repository.SQLAlchemyStorage`: registering and
managing clients (partners and accounts: :mod:`.partner_admin`, :mod:`.account_admin`),
listing an account's connected apps, and purging what can no longer matter."""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import EllipsisType
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio.lowlevel
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ...models import Client, ClientCredentials, ClientStatus, Connection
from ...registration import check_client_secret, check_redirect_uris
from ...security import hash_secret, new_client_id, new_secret
from ..admin import PurgeResult, client_changes
from ..base import gather_connections
from .account_admin import AccountAdmin
from .partner_admin import PartnerAdmin
from .schema import client_from

__all__ = ["AdminOperations"]


class AdminOperations(PartnerAdmin, AccountAdmin):
    """Mixed into :class:`~.repository.SQLAlchemyStorage`, whose tables and transactions
    it uses."""

    _clients: sa.Table
    _accounts: sa.Table
    _partners: sa.Table
    _partner_clients: sa.Table
    _codes: sa.Table
    _tokens: sa.Table
    _refresh: sa.Table
    _used_keys: sa.Table

    if TYPE_CHECKING:

        def _write(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...

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
        client_secret: str | None = None,
    ) -> ClientCredentials:
        uris = check_redirect_uris(redirect_uris)
        client_id = client_id or new_client_id()
        secret = new_secret() if client_secret is None else check_client_secret(client_secret)
        try:
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
                        redirect_uris=json.dumps(list(uris)),
                        scopes=None if scopes is None else json.dumps(sorted(scopes)),
                        response_types=json.dumps(sorted(response_types)),
                    )
                )
        except sa_exc.IntegrityError:
            raise ValueError(f"client {client_id!r} already exists") from None
        return ClientCredentials(client_id=client_id, client_secret=secret)

    async def list_clients(self) -> list[Client]:
        async with self._read() as conn:
            rows = list(await conn.execute(sa.select(self._clients)))
        return sorted((client_from(row._asdict()) for row in rows), key=lambda c: c.client_id)

    async def update_client(
        self,
        client_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        url: str | None = None,
        terms_of_use: str | None = None,
        privacy_policy: str | None = None,
        redirect_uris: Iterable[str] | None = None,
        scopes: Iterable[str] | EllipsisType | None = ...,
        live_trading_approved: bool | None = None,
        response_types: Iterable[str] | None = None,
    ) -> Client | None:
        changes = client_changes(
            name=name,
            description=description,
            url=url,
            terms_of_use=terms_of_use,
            privacy_policy=privacy_policy,
            redirect_uris=redirect_uris,
            scopes=scopes,
            live_trading_approved=live_trading_approved,
            response_types=response_types,
        )
        columns = {field: _column_value(field, value) for field, value in changes.items()}
        c = self._clients
        async with self._write() as conn:
            if columns:
                await conn.execute(sa.update(c).where(c.c.client_id == client_id).values(columns))
            row = (await conn.execute(sa.select(c).where(c.c.client_id == client_id))).first()
        return None if row is None else client_from(row._asdict())

    async def delete_client(self, client_id: str) -> bool:
        c, pc, codes = self._clients, self._partner_clients, self._codes
        async with self._write() as conn:
            await conn.execute(sa.delete(pc).where(pc.c.client_id == client_id))
            await conn.execute(sa.delete(codes).where(codes.c.client_id == client_id))
            deleted = await conn.execute(sa.delete(c).where(c.c.client_id == client_id))
        return bool(deleted.rowcount)

    async def set_client_status(self, client_id: str, status: ClientStatus) -> bool:
        c = self._clients
        async with self._write() as conn:
            result = await conn.execute(
                sa.update(c).where(c.c.client_id == client_id).values(status=status.value)
            )
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

    async def purge_expired(
        self, *, now: datetime, retention: timedelta = timedelta(days=1), batch_size: int = 1000
    ) -> PurgeResult:
        cutoff = now - retention
        c, t, r = self._codes, self._tokens, self._refresh
        # Each condition on its own indexed column: a batch walks that index from its
        # start, where the rows to delete are, so it costs the same at any table size
        # (an OR of the two would read the whole table).
        codes = await self._purge(c, c.c.code_hash, c.c.expires_at, cutoff, batch_size)
        tokens = await self._purge(t, t.c.token_hash, t.c.expires_at, cutoff, batch_size)
        tokens += await self._purge(t, t.c.token_hash, t.c.revoked_at, cutoff, batch_size)
        refresh = await self._purge(r, r.c.token_hash, r.c.expires_at, cutoff, batch_size)
        refresh += await self._purge(r, r.c.token_hash, r.c.revoked_at, cutoff, batch_size)
        u = self._used_keys
        await self._purge(u, u.c.key, u.c.expires_at, now, batch_size)
        return PurgeResult(codes, tokens, refresh)

    async def _purge(
        self,
        table: sa.Table,
        key: sa.Column[Any],
        when: sa.Column[Any],
        before: datetime,
        batch_size: int,
    ) -> int:
        """Delete the rows whose ``when`` is before ``before``, ``batch_size`` at a time,
        each batch its own short transaction."""
        total = 0
        batch = (
            sa.select(key).where(when < before).order_by(when).limit(batch_size).scalar_subquery()
        )
        statement = sa.delete(table).where(key.in_(batch))
        while True:
            async with self._write() as conn:
                deleted = int((await conn.execute(statement)).rowcount)
            total += deleted
            if deleted < batch_size:
                return total
            await anyio.lowlevel.checkpoint()  # let requests in between batches

    async def list_connections(self, account_id: UUID, *, now: datetime) -> list[Connection]:
        t, r = self._tokens, self._refresh
        first, last = sa.func.min(t.c.issued_at), sa.func.max(t.c.issued_at)
        tokens = (
            sa.select(t.c.client_id, t.c.scope, first, last)
            .where(
                t.c.account_id == account_id,
                t.c.revoked_at.is_(None),
                sa.or_(t.c.expires_at.is_(None), t.c.expires_at > now),
            )
            .group_by(t.c.client_id, t.c.scope)
        )
        refresh = (
            sa.select(
                r.c.client_id, r.c.scope, sa.func.min(r.c.issued_at), sa.func.max(r.c.issued_at)
            )
            .where(
                r.c.account_id == account_id,
                r.c.revoked_at.is_(None),
                r.c.used_at.is_(None),
                r.c.expires_at > now,
            )
            .group_by(r.c.client_id, r.c.scope)
        )
        async with self._read() as conn:
            rows = [*(await conn.execute(tokens)), *(await conn.execute(refresh))]
        return gather_connections(account_id, (tuple(row) for row in rows))


def _column_value(field: str, value: Any) -> Any:
    """A :class:`Client` field's value as its column holds it."""
    if field == "redirect_uris":
        return json.dumps(list(value))
    if field in ("scopes", "response_types"):
        return None if value is None else json.dumps(sorted(value))
    return value
