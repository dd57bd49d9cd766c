"""Abstract async repositories: what the server reads and writes.

A platform plugs in its own :class:`ClientRepository` and :class:`AccountRepository`
(it already has accounts, perhaps an app registry) and its own
:class:`PartnerAuthenticator`; the :class:`GrantStore` holds the library's own
codes and tokens. :class:`Storage` bundles all four with admin operations and is an
async context manager the host enters in its lifespan.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Self
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
from .admin import AccountDetails, Administration, PartnerDetails, PurgeResult

__all__ = [
    "AccountDetails",
    "AccountRepository",
    "ClientRepository",
    "GrantStore",
    "PartnerAuthenticator",
    "PartnerDetails",
    "PurgeResult",
    "Storage",
    "gather_connections",
]


class ClientRepository(ABC):
    """Looks up registered clients."""

    @abstractmethod
    async def get_client(self, client_id: str) -> Client | None:
        """The client with this id, or ``None``."""


class AccountRepository(ABC):
    """Looks up end users' brokerage accounts."""

    @abstractmethod
    async def get_account(self, account_id: UUID) -> Account | None:
        """The account with this id, or ``None``."""


class PartnerAuthenticator(ABC):
    """Authenticates the partners that call ``/v1/oauth/*`` and says which clients they use."""

    @abstractmethod
    async def authenticate_partner(self, key_id: str, secret: str) -> Partner | None:
        """The partner whose HTTP Basic credentials these are, or ``None``.

        Implementations compare secrets in constant time and take the same time for an
        unknown key id as for a wrong secret.
        """

    @abstractmethod
    async def partner_can_use_client(self, partner: Partner, client_id: str) -> bool:
        """Whether ``partner`` may see and use the client ``client_id``."""

    async def client_for_partner(
        self, partner: Partner, client_id: str, clients: ClientRepository
    ) -> Client | None:
        """The client, if ``partner`` may use it; ``None`` otherwise (or if unknown).

        The default asks :meth:`partner_can_use_client`, then ``clients``; a backend that
        holds both answers in one query when ``clients`` is itself.
        """
        if not await self.partner_can_use_client(partner, client_id):
            return None
        return await clients.get_client(client_id)

    async def account_for_partner(
        self, partner: Partner, account_id: UUID, accounts: AccountRepository
    ) -> Account | None:
        """The account, if ``partner`` may act for it; ``None`` otherwise (or if unknown).

        The default asks :meth:`partner_can_use_account`, then ``accounts``; a backend
        that holds both answers in one query when ``accounts`` is itself.
        """
        if not await self.partner_can_use_account(partner, account_id):
            return None
        return await accounts.get_account(account_id)

    async def partner_can_use_account(self, partner: Partner, account_id: UUID) -> bool:
        """Whether ``partner`` may act for the account: get codes and tokens for it, and
        revoke its tokens. On the Broker API a partner acts only for its own end users.

        The default allows every partner every account, which is right for a platform
        with one partner; a platform with several overrides it (the built-in storages
        record which partner owns each account).
        """
        return True


RevocationListener = Callable[[str], None]


class GrantStore(ABC):
    """Stores authorization codes and access tokens, by hash only.

    Revocations are announced to listeners (token caches) as messages: ``t:<token hash>``
    (a token was revoked), ``c:<client id>`` (a client was disabled) and ``*`` (forget
    everything: notifications may have been missed). This is the one channel by which a
    revocation reaches a cache. A backend announces a revocation only once it is durable
    (after its transaction commits; never for one rolled back), and to this process at
    once. A backend shared by several processes also delivers every process's revocations
    to every process (PostgreSQL: ``LISTEN``/``NOTIFY``).
    """

    def add_revocation_listener(self, listener: RevocationListener) -> None:
        """Call ``listener(message)`` on every revocation this store learns of."""
        listeners: list[RevocationListener] = self.__dict__.setdefault("_revocation_listeners", [])
        listeners.append(listener)

    def announce_revocation(self, message: str) -> None:
        """Tell the listeners (backends call this; see the class docstring)."""
        for listener in list(self.__dict__.get("_revocation_listeners", ())):
            try:
                listener(message)
            except Exception:
                logging.getLogger("starlette_broker_oauth").exception("revocation listener failed")

    @abstractmethod
    async def save_code(self, code: AuthorizationCode) -> None:
        """Store a new authorization code."""

    @abstractmethod
    async def get_code(self, code_hash: str) -> AuthorizationCode | None:
        """The code with this hash (used or not), or ``None``."""

    @abstractmethod
    async def redeem_code(
        self,
        code_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken | None = None,
        now: datetime,
    ) -> bool:
        """Atomically mark the code used and store the tokens issued for it.

        Succeeds for exactly one caller per code, and only while the code is unused,
        unexpired and bound to ``client_id``; returns ``False`` (storing nothing)
        otherwise. Must be one transaction: never a read followed by a write.
        """

    @abstractmethod
    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        """The refresh token with this hash (used, revoked or not), or ``None``."""

    @abstractmethod
    async def rotate_refresh_token(
        self,
        token_hash: str,
        *,
        client_id: str,
        token: AccessToken,
        refresh_token: RefreshToken,
        now: datetime,
    ) -> bool:
        """Atomically mark a refresh token used and store the new pair.

        Succeeds for at most one caller per refresh token, and only while it is unused,
        unrevoked, unexpired and bound to ``client_id``; stores nothing otherwise.
        """

    @abstractmethod
    async def revoke_family(self, family_id: str, *, now: datetime) -> list[str]:
        """Revoke every access and refresh token of a grant; the access-token hashes."""

    @abstractmethod
    async def revoke_tokens(
        self, *, account_id: UUID, client_id: str | None = None, now: datetime
    ) -> list[str]:
        """Revoke every access and refresh token of an account, or only those issued to
        ``client_id`` for it; the hashes of the access tokens this revoked."""

    async def use_once(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        """Record ``key`` (a hash) as used: ``True`` the first time, ``False`` while it is
        recorded (until ``expires_at``). Hosted consent uses it so that one approval
        yields one code.

        The default keeps the keys in this process; a store shared by several processes
        overrides it with one atomic write (the built-in SQL storage does).
        """
        used: dict[str, datetime] = self.__dict__.setdefault("_used_keys", {})
        for old in [k for k, expiry in used.items() if expiry <= now]:
            del used[old]
        if key in used:
            return False
        used[key] = expires_at
        return True

    @abstractmethod
    async def list_connections(self, account_id: UUID, *, now: datetime) -> list[Connection]:
        """The clients connected to an account, by ``client_id``: those holding an access
        token that is unrevoked and unexpired at ``now``, or a refresh token that is also
        unused (a grant whose access token expired is still connected through it)."""

    @abstractmethod
    async def save_token(self, token: AccessToken) -> None:
        """Store a new access token."""

    @abstractmethod
    async def get_token(self, token_hash: str) -> AccessToken | None:
        """The token with this hash (revoked or not), or ``None``."""

    @abstractmethod
    async def revoke_token(self, token_hash: str, *, now: datetime) -> AccessToken | None:
        """Revoke the token; the token as it was, or ``None`` if unknown."""

    async def get_token_with_client(
        self, token_hash: str, clients: ClientRepository
    ) -> tuple[AccessToken, Client | None] | None:
        """The token and its client, for the token check on every protected request.

        The default asks :meth:`get_token`, then ``clients``; a backend that holds both
        tables answers in one query when ``clients`` is itself.
        """
        token = await self.get_token(token_hash)
        if token is None:
            return None
        return token, await clients.get_client(token.client_id)


def gather_connections(
    account_id: UUID, grants: Iterable[tuple[str, str, datetime, datetime]]
) -> list[Connection]:
    """Fold ``(client_id, scope, first issued, last issued)`` rows of an account's working
    tokens into one :class:`Connection` per client, ordered by ``client_id``."""
    merged: dict[str, tuple[set[str], datetime, datetime]] = {}
    for client_id, scope, first, last in grants:
        if client_id in merged:
            scopes, was_first, was_last = merged[client_id]
            merged[client_id] = (scopes, min(first, was_first), max(last, was_last))
        else:
            scopes = set()
            merged[client_id] = (scopes, first, last)
        scopes.update(scope.split())
    return [
        Connection(
            account_id=account_id,
            client_id=client_id,
            scopes=frozenset(scopes),
            connected_at=first,
            last_issued_at=last,
        )
        for client_id, (scopes, first, last) in sorted(merged.items())
    ]


class Storage(
    ClientRepository, AccountRepository, PartnerAuthenticator, GrantStore, Administration
):
    """Every repository on one backend, plus the admin operations the CLI uses
    (:class:`~.admin.Administration`).

    Enter it (``async with storage:``) before serving requests and leave it on shutdown.
    """

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Acquire resources (connections, schema)."""

    async def close(self) -> None:
        """Release resources."""
