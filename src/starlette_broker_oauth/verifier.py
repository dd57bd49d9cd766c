"""The framework-neutral bearer-token check used on the platform's protected routes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from .errors import TokenError, TokenErrorKind
from .security import hash_secret, utcnow
from .storage.base import ClientRepository, GrantStore

__all__ = ["TokenVerifier", "VerifiedToken", "bearer_token"]

_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedToken:
    """What a valid bearer token grants.

    Parameters:
        account_id: The brokerage account the token acts for.
        client_id: The third-party app it was issued to.
        scopes: The granted scopes.
        account_live: Whether the account is a live (not paper) account.
        expires_at: When the token expires; ``None`` if it lives until revoked.
    """

    account_id: UUID
    client_id: str
    scopes: frozenset[str]
    account_live: bool
    expires_at: datetime | None


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1).

    Raises :class:`~.errors.TokenError` (``MISSING`` or ``MALFORMED``).
    """
    if not authorization:
        raise TokenError(TokenErrorKind.MISSING)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise TokenError(TokenErrorKind.MISSING)
    token = token.strip()
    if not token or len(token) > 512 or not _TOKEN_CHARS.issuperset(token):
        raise TokenError(TokenErrorKind.MALFORMED)
    return token


class TokenVerifier:
    """Turns a bearer token into a :class:`VerifiedToken` or a precise :class:`TokenError`.

    Parameters:
        grants: Where tokens are stored.
        clients: Where clients are looked up (a disabled client's tokens stop working).
    """

    def __init__(self, *, grants: GrantStore, clients: ClientRepository) -> None:
        self._grants = grants
        self._clients = clients

    async def verify(self, token: str, *, scopes: Iterable[str] = ()) -> VerifiedToken:
        """Verify ``token``; with ``scopes``, also require each of them (RFC 6750 §3.1)."""
        record = await self._grants.get_token(hash_secret(token))
        if record is None:
            raise TokenError(TokenErrorKind.UNKNOWN)
        if record.revoked_at is not None:
            raise TokenError(TokenErrorKind.REVOKED)
        if record.is_expired(utcnow()):
            raise TokenError(TokenErrorKind.EXPIRED)
        client = await self._clients.get_client(record.client_id)
        if client is None or not client.active:
            raise TokenError(TokenErrorKind.CLIENT_DISABLED)
        verified = VerifiedToken(
            account_id=record.account_id,
            client_id=record.client_id,
            scopes=frozenset(record.scope.split()),
            account_live=record.account_live,
            expires_at=record.expires_at,
        )
        required = tuple(scopes)
        if required and not verified.scopes.issuperset(required):
            raise TokenError(TokenErrorKind.INSUFFICIENT_SCOPE, scopes=required)
        return verified

    async def verify_header(
        self, authorization: str | None, *, scopes: Iterable[str] = ()
    ) -> VerifiedToken:
        """Verify the token of an ``Authorization`` header value."""
        return await self.verify(bearer_token(authorization), scopes=scopes)

    def forget(self, token_hash: str) -> None:
        """Drop anything remembered about a token (called on revocation)."""
