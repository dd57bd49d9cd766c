"""Grants on SQL: codes, access and refresh tokens, their revocation, keys used once,
an account's connected apps, and purging what can no longer matter."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import anyio.lowlevel
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ...models import (
    AccessToken,
    AuthorizationCode,
    Client,
    Connection,
    PushedRequest,
    RefreshToken,
)
from ...telemetry import instrumented
from ..admin import PurgeResult
from ..base import gather_connections
from .database import Database, Repository
from .schema import Tables, client_from, fields

__all__ = ["SQLGrants"]

# A grant rotated faster than it is revoked, each round seeing one more successor.
_REVOKE_ROUNDS = 20


@instrumented
class SQLGrants(Repository):
    """Codes, tokens and refresh tokens (``{prefix}codes``, ``tokens``, ``refresh_tokens``)
    keys used once (``used_keys``) and pushed authorization requests
    (``pushed_requests``)."""

    def __init__(self, database: Database, tables: Tables) -> None:
        super().__init__(database, tables)
        c, t, r, cl = tables.codes, tables.tokens, tables.refresh_tokens, tables.clients
        self._code = sa.select(c).where(c.c.code_hash == sa.bindparam("code_hash"))
        self._token = sa.select(t).where(t.c.token_hash == sa.bindparam("token_hash"))
        self._refresh_token = sa.select(r).where(r.c.token_hash == sa.bindparam("token_hash"))
        self._token_with_client = (
            sa.select(t, cl)
            .select_from(t.outerjoin(cl, cl.c.client_id == t.c.client_id))
            .where(t.c.token_hash == sa.bindparam("token_hash"))
        )
        self._token_columns = [column.name for column in t.columns]
        self._client_columns = [column.name for column in cl.columns]
        self._insert_code = sa.insert(c)
        self._insert_token = sa.insert(t)
        self._insert_refresh = sa.insert(r)
        now = sa.bindparam("now", type_=c.c.expires_at.type)
        self._use_code = (
            sa.update(c)
            .where(
                c.c.code_hash == sa.bindparam("hash"),
                c.c.client_id == sa.bindparam("client"),
                c.c.used_at.is_(None),
                c.c.expires_at > now,
            )
            .values(used_at=now)
        )
        self._use_refresh = (
            sa.update(r)
            .where(
                r.c.token_hash == sa.bindparam("hash"),
                r.c.client_id == sa.bindparam("client"),
                r.c.used_at.is_(None),
                r.c.revoked_at.is_(None),
                r.c.expires_at > now,
            )
            .values(used_at=now)
        )

        p = tables.pushed_requests
        self._pushed = sa.select(p).where(p.c.request_hash == sa.bindparam("request_hash"))
        self._insert_pushed = sa.insert(p)
        self._use_pushed = sa.delete(p).where(
            p.c.request_hash == sa.bindparam("hash"),
            p.c.client_id == sa.bindparam("client"),
            p.c.expires_at > sa.bindparam("now", type_=p.c.expires_at.type),
        )

    async def save_code(self, code: AuthorizationCode) -> None:
        await self.database.write([(self._insert_code, fields(code))])

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        row = await self.database.first(self._code, {"code_hash": code_hash})
        return None if row is None else AuthorizationCode(**row._mapping)

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
            (self._use_code, {"hash": code_hash, "client": client_id, "now": now}),
            (self._insert_token, fields(token)),
        ]
        if refresh_token is not None:
            steps.append((self._insert_refresh, fields(refresh_token)))
        return await self.database.write(steps, guarded=True)

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        row = await self.database.first(self._refresh_token, {"token_hash": token_hash})
        return None if row is None else RefreshToken(**row._mapping)

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
        use = {"hash": token_hash, "client": client_id, "now": now}
        return await self.database.write(
            [
                (self._use_refresh, use),
                (self._insert_token, fields(token)),
                (self._insert_refresh, fields(refresh_token)),
            ],
            guarded=True,
        )

    async def save_token(self, token: AccessToken) -> None:
        await self.database.write([(self._insert_token, fields(token))])

    async def get_token(self, token_hash: str) -> AccessToken | None:
        row = await self.database.first(self._token, {"token_hash": token_hash})
        return None if row is None else AccessToken(**row._mapping)

    async def token_with_client(self, token_hash: str) -> tuple[AccessToken, Client | None] | None:
        """The token and its client in one read (the token check's)."""
        row = await self.database.first(self._token_with_client, {"token_hash": token_hash})
        if row is None:
            return None
        values = tuple(row)
        split = len(self._token_columns)
        token = AccessToken(**dict(zip(self._token_columns, values[:split], strict=True)))
        client = None
        if values[split] is not None:
            client = client_from(dict(zip(self._client_columns, values[split:], strict=True)))
        return token, client

    async def revoke_token(self, token_hash: str, *, now: datetime) -> AccessToken | None:
        t = self.tables.tokens
        async with self.database.transaction() as conn:
            row = (
                await conn.execute(
                    sa.update(t)
                    .where(t.c.token_hash == token_hash, t.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                    .returning(*t.columns)
                )
            ).first()
            if row is not None:  # as it was: unrevoked
                return dataclasses.replace(AccessToken(**row._mapping), revoked_at=None)
            row = (await conn.execute(sa.select(t).where(t.c.token_hash == token_hash))).first()
            return None if row is None else AccessToken(**row._mapping)

    async def revoke_grant(
        self, family_id: str, *, account_id: UUID, client_id: str, now: datetime
    ) -> list[str]:
        t, r, c = self.tables.tokens, self.tables.refresh_tokens, self.tables.codes
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
        t, r, c = self.tables.tokens, self.tables.refresh_tokens, self.tables.codes
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
        codes: sa.ColumnElement[bool],
        now: datetime,
    ) -> list[str]:
        """One transaction: the unused codes go first, so that a redemption racing it
        either finds its code gone or has committed a token this then revokes."""
        t, r, c = self.tables.tokens, self.tables.refresh_tokens, self.tables.codes
        async with self.database.transaction() as conn:
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

    async def use_once(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        u = self.tables.used_keys
        insert = (postgresql.insert if self.database.postgres else sqlite.insert)(u)
        statement = insert.values(key=key, expires_at=expires_at).on_conflict_do_nothing()
        async with self.database.transaction() as conn:
            # An expired record of the key does not count (purge may not have run yet).
            await conn.execute(sa.delete(u).where(u.c.key == key, u.c.expires_at <= now))
            inserted = (await conn.execute(statement)).rowcount
        return bool(inserted == 1)

    async def save_pushed_request(self, request: PushedRequest) -> None:
        values = {
            "request_hash": request.request_hash,
            "client_id": request.client_id,
            "params": json.dumps([list(pair) for pair in request.params]),
            "expires_at": request.expires_at,
        }
        await self.database.write([(self._insert_pushed, values)])

    async def get_pushed_request(self, request_hash: str) -> PushedRequest | None:
        row = await self.database.first(self._pushed, {"request_hash": request_hash})
        if row is None:
            return None
        values = row._mapping
        return PushedRequest(
            request_hash=values["request_hash"],
            client_id=values["client_id"],
            params=tuple((str(k), str(v)) for k, v in json.loads(values["params"])),
            expires_at=values["expires_at"],
        )

    async def use_pushed_request(self, request_hash: str, *, client_id: str, now: datetime) -> bool:
        # One guarded statement: the row goes for exactly one caller.
        use = {"hash": request_hash, "client": client_id, "now": now}
        return await self.database.write([(self._use_pushed, use)], guarded=True)

    async def list_connections(self, account_id: UUID, *, now: datetime) -> list[Connection]:
        t, r = self.tables.tokens, self.tables.refresh_tokens
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
        async with self.database.reading() as conn:
            rows = [*(await conn.execute(tokens)), *(await conn.execute(refresh))]
        return gather_connections(account_id, (tuple(row) for row in rows))

    async def purge_expired(
        self, *, now: datetime, retention: timedelta = timedelta(days=1), batch_size: int = 1000
    ) -> PurgeResult:
        cutoff = now - retention
        t = self.tables
        c, tok, r, u = t.codes, t.tokens, t.refresh_tokens, t.used_keys
        # Each condition on its own indexed column: a batch walks that index from its
        # start, where the rows to delete are, so it costs the same at any table size
        # (an OR of the two would read the whole table).
        codes = await self._purge(c, c.c.code_hash, c.c.expires_at, cutoff, batch_size)
        tokens = await self._purge(tok, tok.c.token_hash, tok.c.expires_at, cutoff, batch_size)
        tokens += await self._purge(tok, tok.c.token_hash, tok.c.revoked_at, cutoff, batch_size)
        refresh = await self._purge(r, r.c.token_hash, r.c.expires_at, cutoff, batch_size)
        refresh += await self._purge(r, r.c.token_hash, r.c.revoked_at, cutoff, batch_size)
        await self._purge(u, u.c.key, u.c.expires_at, now, batch_size)
        # Kept for ``retention`` after expiry, as codes are: a consent form shown while
        # its request_uri was valid may still use it up.
        p = t.pushed_requests
        await self._purge(p, p.c.request_hash, p.c.expires_at, cutoff, batch_size)
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
            async with self.database.transaction() as conn:
                deleted = int((await conn.execute(statement)).rowcount)
            total += deleted
            if deleted < batch_size:
                return total
            await anyio.lowlevel.checkpoint()  # let requests in between batches
