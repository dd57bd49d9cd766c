"""Clients on SQL: the client repository and the clients' administration."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import EllipsisType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ...models import Client, ClientAuthMethod, ClientCredentials, ClientStatus
from ...registration import check_client_keys, check_client_secret, check_redirect_uris
from ...security import hash_secret, new_client_id, new_secret
from ...telemetry import instrumented
from ..admin import client_changes, client_keys
from .database import Database, Repository
from .schema import Tables, client_from

__all__ = ["SQLClients"]

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
    "jwks": None,
    "token_endpoint_auth_method": "client_secret_basic",
    "require_pushed_authorization_requests": False,
    "dpop_bound_access_tokens": False,
}


@instrumented
class SQLClients(Repository):
    """The registered clients (``{prefix}clients``)."""

    def __init__(self, database: Database, tables: Tables) -> None:
        super().__init__(database, tables)
        c = tables.clients
        self._client = sa.select(c).where(c.c.client_id == sa.bindparam("client_id"))

    async def get_client(self, client_id: str) -> Client | None:
        row = await self.database.first(self._client, {"client_id": client_id})
        if row is None:
            # The same work as for a known id, so that client ids cannot be probed by
            # timing client authentication (benchmarks/client_auth.py).
            client_from(_PLACEHOLDER_CLIENT)
            return None
        return client_from(row._mapping)

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
        jwks: Mapping[str, Any] | str | None = None,
        token_endpoint_auth_method: ClientAuthMethod | str = ClientAuthMethod.CLIENT_SECRET_BASIC,
        require_pushed_authorization_requests: bool = False,
        dpop_bound_access_tokens: bool = False,
    ) -> ClientCredentials:
        uris = check_redirect_uris(redirect_uris)
        keys, method = client_keys(jwks, token_endpoint_auth_method)
        client_id = client_id or new_client_id()
        secret = new_secret() if client_secret is None else check_client_secret(client_secret)
        # Named only when set: the column's default is the database's (migration 0009).
        flags = (
            {"require_pushed_authorization_requests": True}
            if (require_pushed_authorization_requests)
            else {}
        )
        try:
            async with self.database.transaction() as conn:
                await conn.execute(
                    sa.insert(self.tables.clients).values(
                        **flags,
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
                        jwks=keys,
                        token_endpoint_auth_method=method.value,
                        # Named only when set: the column's default is false (0007).
                        **({"dpop_bound_access_tokens": True} if dpop_bound_access_tokens else {}),
                    )
                )
        except sa_exc.IntegrityError:
            raise ValueError(f"client {client_id!r} already exists") from None
        return ClientCredentials(client_id=client_id, client_secret=secret)

    async def list_clients(self) -> list[Client]:
        async with self.database.reading() as conn:
            rows = list(await conn.execute(sa.select(self.tables.clients)))
        return sorted((client_from(row._mapping) for row in rows), key=lambda c: c.client_id)

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
        jwks: Mapping[str, Any] | str | None = None,
        token_endpoint_auth_method: ClientAuthMethod | str | None = None,
        require_pushed_authorization_requests: bool | None = None,
        dpop_bound_access_tokens: bool | None = None,
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
            jwks=jwks,
            token_endpoint_auth_method=token_endpoint_auth_method,
            require_pushed_authorization_requests=require_pushed_authorization_requests,
            dpop_bound_access_tokens=dpop_bound_access_tokens,
        )
        columns = {field: _column_value(field, value) for field, value in changes.items()}
        c = self.tables.clients
        async with self.database.transaction() as conn:
            if columns:
                await conn.execute(sa.update(c).where(c.c.client_id == client_id).values(columns))
            row = (await conn.execute(sa.select(c).where(c.c.client_id == client_id))).first()
            client = None if row is None else client_from(row._mapping)
            if client is not None:  # a private_key_jwt client keeps keys; else rolled back
                check_client_keys(client.token_endpoint_auth_method, client.jwks)
        return client

    async def delete_client(self, client_id: str) -> bool:
        t = self.tables
        c, pc, codes = t.clients, t.partner_clients, t.codes
        async with self.database.transaction() as conn:
            await conn.execute(sa.delete(pc).where(pc.c.client_id == client_id))
            await conn.execute(sa.delete(codes).where(codes.c.client_id == client_id))
            deleted = await conn.execute(sa.delete(c).where(c.c.client_id == client_id))
        return bool(deleted.rowcount)

    async def set_client_status(self, client_id: str, status: ClientStatus) -> bool:
        c = self.tables.clients
        async with self.database.transaction() as conn:
            result = await conn.execute(
                sa.update(c).where(c.c.client_id == client_id).values(status=status.value)
            )
        return bool(result.rowcount)

    async def reset_client_secret(self, client_id: str) -> ClientCredentials | None:
        c = self.tables.clients
        secret = new_secret()
        async with self.database.transaction() as conn:
            result = await conn.execute(
                sa.update(c)
                .where(c.c.client_id == client_id)
                .values(secret_hash=hash_secret(secret))
            )
        if not result.rowcount:
            return None
        return ClientCredentials(client_id=client_id, client_secret=secret)


def _column_value(field: str, value: Any) -> Any:
    """A :class:`Client` field's value as its column holds it."""
    if field == "redirect_uris":
        return json.dumps(list(value))
    if field in ("scopes", "response_types"):
        return None if value is None else json.dumps(sorted(value))
    if field == "token_endpoint_auth_method":
        return ClientAuthMethod(value).value
    return value
