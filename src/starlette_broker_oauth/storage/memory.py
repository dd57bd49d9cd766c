"""In-memory storage: for tests, examples and single-process development."""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

from ..models import (
    AccessToken,
    Account,
    AuthorizationCode,
    Client,
    ClientCredentials,
    ClientStatus,
    Connection,
    Partner,
    PartnerCredentials,
    RefreshToken,
)
from ..registration import check_redirect_uris
from ..security import hash_secret, new_client_id, new_secret, secrets_equal
from .base import PurgeResult, Storage, gather_connections

__all__ = ["MemoryStorage"]

_NO_SECRET = hash_secret("")


class MemoryStorage(Storage):
    """Every repository in process memory; lost when the process ends.

    Each operation runs without awaiting, so it is atomic on the event loop.
    """

    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}
        self._accounts: dict[UUID, Account] = {}
        self._partners: dict[str, tuple[Partner, str]] = {}
        self._partner_clients: defaultdict[str, set[str]] = defaultdict(set)
        self._owners: dict[UUID, str] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}

    # ClientRepository, AccountRepository

    async def get_client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    async def get_account(self, account_id: UUID) -> Account | None:
        return self._accounts.get(account_id)

    # PartnerAuthenticator

    async def authenticate_partner(self, key_id: str, secret: str) -> Partner | None:
        partner, secret_hash = self._partners.get(key_id, (None, _NO_SECRET))
        matches = secrets_equal(hash_secret(secret), secret_hash)
        return partner if matches and partner is not None else None

    async def partner_can_use_client(self, partner: Partner, client_id: str) -> bool:
        return client_id in self._partner_clients.get(partner.partner_id, ())

    async def partner_can_use_account(self, partner: Partner, account_id: UUID) -> bool:
        owner = self._owners.get(account_id)
        if owner is None:  # no owner: the platform's only partner may use it
            return list(self._partners) == [partner.partner_id]
        return owner == partner.partner_id

    # GrantStore

    async def save_code(self, code: AuthorizationCode) -> None:
        self._codes[code.code_hash] = code

    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        return self._codes.get(code_hash)

    async def redeem_code(
        self,
        code_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken | None = None,
        now: datetime,
    ) -> bool:
        code = self._codes.get(code_hash)
        if (
            code is None
            or code.used_at is not None
            or code.client_id != client_id
            or now >= code.expires_at
        ):
            return False
        self._codes[code_hash] = dataclasses.replace(code, used_at=now)
        self._tokens[token.token_hash] = token
        if refresh_token is not None:
            self._refresh[refresh_token.token_hash] = refresh_token
        return True

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        return self._refresh.get(token_hash)

    async def rotate_refresh_token(
        self,
        token_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken,
        now: datetime,
    ) -> bool:
        old = self._refresh.get(token_hash)
        if (
            old is None
            or old.used_at is not None
            or old.revoked_at is not None
            or old.client_id != client_id
            or now >= old.expires_at
        ):
            return False
        self._refresh[token_hash] = dataclasses.replace(old, used_at=now)
        self._tokens[token.token_hash] = token
        self._refresh[refresh_token.token_hash] = refresh_token
        return True

    async def revoke_family(self, family_id: str, *, now: datetime) -> list[str]:
        for refresh in [r for r in self._refresh.values() if r.family_id == family_id]:
            if refresh.revoked_at is None:
                self._refresh[refresh.token_hash] = dataclasses.replace(refresh, revoked_at=now)
        hits = [t for t in self._tokens.values() if t.family_id == family_id and not t.revoked_at]
        for token in hits:
            self._tokens[token.token_hash] = dataclasses.replace(token, revoked_at=now)
            self.announce_revocation(f"t:{token.token_hash}")
        return [token.token_hash for token in hits]

    async def revoke_tokens(
        self, *, account_id: UUID, client_id: str | None = None, now: datetime
    ) -> list[str]:
        def mine(token: AccessToken | RefreshToken) -> bool:
            return token.account_id == account_id and client_id in (None, token.client_id)

        for refresh in [r for r in self._refresh.values() if mine(r) and not r.revoked_at]:
            self._refresh[refresh.token_hash] = dataclasses.replace(refresh, revoked_at=now)
        hits = [t for t in self._tokens.values() if mine(t) and not t.revoked_at]
        for token in hits:
            self._tokens[token.token_hash] = dataclasses.replace(token, revoked_at=now)
            self.announce_revocation(f"t:{token.token_hash}")
        return [token.token_hash for token in hits]

    async def list_connections(self, account_id: UUID, *, now: datetime) -> list[Connection]:
        working: list[AccessToken | RefreshToken] = [
            t
            for t in self._tokens.values()
            if t.account_id == account_id and not t.revoked_at and not t.is_expired(now)
        ]
        working += [
            r
            for r in self._refresh.values()
            if r.account_id == account_id
            and not r.revoked_at
            and not r.used_at
            and not r.is_expired(now)
        ]
        return gather_connections(
            account_id, ((t.client_id, t.scope, t.issued_at, t.issued_at) for t in working)
        )

    async def save_token(self, token: AccessToken) -> None:
        self._tokens[token.token_hash] = token

    async def get_token(self, token_hash: str) -> AccessToken | None:
        return self._tokens.get(token_hash)

    async def revoke_token(self, token_hash: str, *, now: datetime) -> AccessToken | None:
        token = self._tokens.get(token_hash)
        if token is not None and token.revoked_at is None:
            self._tokens[token_hash] = dataclasses.replace(token, revoked_at=now)
            self.announce_revocation(f"t:{token_hash}")
        return token

    # admin

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
    ) -> ClientCredentials:
        client_id = client_id or new_client_id()
        secret = new_secret()
        self._clients[client_id] = Client(
            client_id=client_id,
            secret_hash=hash_secret(secret),
            name=name,
            redirect_uris=check_redirect_uris(redirect_uris),
            description=description,
            url=url,
            terms_of_use=terms_of_use,
            privacy_policy=privacy_policy,
            live_trading_approved=live_trading_approved,
            scopes=None if scopes is None else frozenset(scopes),
            response_types=frozenset(response_types),
        )
        return ClientCredentials(client_id=client_id, client_secret=secret)

    async def set_client_status(self, client_id: str, status: ClientStatus) -> bool:
        client = self._clients.get(client_id)
        if client is None:
            return False
        self._clients[client_id] = dataclasses.replace(client, status=status)
        if status is ClientStatus.DISABLED:
            self.announce_revocation(f"c:{client_id}")
        return True

    async def reset_client_secret(self, client_id: str) -> ClientCredentials | None:
        client = self._clients.get(client_id)
        if client is None:
            return None
        secret = new_secret()
        self._clients[client_id] = dataclasses.replace(client, secret_hash=hash_secret(secret))
        return ClientCredentials(client_id=client_id, client_secret=secret)

    async def create_partner(self, *, name: str, key_id: str | None = None) -> PartnerCredentials:
        key_id = key_id or new_client_id()
        secret = new_secret()
        self._partners[key_id] = (Partner(partner_id=key_id, name=name), hash_secret(secret))
        return PartnerCredentials(key_id=key_id, secret=secret)

    async def reset_partner_secret(self, key_id: str) -> PartnerCredentials | None:
        if key_id not in self._partners:
            return None
        secret = new_secret()
        self._partners[key_id] = (self._partners[key_id][0], hash_secret(secret))
        return PartnerCredentials(key_id=key_id, secret=secret)

    async def allow_partner_client(self, key_id: str, client_id: str) -> bool:
        if key_id not in self._partners or client_id not in self._clients:
            return False
        self._partner_clients[key_id].add(client_id)
        return True

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
        return PurgeResult(len(codes), len(tokens), len(refresh))

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

    async def give_account(self, account_id: UUID, key_id: str) -> bool:
        if account_id not in self._accounts or key_id not in self._partners:
            return False
        self._owners[account_id] = key_id
        return True
