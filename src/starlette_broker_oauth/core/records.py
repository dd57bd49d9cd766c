"""Minting: new codes and tokens, their values given out once and their stored records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from ..clock import Clock
from ..models import AccessToken, Account, AuthorizationCode, Client, RefreshToken
from ..security import hash_secret, new_secret
from ..settings import OAuthSettings
from .policy import FAPI_CODE_LIFETIME, under_fapi

__all__ = ["IssuedCode", "IssuedToken", "Minter"]


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCode:
    """A new authorization code: its value (given out once) and its stored record."""

    code: str
    record: AuthorizationCode


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A new access token, and refresh token if any: values given out once, and records."""

    access_token: str
    record: AccessToken
    refresh_token: str | None = None
    refresh_record: RefreshToken | None = None
    expires_in: int | None = None

    def response(self) -> dict[str, Any]:
        """The RFC 6749 §5.1 token response body."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            # RFC 9449 §5: a token bound to a key is of type DPoP.
            "token_type": "Bearer" if self.record.dpop_jkt is None else "DPoP",
            "scope": self.record.scope,
        }
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


class Minter:
    """Makes codes and tokens with the settings' lifetimes, stamped by the clock.

    Parameters:
        settings: Server settings (lifetimes).
        clock: Where time is read.
    """

    def __init__(self, settings: OAuthSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    def code(
        self,
        client: Client,
        account_id: UUID,
        *,
        redirect_uri: str,
        scope: str,
        code_challenge: str | None,
        code_challenge_method: str | None,
        dpop_jkt: str | None = None,
    ) -> IssuedCode:
        """A new authorization code (RFC 6749 §4.1.2), bound to all it was issued for."""
        code = new_secret()
        now = self.clock.now()
        record = AuthorizationCode(
            code_hash=hash_secret(code),
            client_id=client.client_id,
            account_id=account_id,
            redirect_uri=redirect_uri,
            scope=scope,
            issued_at=now,
            expires_at=now + self._code_lifetime(client),
            code_challenge=code_challenge or None,
            code_challenge_method=code_challenge_method or None,
            dpop_jkt=dpop_jkt,
        )
        return IssuedCode(code=code, record=record)

    def _code_lifetime(self, client: Client) -> timedelta:
        """The platform's code lifetime; at most 60 s for a client under the FAPI 2.0
        profile on its own."""
        lifetime = self.settings.code_lifetime
        if under_fapi(self.settings, client):
            return min(lifetime, FAPI_CODE_LIFETIME)
        return lifetime

    def token(
        self,
        client: Client,
        account: Account,
        scope: str,
        *,
        family_id: str | None,
        refresh: bool = True,
        dpop_jkt: str | None = None,
    ) -> IssuedToken:
        """A new access token, and a refresh token when they are on and it has a grant.
        ``family_id``: the grant's (the code's hash); ``None`` for a token issued
        directly, which is a grant of its own, named by its hash. ``dpop_jkt``: the key
        both are bound to (RFC 9449), ``None`` for bearer tokens."""
        now = self.clock.now()
        access_lifetime = self.settings.access_token_lifetime
        access = new_secret()
        token_hash = hash_secret(access)
        record = AccessToken(
            token_hash=token_hash,
            client_id=client.client_id,
            account_id=account.account_id,
            scope=scope,
            account_live=account.live,
            issued_at=now,
            expires_at=None if access_lifetime is None else now + access_lifetime,
            family_id=token_hash if family_id is None else family_id,
            dpop_jkt=dpop_jkt,
        )
        refresh_lifetime = self.settings.refresh_token_lifetime
        refresh_value = refresh_record = None
        if refresh and refresh_lifetime is not None and family_id is not None:
            refresh_value = new_secret()
            refresh_record = RefreshToken(
                token_hash=hash_secret(refresh_value),
                family_id=family_id,
                client_id=client.client_id,
                account_id=account.account_id,
                scope=scope,
                account_live=account.live,
                issued_at=now,
                expires_at=now + refresh_lifetime,
                dpop_jkt=dpop_jkt,
            )
        return IssuedToken(
            access_token=access,
            record=record,
            refresh_token=refresh_value,
            refresh_record=refresh_record,
            expires_in=None if access_lifetime is None else int(access_lifetime.total_seconds()),
        )
