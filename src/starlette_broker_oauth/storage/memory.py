"""In-memory storage: for tests, examples and single-process development."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from ..models import (
    AccessToken,
    Account,
    AuthorizationCode,
    Client,
    Connection,
    Partner,
    PushedRequest,
    RefreshToken,
)
from .base import ManagedStorage, gather_connections
from .memory_admin import MemoryAdministration

__all__ = ["MemoryStorage"]


class MemoryStorage(MemoryAdministration, ManagedStorage):
    """Every repository in process memory; lost when the process ends.

    Each operation runs without awaiting, so it is atomic on the event loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self._clients: dict[str, Client] = {}
        self._accounts: dict[UUID, Account] = {}
        self._partners: dict[str, tuple[Partner, str]] = {}
        self._partner_clients: defaultdict[str, set[str]] = defaultdict(set)
        self._owners: dict[UUID, str] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._used_keys: dict[str, datetime] = {}
        self._pushed: dict[str, PushedRequest] = {}

    @property
    def reaches_every_process(self) -> bool:
        return True  # only the process that holds it can use it

    async def ping(self) -> bool:
        return True  # the process's own memory: it answers while the process runs

    # ClientRepository, AccountRepository

    async def get_client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    async def get_account(self, account_id: UUID) -> Account | None:
        return self._accounts.get(account_id)

    # PartnerRepository

    async def get_partner(self, key_id: str) -> Partner | None:
        found = self._partners.get(key_id)
        if found is None:
            return None
        partner, secret_hash = found
        return dataclasses.replace(partner, secret_hash=secret_hash)

    async def is_client_allowed(self, partner_id: str, client_id: str) -> bool:
        return client_id in self._partner_clients.get(partner_id, ())

    async def account_owner(self, account_id: UUID) -> str | None:
        return self._owners.get(account_id)

    async def partner_count(self) -> int:
        return len(self._partners)

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

    async def revoke_grant(
        self, family_id: str, *, account_id: UUID, client_id: str, now: datetime
    ) -> list[str]:
        self._drop_codes(lambda c: c.account_id == account_id and c.client_id == client_id)
        return self._revoke_where(lambda t: t.family_id == family_id, now)

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

        def mine(record: AccessToken | RefreshToken | AuthorizationCode) -> bool:
            return account_id in (None, record.account_id) and client_id in (
                None,
                record.client_id,
            )

        self._drop_codes(mine)  # (a code does not say whether its account is live)
        return self._revoke_where(lambda t: mine(t) and (t.account_live or not live_only), now)

    def _drop_codes(self, picked: Callable[[AuthorizationCode], bool]) -> None:
        for code in [c for c in self._codes.values() if c.used_at is None and picked(c)]:
            del self._codes[code.code_hash]

    def _revoke_where(
        self, picked: Callable[[AccessToken | RefreshToken], bool], now: datetime
    ) -> list[str]:
        for refresh in [r for r in self._refresh.values() if picked(r) and not r.revoked_at]:
            self._refresh[refresh.token_hash] = dataclasses.replace(refresh, revoked_at=now)
        hits = [t for t in self._tokens.values() if picked(t) and not t.revoked_at]
        for token in hits:
            self._tokens[token.token_hash] = dataclasses.replace(token, revoked_at=now)
        return [token.token_hash for token in hits]

    async def use_once(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        used = self._used_keys
        for old in [k for k, expiry in used.items() if expiry <= now]:
            del used[old]
        if key in used:
            return False
        used[key] = expires_at
        return True

    async def save_pushed_request(self, request: PushedRequest) -> None:
        self._pushed[request.request_hash] = request

    async def get_pushed_request(self, request_hash: str) -> PushedRequest | None:
        return self._pushed.get(request_hash)

    async def use_pushed_request(self, request_hash: str, *, client_id: str, now: datetime) -> bool:
        request = self._pushed.get(request_hash)
        if request is None or request.client_id != client_id or now >= request.expires_at:
            return False
        del self._pushed[request_hash]
        return True

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
        return token
