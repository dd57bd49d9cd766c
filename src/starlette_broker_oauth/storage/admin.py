"""The admin operations of a :class:`~.base.Storage`: registering and managing clients,
partners and accounts, and housekeeping; the records they answer with."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import EllipsisType
from typing import Any
from uuid import UUID

from ..models import (
    Account,
    Client,
    ClientAuthMethod,
    ClientCredentials,
    ClientStatus,
    PartnerCredentials,
)
from ..registration import (
    check_auth_method,
    check_client_jwks,
    check_client_keys,
    check_redirect_uris,
)

__all__ = [
    "AccountDetails",
    "Administration",
    "PartnerDetails",
    "PurgeResult",
    "client_changes",
    "client_keys",
]


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """How many rows a purge deleted."""

    codes: int = 0
    tokens: int = 0
    refresh_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PartnerDetails:
    """A partner as the admin operations show it.

    Parameters:
        key_id: Its HTTP Basic key id.
        name: Display name.
        clients: The ids of the clients it may use, sorted.
        accounts: How many accounts it owns.
    """

    key_id: str
    name: str
    clients: tuple[str, ...] = ()
    accounts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountDetails:
    """An account as the admin operations show it.

    Parameters:
        account_id: The account's UUID.
        live: True for a live account, False for paper trading.
        partner: The key id of the partner that owns it, or ``None``.
    """

    account_id: UUID
    live: bool = False
    partner: str | None = None


def client_changes(
    *,
    name: str | None,
    description: str | None,
    url: str | None,
    terms_of_use: str | None,
    privacy_policy: str | None,
    redirect_uris: Iterable[str] | None,
    scopes: Iterable[str] | EllipsisType | None,
    live_trading_approved: bool | None,
    response_types: Iterable[str] | None,
    jwks: Mapping[str, Any] | str | None = None,
    token_endpoint_auth_method: ClientAuthMethod | str | None = None,
    require_pushed_authorization_requests: bool | None = None,
    dpop_bound_access_tokens: bool | None = None,
) -> dict[str, Any]:
    """The fields :meth:`Administration.update_client` changes, by :class:`Client` field
    name, as the record holds them; raises :class:`RegistrationError` for a redirect URI
    the client may not have, or keys it may not register (whether a ``private_key_jwt``
    client keeps keys is checked against the stored record by :func:`client_keys`)."""
    changes: dict[str, Any] = {
        field: value
        for field, value in (
            ("name", name),
            ("description", description),
            ("url", url),
            ("terms_of_use", terms_of_use),
            ("privacy_policy", privacy_policy),
            ("live_trading_approved", live_trading_approved),
            ("require_pushed_authorization_requests", require_pushed_authorization_requests),
            ("dpop_bound_access_tokens", dpop_bound_access_tokens),
        )
        if value is not None
    }
    if redirect_uris is not None:
        changes["redirect_uris"] = check_redirect_uris(redirect_uris)
    if not isinstance(scopes, EllipsisType):
        changes["scopes"] = None if scopes is None else frozenset(scopes)
    if response_types is not None:
        changes["response_types"] = frozenset(response_types)
    if jwks is not None:
        changes["jwks"] = check_client_jwks(jwks)
    if token_endpoint_auth_method is not None:
        changes["token_endpoint_auth_method"] = check_auth_method(token_endpoint_auth_method)
    return changes


def client_keys(
    jwks: Mapping[str, Any] | str | None, method: ClientAuthMethod | str
) -> tuple[str | None, ClientAuthMethod]:
    """A new client's keys and authentication method as the record holds them; raises
    :class:`RegistrationError` for keys it may not register (a private or symmetric key,
    text that is not JSON) or ``private_key_jwt`` without keys."""
    checked = None if jwks is None else check_client_jwks(jwks)
    auth_method = check_auth_method(method)
    check_client_keys(auth_method, checked)
    return checked, auth_method


class Administration(ABC):
    """The admin operations of the built-in storages: they store and fetch.

    Use them through :class:`~starlette_broker_oauth.core.Administrator`, which applies
    the rules around each change (what it revokes, what it refuses) and emits its audit
    event; the CLI does.
    """

    # clients

    @abstractmethod
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
        """Register a client; returns its id and its secret (shown once).

        ``client_id`` and ``client_secret`` are new random values unless given (an app moved
        from another server keeps its credentials). ``jwks`` are its public keys (a JWK
        Set, or its JSON text) for ``private_key_jwt``; ``token_endpoint_auth_method``
        ``private_key_jwt`` restricts it to them (its secret is then never accepted).
        ``dpop_bound_access_tokens``: the client must send a DPoP proof with every token
        request (RFC 9449 §5.2).

        Raises:
            RegistrationError: A redirect URI the client may not have
                (:func:`~starlette_broker_oauth.registration.check_redirect_uri`), or a
                secret too weak to store as a hash
                (:func:`~starlette_broker_oauth.registration.check_client_secret`), or
                keys it may not register
                (:func:`~starlette_broker_oauth.registration.check_client_jwks`).
            ValueError: ``client_id`` is already registered.
        """

    @abstractmethod
    async def list_clients(self) -> list[Client]:
        """Every registered client, ordered by ``client_id``."""

    @abstractmethod
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
        """Change the given fields of a client (``None`` leaves a field as it is; for
        ``scopes``, which ``None`` sets to every supported scope, leaving it out does);
        the client as it is now, or ``None`` if it does not exist. ``redirect_uris``
        replaces the registered URIs, ``jwks`` the registered keys.

        Raises:
            RegistrationError: A redirect URI the client may not have, keys it may not
                register, or ``private_key_jwt`` for a client without keys; nothing
                changes.
        """

    @abstractmethod
    async def delete_client(self, client_id: str) -> bool:
        """Delete a client with its codes; partners may no longer use it. ``False`` if it
        does not exist."""

    @abstractmethod
    async def set_client_status(self, client_id: str, status: ClientStatus) -> bool:
        """Enable or disable a client; ``False`` if it does not exist."""

    @abstractmethod
    async def reset_client_secret(self, client_id: str) -> ClientCredentials | None:
        """Give the client a new secret; the old one stops working at once."""

    # partners

    @abstractmethod
    async def create_partner(self, *, name: str, key_id: str | None = None) -> PartnerCredentials:
        """Register a partner; returns its HTTP Basic key id and secret (shown once).

        Raises:
            ValueError: ``key_id`` is already registered.
        """

    @abstractmethod
    async def list_partners(self) -> list[PartnerDetails]:
        """Every partner, ordered by key id."""

    @abstractmethod
    async def get_partner_details(self, key_id: str) -> PartnerDetails | None:
        """The partner with this key id, or ``None``."""

    @abstractmethod
    async def update_partner(self, key_id: str, *, name: str) -> PartnerDetails | None:
        """Rename a partner; the partner as it is now, or ``None`` if it does not exist."""

    @abstractmethod
    async def delete_partner(self, key_id: str) -> bool:
        """Delete a partner, its permissions to use clients and its ownership of
        accounts; ``False`` if it does not exist. (The core refuses to delete a partner
        that owns accounts.)"""

    @abstractmethod
    async def reset_partner_secret(self, key_id: str) -> PartnerCredentials | None:
        """Give the partner a new secret; the old one stops working at once."""

    @abstractmethod
    async def allow_partner_client(self, key_id: str, client_id: str) -> bool:
        """Record that the partner may see and use the client (of the built-in table or
        of the platform's own: the core checks that it exists); ``False`` if the partner
        does not exist."""

    @abstractmethod
    async def disallow_partner_client(self, key_id: str, client_id: str) -> bool:
        """Stop the partner seeing and using the client (tokens already issued stay);
        ``False`` if the partner does not exist."""

    # accounts

    @abstractmethod
    async def create_account(
        self, *, account_id: UUID | None = None, live: bool = False, partner: str | None = None
    ) -> Account:
        """Create an account (or return the existing one with this id), owned by the
        partner whose key id is ``partner`` when given.

        Raises:
            ValueError: ``partner`` is not a registered partner.
        """

    @abstractmethod
    async def list_accounts(self, partner: str | None = None) -> list[AccountDetails]:
        """Every account, or those the partner whose key id is ``partner`` owns, ordered
        by ``account_id``.

        Raises:
            ValueError: ``partner`` is not a registered partner.
        """

    @abstractmethod
    async def get_account_details(self, account_id: UUID) -> AccountDetails | None:
        """The account with this id and its owner, or ``None``."""

    @abstractmethod
    async def update_account(self, account_id: UUID, *, live: bool) -> AccountDetails | None:
        """Make an account live or paper; the account as it is now, or ``None`` if it does
        not exist."""

    @abstractmethod
    async def delete_account(self, account_id: UUID) -> bool:
        """Delete an account with its codes and its owner; ``False`` if it does not
        exist."""

    @abstractmethod
    async def give_account(self, account_id: UUID, key_id: str) -> bool:
        """Make the partner ``key_id`` the owner of the account (its only owner), which
        may be in the built-in table or the platform's own (the core checks that it
        exists); ``False`` if the partner does not exist."""

    # housekeeping

    @abstractmethod
    async def purge_expired(
        self, *, now: datetime, retention: timedelta = timedelta(days=1), batch_size: int = 1000
    ) -> PurgeResult:
        """Delete codes and tokens that can no longer matter.

        A row goes once it has been expired, or revoked, for ``retention``: used codes and
        rotated refresh tokens are kept until then so that a replay is still recognised
        and still revokes its grant. Deletes run in batches of ``batch_size``, each its
        own short transaction, so tables are never locked for long.
        """
