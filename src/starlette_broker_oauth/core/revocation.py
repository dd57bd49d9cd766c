"""Revocation: of one token, a grant, an account's tokens or one client's for it, and
the partner's DELETE; each with its ``TokenRevoked`` audit event."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from ..clock import Clock
from ..events import OAuthEvent, TokenRevoked
from ..models import AccessToken, Partner, RefreshToken
from ..security import hash_secret
from ..storage.base import GrantStore, PartnerAuthenticator

__all__ = ["Revocations"]


class Revocations:
    """The revocations of :class:`~.authority.AuthorizationCore`, which mixes them in.

    Revocations reach token caches through the grant store's announcements, made after
    each transaction commits.
    """

    grants: GrantStore
    partners: PartnerAuthenticator
    clock: Clock

    if TYPE_CHECKING:

        async def emit(self, event: OAuthEvent) -> None: ...

    async def revoke(self, token: AccessToken | RefreshToken, *, reason: str) -> None:
        """Revoke a token a client or partner presented: a refresh token ends its whole
        grant (RFC 7009 §2.1), an access token only itself."""
        if isinstance(token, RefreshToken):
            await self.revoke_family(token.family_id, client_id=token.client_id, reason=reason)
        else:
            await self.revoke_token(token.token_hash, client_id=token.client_id, reason=reason)

    async def revoke_token(self, token_hash: str, *, client_id: str | None, reason: str) -> None:
        """Revoke one access token; the event goes out only if it was live until now."""
        was = await self.grants.revoke_token(token_hash, now=self.clock.now())
        if was is not None and was.revoked_at is None:
            await self._revoked([token_hash], client_id, reason)

    async def revoke_family(self, family_id: str, *, client_id: str | None, reason: str) -> None:
        """Revoke every access and refresh token of one grant (one authorization code)."""
        revoked = await self.grants.revoke_family(family_id, now=self.clock.now())
        await self._revoked(revoked, client_id, reason)

    async def revoke_account(
        self, account_id: UUID, *, client_id: str | None = None, reason: str
    ) -> list[str]:
        """Revoke every token of an account, or only those of one client for it."""
        revoked = await self.grants.revoke_tokens(
            account_id=account_id, client_id=client_id, now=self.clock.now()
        )
        await self._revoked(revoked, client_id, reason)
        return revoked

    async def partner_revoke(self, partner: Partner, value: str) -> None:
        """A partner revokes an access token, and with it the whole grant the token came
        from: every access and refresh token of that code's family (a token issued
        directly is its own grant). A token of a client, or an account, the partner may
        not use is left alone and answered like an unknown one, so values cannot be
        probed."""
        token = await self.grants.get_token(hash_secret(value))
        if (
            token is None
            or not await self.partners.partner_can_use_client(partner, token.client_id)
            or not await self.partners.partner_can_use_account(partner, token.account_id)
        ):
            return
        if token.family_id is None:
            await self.revoke_token(
                token.token_hash, client_id=token.client_id, reason="partner_delete"
            )
        else:
            await self.revoke_family(
                token.family_id, client_id=token.client_id, reason="partner_delete"
            )

    async def _revoked(self, token_hashes: list[str], client_id: str | None, reason: str) -> None:
        if token_hashes:
            await self.emit(
                TokenRevoked(
                    client_id=client_id,
                    token_ids=tuple(token_hashes),
                    reason=reason,
                    at=self.clock.now(),
                )
            )
