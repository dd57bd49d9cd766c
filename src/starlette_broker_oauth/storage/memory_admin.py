"""The admin operations of :class:`~.memory.MemoryStorage`."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import EllipsisType
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..models import (
    AccessToken,
    Account,
    AuthorizationCode,
    Client,
    ClientAuthMethod,
    ClientCredentials,
    ClientStatus,
    Partner,
    PartnerCredentials,
    PushedRequest,
    RefreshToken,
)
from ..registration import check_client_keys, check_client_secret, check_redirect_uris
from ..security import hash_secret, new_client_id, new_secret
from .admin import (
    AccountDetails,
    PartnerDetails,
    PurgeResult,
    client_changes,
    client_keys,
)

__all__ = ["MemoryAdministration"]


class MemoryAdministration:
    """Mixed into :class:`~.memory.MemoryStorage`, whose dictionaries it manages."""

    _clients: dict[str, Client]
    _accounts: dict[UUID, Account]
    _partners: dict[str, tuple[Partner, str]]
    _partner_clients: defaultdict[str, set[str]]
    _owners: dict[UUID, str]
    _codes: dict[str, AuthorizationCode]
    _tokens: dict[str, AccessToken]
    _refresh: dict[str, RefreshToken]
    _pushed: dict[str, PushedRequest]

    if TYPE_CHECKING:

        def announce_revocation(self, message: str) -> None: ...

    # admin: clients

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
        if client_id in self._clients:
            raise ValueError(f"client {client_id!r} already exists")
        secret = new_secret() if client_secret is None else check_client_secret(client_secret)
        self._clients[client_id] = Client(
            client_id=client_id,
            secret_hash=hash_secret(secret),
            name=name,
            redirect_uris=uris,
            description=description,
            url=url,
            terms_of_use=terms_of_use,
            privacy_policy=privacy_policy,
            live_trading_approved=live_trading_approved,
            scopes=None if scopes is None else frozenset(scopes),
            response_types=frozenset(response_types),
            jwks=keys,
            token_endpoint_auth_method=method,
            require_pushed_authorization_requests=require_pushed_authorization_requests,
            dpop_bound_access_tokens=dpop_bound_access_tokens,
        )
        return ClientCredentials(client_id=client_id, client_secret=secret)

    async def list_clients(self) -> list[Client]:
        return [self._clients[client_id] for client_id in sorted(self._clients)]

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
        client = self._clients.get(client_id)
        if client is None:
            return None
        client = dataclasses.replace(client, **changes)
        check_client_keys(client.token_endpoint_auth_method, client.jwks)
        self._clients[client_id] = client
        return client

    async def delete_client(self, client_id: str) -> bool:
        if self._clients.pop(client_id, None) is None:
            return False
        for allowed in self._partner_clients.values():
            allowed.discard(client_id)
        self._codes = {k: c for k, c in self._codes.items() if c.client_id != client_id}
        return True

    async def set_client_status(self, client_id: str, status: ClientStatus) -> bool:
        client = self._clients.get(client_id)
        if client is None:
            return False
        self._clients[client_id] = dataclasses.replace(client, status=status)
        return True

    async def reset_client_secret(self, client_id: str) -> ClientCredentials | None:
        client = self._clients.get(client_id)
        if client is None:
            return None
        secret = new_secret()
        self._clients[client_id] = dataclasses.replace(client, secret_hash=hash_secret(secret))
        return ClientCredentials(client_id=client_id, client_secret=secret)

    # admin: partners

    async def create_partner(self, *, name: str, key_id: str | None = None) -> PartnerCredentials:
        key_id = key_id or new_client_id()
        if key_id in self._partners:
            raise ValueError(f"partner {key_id!r} already exists")
        secret = new_secret()
        self._partners[key_id] = (Partner(partner_id=key_id, name=name), hash_secret(secret))
        return PartnerCredentials(key_id=key_id, secret=secret)

    async def list_partners(self) -> list[PartnerDetails]:
        return [self._partner_details(key_id) for key_id in sorted(self._partners)]

    async def get_partner_details(self, key_id: str) -> PartnerDetails | None:
        return self._partner_details(key_id) if key_id in self._partners else None

    def _partner_details(self, key_id: str) -> PartnerDetails:
        return PartnerDetails(
            key_id=key_id,
            name=self._partners[key_id][0].name,
            clients=tuple(sorted(self._partner_clients.get(key_id, ()))),
            accounts=sum(owner == key_id for owner in self._owners.values()),
        )

    async def update_partner(self, key_id: str, *, name: str) -> PartnerDetails | None:
        if key_id not in self._partners:
            return None
        partner, secret_hash = self._partners[key_id]
        self._partners[key_id] = (dataclasses.replace(partner, name=name), secret_hash)
        return self._partner_details(key_id)

    async def delete_partner(self, key_id: str) -> bool:
        if key_id not in self._partners:
            return False
        for account_id in [a for a, owner in self._owners.items() if owner == key_id]:
            del self._owners[account_id]
        del self._partners[key_id]
        self._partner_clients.pop(key_id, None)
        return True

    async def reset_partner_secret(self, key_id: str) -> PartnerCredentials | None:
        if key_id not in self._partners:
            return None
        secret = new_secret()
        self._partners[key_id] = (self._partners[key_id][0], hash_secret(secret))
        return PartnerCredentials(key_id=key_id, secret=secret)

    async def allow_partner_client(self, key_id: str, client_id: str) -> bool:
        if key_id not in self._partners:
            return False
        self._partner_clients[key_id].add(client_id)
        return True

    async def disallow_partner_client(self, key_id: str, client_id: str) -> bool:
        if key_id not in self._partners:
            return False
        self._partner_clients.get(key_id, set()).discard(client_id)
        return True

    # admin: accounts

    async def create_account(
        self, *, account_id: UUID | None = None, live: bool = False, partner: str | None = None
    ) -> Account:
        if partner is not None and partner not in self._partners:
            raise ValueError(f"unknown partner {partner!r}")
        account_id = account_id or uuid.uuid4()
        account = self._accounts.setdefault(account_id, Account(account_id=account_id, live=live))
        if partner is not None:
            self._owners[account_id] = partner
        return account

    async def list_accounts(self, partner: str | None = None) -> list[AccountDetails]:
        if partner is not None and partner not in self._partners:
            raise ValueError(f"unknown partner {partner!r}")
        return [
            self._account_details(account_id)
            for account_id in sorted(self._accounts)
            if partner in (None, self._owners.get(account_id))
        ]

    async def get_account_details(self, account_id: UUID) -> AccountDetails | None:
        return self._account_details(account_id) if account_id in self._accounts else None

    def _account_details(self, account_id: UUID) -> AccountDetails:
        return AccountDetails(
            account_id=account_id,
            live=self._accounts[account_id].live,
            partner=self._owners.get(account_id),
        )

    async def update_account(self, account_id: UUID, *, live: bool) -> AccountDetails | None:
        account = self._accounts.get(account_id)
        if account is None:
            return None
        self._accounts[account_id] = dataclasses.replace(account, live=live)
        return self._account_details(account_id)

    async def delete_account(self, account_id: UUID) -> bool:
        if self._accounts.pop(account_id, None) is None:
            return False
        self._owners.pop(account_id, None)
        self._codes = {k: c for k, c in self._codes.items() if c.account_id != account_id}
        return True

    async def give_account(self, account_id: UUID, key_id: str) -> bool:
        if key_id not in self._partners:
            return False
        self._owners[account_id] = key_id
        return True

    # housekeeping

    async def purge_expired(
        self, *, now: datetime, retention: timedelta = timedelta(days=1), batch_size: int = 1000
    ) -> PurgeResult:
        cutoff = now - retention

        def gone(expires: datetime | None, revoked: datetime | None) -> bool:
            return (expires is not None and expires < cutoff) or (
                revoked is not None and revoked < cutoff
            )

        codes = [k for k, c in self._codes.items() if c.expires_at < cutoff]
        tokens = [k for k, t in self._tokens.items() if gone(t.expires_at, t.revoked_at)]
        refresh = [k for k, r in self._refresh.items() if gone(r.expires_at, r.revoked_at)]
        for key in codes:
            del self._codes[key]
        for key in tokens:
            del self._tokens[key]
        for key in refresh:
            del self._refresh[key]
        for key in [k for k, p in self._pushed.items() if p.expires_at < cutoff]:
            del self._pushed[key]
        return PurgeResult(len(codes), len(tokens), len(refresh))
