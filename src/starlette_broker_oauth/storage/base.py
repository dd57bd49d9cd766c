"""Abstract async repositories: what the server reads and writes.

A platform plugs in its own :class:`ClientRepository` and :class:`AccountRepository`
(it already has accounts, perhaps an app registry) and its own
:class:`PartnerRepository`; the :class:`GrantStore` holds the library's own codes and
tokens. Repositories store and fetch; every rule is the core's. :class:`Storage` bundles
all four with admin operations and is an async context manager the host enters in its
lifespan. A storage also offers the probes of readiness (:meth:`Storage.ping`,
:meth:`Storage.schema_state`, :attr:`GrantStore.listener_connected`); what they mean for
a worker is the core's rule (:mod:`starlette_broker_oauth.core.health`).
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self
from uuid import UUID

from ..errors import StorageError
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
from .admin import AccountDetails, Administration, PartnerDetails, PurgeResult

__all__ = [
    "AccountDetails",
    "AccountRepository",
    "CacheReset",
    "ClientChanged",
    "ClientRepository",
    "GrantStore",
    "ManagedStorage",
    "PartnerDetails",
    "PartnerRepository",
    "PurgeResult",
    "RevocationListener",
    "RevocationMessage",
    "SchemaState",
    "Storage",
    "TokensRevoked",
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


class PartnerRepository(ABC):
    """What is stored about the partners that call ``/v1/oauth/*``.

    It answers facts; the core decides. The core authenticates a partner against
    :attr:`~starlette_broker_oauth.models.Partner.secret_hash` (doing the same work for an
    unknown key id), and lets it act for an account it owns, or for an account nobody
    owns when it is the platform's only partner.
    """

    @abstractmethod
    async def get_partner(self, key_id: str) -> Partner | None:
        """The partner with this key id, with its secret's hash; ``None`` if unknown."""

    @abstractmethod
    async def is_client_allowed(self, partner_id: str, client_id: str) -> bool:
        """Whether the partner was allowed the client (``partner allow``); ``False`` for
        an unknown partner or client."""

    @abstractmethod
    async def account_owner(self, account_id: UUID) -> str | None:
        """The key id of the partner that owns the account; ``None`` if none does."""

    @abstractmethod
    async def partner_count(self) -> int:
        """How many partners there are."""


@dataclass(frozen=True, slots=True)
class TokensRevoked:
    """Access tokens were revoked: drop them (their SHA-256, as stored)."""

    token_hashes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClientChanged:
    """A client's registration changed (disabled, deleted, narrowed): re-check its tokens."""

    client_id: str


@dataclass(frozen=True, slots=True)
class CacheReset:
    """Announcements may have been missed: forget everything."""


RevocationMessage = TokensRevoked | ClientChanged | CacheReset
RevocationListener = Callable[[RevocationMessage], None]


class GrantStore(ABC):
    """Stores authorization codes and tokens, by hash only.

    Every write that must happen once is one atomic step, and every revocation one
    transaction. What each revocation covers is the core's decision: the store does
    what it is asked.

    Revocations reach token caches as :data:`RevocationMessage` values, through
    :meth:`announce`: the core calls it after each revocation returns (so after its
    transaction committed). A store shared by several processes delivers the messages to
    every process and says so with :attr:`reaches_every_process` (the SQL storage on
    PostgreSQL: ``LISTEN``/``NOTIFY``); otherwise token caches re-check within a second.
    Subclasses that define ``__init__`` call ``super().__init__()``.
    """

    def __init__(self) -> None:
        self.revocation_listeners: list[RevocationListener] = []

    @property
    def reaches_every_process(self) -> bool:
        """Whether :meth:`announce` reaches the listeners of every process using this
        store. ``False`` by default: a store of one process, or one that cannot tell
        other processes."""
        return False

    @property
    def listener_connected(self) -> bool | None:
        """Whether the connection on which this process hears other processes'
        revocations is up (readiness); ``None`` when there is none: the default, and the
        SQL storage without a token cache or on SQLite."""
        return None

    def add_revocation_listener(self, listener: RevocationListener) -> None:
        """Call ``listener(message)`` on every revocation this store learns of."""
        self.revocation_listeners.append(listener)

    async def announce(self, message: RevocationMessage) -> None:
        """Tell every listener of ``message``: those of this process at once, and, where
        the store reaches them, those of other processes. The default tells this
        process's listeners."""
        self.tell_listeners(message)

    def tell_listeners(self, message: RevocationMessage) -> None:
        """Hand ``message`` to this process's listeners; a failing one is logged."""
        for listener in list(self.revocation_listeners):
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
    async def save_token(self, token: AccessToken) -> None:
        """Store a new access token."""

    @abstractmethod
    async def get_token(self, token_hash: str) -> AccessToken | None:
        """The token with this hash (revoked or not), or ``None``."""

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
    async def revoke_token(self, token_hash: str, *, now: datetime) -> AccessToken | None:
        """Revoke one access token; the token as it was before, or ``None`` if unknown."""

    @abstractmethod
    async def revoke_grant(
        self, family_id: str, *, account_id: UUID, client_id: str, now: datetime
    ) -> list[str]:
        """In one transaction: revoke every access and refresh token of the grant
        ``family_id``, and delete every unused code of ``client_id`` for ``account_id``
        (a code issued before the revocation must not bring the grant back). The hashes
        of the access tokens this call revoked (those not yet revoked, expired or not)."""

    @abstractmethod
    async def revoke_tokens(
        self,
        *,
        account_id: UUID | None = None,
        client_id: str | None = None,
        live_only: bool = False,
        now: datetime,
    ) -> list[str]:
        """In one transaction: revoke every access and refresh token, and delete every
        unused code, of the account and/or the client given (at least one is); with
        ``live_only``, only the tokens for live accounts (and still every unused code: a
        code does not say whether its account is live). The hashes of the access tokens
        this call revoked (those not yet revoked, expired or not)."""

    @abstractmethod
    async def use_once(self, key: str, *, now: datetime, expires_at: datetime) -> bool:
        """Record ``key`` (a hash) as used until ``expires_at``: ``True`` the first time,
        ``False`` while that record has not expired, in every process that shares the
        store; a record with ``expires_at <= now`` no longer counts, and the key may be
        used again. Hosted consent relies on it so that one approval yields one code."""

    # pushed authorization requests (RFC 9126). Not abstract, so that a store written
    # before them still works without them: by default none is kept, none is found, and
    # pushing one fails with a StorageError that says what to implement.

    async def save_pushed_request(self, request: PushedRequest) -> None:
        """Store a pushed authorization request (by its ``request_hash``) until it is used
        or expires."""
        raise StorageError(
            f"{type(self).__name__} keeps no pushed authorization requests: implement "
            "save_pushed_request, get_pushed_request and use_pushed_request "
            "(PushedRequestContract in starlette_broker_oauth.testing checks them)"
        )

    async def get_pushed_request(self, request_hash: str) -> PushedRequest | None:
        """The pushed request with this hash (expired or not), or ``None`` if unknown or
        already used. The default finds none."""
        return None

    async def use_pushed_request(self, request_hash: str, *, client_id: str, now: datetime) -> bool:
        """Atomically use up the pushed request: ``True`` for exactly one caller, while it
        is unused, bound to ``client_id`` and unexpired at ``now``; ``False`` (changing
        nothing) otherwise. One guarded statement, never a read then a write. The default
        uses none."""
        return False

    @abstractmethod
    async def list_connections(self, account_id: UUID, *, now: datetime) -> list[Connection]:
        """The clients connected to an account, by ``client_id``: those holding an access
        token that is unrevoked and unexpired at ``now``, or a refresh token that is also
        unused (a grant whose access token expired is still connected through it)."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaState:
    """Where a storage's tables are, and where this version of the library expects them.

    Parameters:
        revision: The revision the tables are at; ``None`` when there are none yet.
        expected: The revision this version of the library works with (its newest).
        earlier: The revisions before ``expected`` that this version knows, oldest first.
    """

    revision: str | None
    expected: str
    earlier: tuple[str, ...]


class Storage(ClientRepository, AccountRepository, PartnerRepository, GrantStore):
    """Every repository on one backend.

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

    async def ping(self) -> bool:
        """Ask the backend a trivial question, such as ``SELECT 1`` (readiness): ``True``
        once it answered. Raises
        :class:`~starlette_broker_oauth.errors.StorageUnavailable` when it cannot answer;
        readiness bounds how long it waits. The default returns ``False``: this storage
        offers no probe, and readiness says so."""
        return False

    async def schema_state(self) -> SchemaState | None:
        """Where the storage's tables are, for readiness; ``None`` when it has no schema
        of its own to check (the default)."""
        return None

    def unit_of_work(self) -> AbstractAsyncContextManager[object]:
        """The scope of one request: a backend may let its statements share a
        connection until it ends. The default does nothing."""
        return contextlib.nullcontext()

    async def token_with_client(self, token_hash: str) -> tuple[AccessToken, Client | None] | None:
        """The token and its client, for the token check on every protected request,
        when this storage holds both (``create_oauth_app(storage=…)`` with neither
        overridden). The default reads one, then the other; a backend answers in one
        query."""
        token = await self.get_token(token_hash)
        if token is None:
            return None
        return token, await self.get_client(token.client_id)


class ManagedStorage(Storage, Administration):
    """A storage with the admin operations too (:class:`~.admin.Administration`): the
    built-in ones, which :class:`~starlette_broker_oauth.core.Administrator` and the CLI
    manage."""
