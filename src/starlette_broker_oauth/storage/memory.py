"""In-memory storage: for tests, examples and single-process development."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime
from uuid import UUID

from ..models import (
    AccessToken,
    Account,
    AuthorizationCode,
    Client,
    Connection,
    Partner,
    RefreshToken,
)
from ..security import hash_secret, secrets_equal
from .base import Storage, gather_connections
from .memory_admin import MemoryAdministration

__all__ = ["MemoryStorage"]

_NO_SECRET = hash_secret("")


class MemoryStorage(MemoryAdministration, Storage):
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
