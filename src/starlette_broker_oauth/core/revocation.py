"""Everything that ends access, in one place: a token, a grant with its pending codes, an
account's or a client's tokens. Each revocation is one transaction of the grant store;
then it is announced to every token cache and reported as a ``TokenRevoked`` event.

What a revocation covers is decided here, never in a repository:

* an access token presented to ``/oauth/revoke`` ends only itself (RFC 7009 §2.1);
* a refresh token presented there, a partner's ``DELETE``, a replayed code and a reused
  refresh token end the whole grant (every access and refresh token of the code it came
  from) and every unused code of that client for that account, so that a code issued
  just before cannot bring the grant back;
* a disconnection ends every token and unused code of a client for an account (or, for
  ``disconnect_all``, of every client);
* admin changes end what they no longer allow (:mod:`.administration`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from ..clock import Clock
from ..events import OAuthEvent, TokenRevoked
from ..models import AccessToken, RefreshToken
from ..storage.base import ClientChanged, GrantStore, TokensRevoked

__all__ = ["Revocations"]


class Revocations:
    """The revocations of the core and of its admin service.

    Parameters:
        grants: Where codes and tokens are kept.
        emit: Hands an audit event to the platform's listener.
        clock: Where time is read.
    """

    def __init__(
        self, *, grants: GrantStore, emit: Callable[[OAuthEvent], Awaitable[None]], clock: Clock
    ) -> None:
        self.grants = grants
        self.emit = emit
        self.clock = clock

    async def revoke(self, token: AccessToken | RefreshToken, *, reason: str) -> None:
        """Revoke a token a client presented: a refresh token ends its whole grant
        (RFC 7009 §2.1), an access token only itself."""
        if isinstance(token, RefreshToken):
            await self.revoke_grant(
                token.family_id,
                account_id=token.account_id,
                client_id=token.client_id,
                reason=reason,
            )
        else:
            await self.revoke_token(token.token_hash, client_id=token.client_id, reason=reason)

    async def revoke_token(self, token_hash: str, *, client_id: str | None, reason: str) -> None:
        """Revoke one access token; announced and reported only if it was live."""
        was = await self.grants.revoke_token(token_hash, now=self.clock.now())
        if was is not None and was.revoked_at is None:
            await self._revoked([token_hash], client_id, reason)

    async def revoke_grant(
        self, family_id: str, *, account_id: UUID, client_id: str, reason: str
    ) -> list[str]:
        """End a grant: its access and refresh tokens, and the client's unused codes for
        the account."""
        revoked = await self.grants.revoke_grant(
            family_id, account_id=account_id, client_id=client_id, now=self.clock.now()
        )
        await self._revoked(revoked, client_id, reason)
        return revoked

    async def revoke_tokens(
        self,
        *,
        account_id: UUID | None = None,
        client_id: str | None = None,
        live_only: bool = False,
        reason: str,
    ) -> list[str]:
        """End every token and unused code of an account, a client, or a client for an
        account (with ``live_only``, only tokens for live accounts)."""
        revoked = await self.grants.revoke_tokens(
            account_id=account_id, client_id=client_id, live_only=live_only, now=self.clock.now()
        )
        await self._revoked(revoked, client_id, reason)
        return revoked

    async def client_changed(self, client_id: str) -> None:
        """Tell every token cache to check the client's tokens again (its registration
        now allows less)."""
        await self.grants.announce(ClientChanged(client_id))

    async def _revoked(self, token_hashes: list[str], client_id: str | None, reason: str) -> None:
        if not token_hashes:
            return
        await self.grants.announce(TokensRevoked(tuple(token_hashes)))
        await self.emit(
            TokenRevoked(
                client_id=client_id,
                token_ids=tuple(token_hashes),
                reason=reason,
                at=self.clock.now(),
            )
        )
