"""Admin changes with their rules: what each one ends, what it refuses, its audit event.

Every change an operator makes goes through :class:`Administrator`, from the CLI or from
the platform's code (``app.state.admin``). The storage only stores; the rules are here.
Per rule, whether a change revokes or is checked on every use:

* a client **disabled** or **deleted**: every token, refresh token and pending code of it
  is revoked, so re-enabling it (after rotating its secret, say) brings nothing back.
  Its status is also checked on every token check, introspection and refresh;
* a client's **live-trading approval withdrawn**: its tokens for live accounts and its
  pending codes are revoked (granting it again revives none), and approval is checked on
  every use;
* a client's **scopes narrowed**: every token, refresh token and pending code of it is
  revoked (the apps connect again for what they may still have; widening the scopes
  again revives nothing), and scopes are checked on every token check, introspection,
  refresh and code exchange;
* an account **made live or paper**, or **deleted**: its tokens and pending codes are
  revoked (each token records whether its account was live when it was issued);
* a **partner** that owns accounts is not deleted: its accounts would pass to whichever
  partner remains alone.

Each change commits first and revokes after, and every issuance checks the client and
account again after its own write: an issuance racing a change is either revoked by it or
refuses itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import EllipsisType
from typing import Any
from uuid import UUID

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import ConfigurationError
from ..events import AdminChange, OAuthEvent
from ..models import (
    Account,
    Client,
    ClientAuthMethod,
    ClientCredentials,
    ClientStatus,
    PartnerCredentials,
)
from ..storage.admin import AccountDetails, PartnerDetails
from ..storage.base import AccountRepository, ClientRepository, GrantStore, ManagedStorage
from .revocation import Revocations

__all__ = ["Administrator", "partner_owns_accounts"]


def partner_owns_accounts(key_id: str, count: int) -> str:
    """Why :meth:`Administrator.delete_partner` refuses a partner that owns accounts."""
    owned, them = ("an account", "it") if count == 1 else (f"{count} accounts", "them")
    return f"partner {key_id!r} owns {owned}: give {them} to another partner or delete {them} first"


def _narrowed(before: frozenset[str] | None, after: frozenset[str] | None) -> bool:
    """Whether a client's scopes were narrowed (``None``: every supported scope)."""
    return after is not None and (before is None or not before <= after)


class Administrator:
    """Registers and changes clients, partners and accounts, applying the rules of each
    change (see the module's docstring) and emitting one
    :class:`~starlette_broker_oauth.events.AdminChange` per change.

    A platform whose repositories are all its own has no built-in storage: its service
    has :meth:`client_changed` and :meth:`account_changed` only, and refuses the rest
    with the reason.

    Parameters:
        storage: A built-in storage (its admin operations, and by default every
            repository), or ``None`` when there is none.
        grants: Where codes and tokens are, when not in ``storage``.
        clients: Where the platform's clients are, when not in ``storage``: partners may
            be allowed them, and registering clients here is refused.
        accounts: Where the platform's accounts are, when not in ``storage``: partners
            may be given them, and creating accounts here is refused.
        emit: Receives the audit events; a coroutine function.
        clock: Where time is read.
    """

    def __init__(
        self,
        storage: ManagedStorage | None = None,
        *,
        grants: GrantStore | None = None,
        clients: ClientRepository | None = None,
        accounts: AccountRepository | None = None,
        emit: Callable[[OAuthEvent], Awaitable[None]],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        grants = storage if grants is None else grants
        clients = storage if clients is None else clients
        accounts = storage if accounts is None else accounts
        if grants is None or clients is None or accounts is None:
            raise ConfigurationError(
                "Administrator needs storage=, or each of grants=, clients= and accounts="
            )
        self.storage = storage
        self.clients: ClientRepository = clients
        self.accounts: AccountRepository = accounts
        self.emit = emit
        self.clock = clock
        self.revocations = Revocations(grants=grants, emit=emit, clock=clock)

    def _store(self) -> ManagedStorage:
        if self.storage is None:
            raise ConfigurationError(
                "this platform has no built-in storage: its clients, accounts and "
                "partners are registered in its own repositories; tell the core of a "
                "change with client_changed or account_changed"
            )
        return self.storage

    async def _changed(
        self,
        subject: str,
        subject_id: object,
        action: str,
        *,
        changes: Iterable[str] = (),
        revoked: int = 0,
    ) -> None:
        await self.emit(
            AdminChange(
                subject=subject,
                subject_id=str(subject_id),
                action=action,
                changes=tuple(sorted(changes)),
                revoked=revoked,
                at=self.clock.now(),
            )
        )

    def _own_clients(self) -> None:
        if self.storage is not None and self.clients is not self.storage:
            raise ConfigurationError(
                "clients are in the platform's own repository: register and change them "
                "there, then announce changes with Administrator.client_changed"
            )

    def _own_accounts(self) -> None:
        if self.storage is not None and self.accounts is not self.storage:
            raise ConfigurationError(
                "accounts are in the platform's own repository: create and change them "
                "there, and revoke what a change ends with Administrator.account_changed"
            )

    # clients

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
        """Register a client (:meth:`Administration.create_client
        <starlette_broker_oauth.storage.admin.Administration.create_client>`), with its
        public keys for ``private_key_jwt`` when given."""
        self._own_clients()
        created = await self._store().create_client(
            name=name,
            redirect_uris=redirect_uris,
            description=description,
            url=url,
            terms_of_use=terms_of_use,
            privacy_policy=privacy_policy,
            live_trading_approved=live_trading_approved,
            scopes=scopes,
            response_types=response_types,
            client_id=client_id,
            client_secret=client_secret,
            jwks=jwks,
            token_endpoint_auth_method=token_endpoint_auth_method,
            require_pushed_authorization_requests=require_pushed_authorization_requests,
            dpop_bound_access_tokens=dpop_bound_access_tokens,
        )
        await self._changed("client", created.client_id, "created")
        return created

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
        """Change what is given of a client's registration; ``None`` if it does not
        exist. Withdrawing live approval revokes its tokens for live accounts; narrowing
        its scopes stops the tokens that carry a removed scope. New keys (``jwks``)
        replace the old ones at once; tokens already issued stay."""
        self._own_clients()
        before = await self._store().get_client(client_id)
        after = await self._store().update_client(
            client_id,
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
        if before is None or after is None:
            return None
        changes = [
            field.name
            for field in dataclasses.fields(Client)
            if getattr(before, field.name) != getattr(after, field.name)
        ]
        revoked: list[str] = []
        if _narrowed(before.scopes, after.scopes):
            # Every grant of it ends: which carry a removed scope is not worth the store's
            # while, and apps connect again for what they may still have.
            revoked = await self.revocations.revoke_tokens(
                client_id=client_id, reason="scopes_narrowed"
            )
        elif before.live_trading_approved and not after.live_trading_approved:
            revoked = await self.revocations.revoke_tokens(
                client_id=client_id, live_only=True, reason="live_approval_withdrawn"
            )
        # Nothing else an update changes restricts a token: nothing more to announce than
        # what was revoked.
        await self._changed("client", client_id, "updated", changes=changes, revoked=len(revoked))
        return after

    async def disable_client(self, client_id: str) -> bool:
        """Disable a client and revoke every token, refresh token and pending code of it;
        ``False`` if it does not exist."""
        self._own_clients()
        if not await self._store().set_client_status(client_id, ClientStatus.DISABLED):
            return False
        revoked = await self.revocations.revoke_tokens(
            client_id=client_id, reason="client_disabled"
        )
        await self.revocations.client_changed(client_id)
        await self._changed("client", client_id, "disabled", revoked=len(revoked))
        return True

    async def enable_client(self, client_id: str) -> bool:
        """Let a disabled client obtain codes and tokens again (none of its old ones
        work); ``False`` if it does not exist."""
        self._own_clients()
        if not await self._store().set_client_status(client_id, ClientStatus.ACTIVE):
            return False
        await self._changed("client", client_id, "enabled")
        return True

    async def delete_client(self, client_id: str) -> bool:
        """Delete a client, then revoke everything of it; ``False`` if it does not exist.

        The row goes first, so an issuance racing the deletion sees it gone when it
        checks again after its write, or is revoked here."""
        self._own_clients()
        if not await self._store().delete_client(client_id):
            return False
        revoked = await self.revocations.revoke_tokens(client_id=client_id, reason="client_deleted")
        await self.revocations.client_changed(client_id)
        await self._changed("client", client_id, "deleted", revoked=len(revoked))
        return True

    async def rotate_client_secret(self, client_id: str) -> ClientCredentials | None:
        """A new secret for the client; the old one stops working at once (its tokens
        stay). ``None`` if it does not exist."""
        self._own_clients()
        rotated = await self._store().reset_client_secret(client_id)
        if rotated is not None:
            await self._changed("client", client_id, "secret_rotated")
        return rotated

    # partners

    async def create_partner(self, *, name: str, key_id: str | None = None) -> PartnerCredentials:
        """Register a partner; its key id and secret (shown once)."""
        created = await self._store().create_partner(name=name, key_id=key_id)
        await self._changed("partner", created.key_id, "created")
        return created

    async def update_partner(self, key_id: str, *, name: str) -> PartnerDetails | None:
        """Rename a partner; ``None`` if it does not exist."""
        renamed = await self._store().update_partner(key_id, name=name)
        if renamed is not None:
            await self._changed("partner", key_id, "updated", changes=["name"])
        return renamed

    async def delete_partner(self, key_id: str) -> bool:
        """Delete a partner; ``False`` if it does not exist.

        Raises:
            ValueError: It owns accounts: give them to another partner, or delete them,
                first.
        """
        details = await self._store().get_partner_details(key_id)
        if details is None:
            return False
        if details.accounts:
            raise ValueError(partner_owns_accounts(key_id, details.accounts))
        deleted = await self._store().delete_partner(key_id)
        if deleted:
            await self._changed("partner", key_id, "deleted")
        return deleted

    async def rotate_partner_secret(self, key_id: str) -> PartnerCredentials | None:
        """A new secret for the partner; the old one stops working at once."""
        rotated = await self._store().reset_partner_secret(key_id)
        if rotated is not None:
            await self._changed("partner", key_id, "secret_rotated")
        return rotated

    async def allow_partner_client(self, key_id: str, client_id: str) -> bool:
        """Let the partner use the client; ``False`` if either does not exist."""
        if await self.clients.get_client(client_id) is None:
            return False
        allowed = await self._store().allow_partner_client(key_id, client_id)
        if allowed:
            await self._changed("partner", key_id, "client_allowed", changes=[client_id])
        return allowed

    async def disallow_partner_client(self, key_id: str, client_id: str) -> bool:
        """Stop the partner using the client (tokens already issued stay); ``False`` if
        either does not exist."""
        if await self.clients.get_client(client_id) is None:
            return False
        disallowed = await self._store().disallow_partner_client(key_id, client_id)
        if disallowed:
            await self._changed("partner", key_id, "client_disallowed", changes=[client_id])
        return disallowed

    # accounts

    async def create_account(
        self, *, account_id: UUID | None = None, live: bool = False, partner: str | None = None
    ) -> Account:
        """Create an account (or return the one with this id), owned by ``partner``."""
        self._own_accounts()
        account = await self._store().create_account(
            account_id=account_id, live=live, partner=partner
        )
        await self._changed("account", account.account_id, "created")
        return account

    async def update_account(self, account_id: UUID, *, live: bool) -> AccountDetails | None:
        """Make an account live or paper; a change revokes its tokens and pending codes.
        ``None`` if it does not exist."""
        self._own_accounts()
        before = await self._store().get_account_details(account_id)
        if before is None:
            return None
        after = await self._store().update_account(account_id, live=live)
        revoked: list[str] = []
        if before.live != live:
            revoked = await self.revocations.revoke_tokens(
                account_id=account_id, reason="account_made_live" if live else "account_made_paper"
            )
        await self._changed(
            "account",
            account_id,
            "updated",
            changes=["live"] if before.live != live else [],
            revoked=len(revoked),
        )
        return after

    async def delete_account(self, account_id: UUID) -> bool:
        """Delete an account, then revoke every token of it; ``False`` if it does not
        exist."""
        self._own_accounts()
        if not await self._store().delete_account(account_id):
            return False
        revoked = await self.revocations.revoke_tokens(
            account_id=account_id, reason="account_deleted"
        )
        await self._changed("account", account_id, "deleted", revoked=len(revoked))
        return True

    async def client_changed(self, client_id: str, *, end_grants: bool = False) -> int:
        """For a platform whose clients are its own: after it changed a client in its
        registry, revoke what that ends and tell every token cache. Disabled or deleted
        (or ``end_grants``, as for narrowed scopes): every token and pending code of the
        client is revoked; no longer approved for live trading: its tokens on live
        accounts and its pending codes; otherwise tokens the registration no longer allows
        stop on their next check. How many access tokens were revoked."""
        client = await self.clients.get_client(client_id)
        revoked: list[str] = []
        if end_grants or client is None or not client.active:
            revoked = await self.revocations.revoke_tokens(
                client_id=client_id, reason="client_disabled"
            )
        elif not client.live_trading_approved:
            revoked = await self.revocations.revoke_tokens(
                client_id=client_id, live_only=True, reason="live_approval_withdrawn"
            )
        await self.revocations.client_changed(client_id)
        await self._changed("client", client_id, "updated", revoked=len(revoked))
        return len(revoked)

    async def account_changed(self, account_id: UUID, *, reason: str = "account_changed") -> int:
        """For a platform whose accounts are its own: after an account was made live or
        paper, closed or deleted, revoke every token and pending code of it. How many
        access tokens were revoked."""
        revoked = await self.revocations.revoke_tokens(account_id=account_id, reason=reason)
        await self._changed("account", account_id, "updated", revoked=len(revoked))
        return len(revoked)

    async def give_account(self, account_id: UUID, key_id: str) -> bool:
        """Make the partner the account's owner; ``False`` if either does not exist."""
        if await self.accounts.get_account(account_id) is None:
            return False
        given = await self._store().give_account(account_id, key_id)
        if given:
            await self._changed("account", account_id, "given", changes=[key_id])
        return given
