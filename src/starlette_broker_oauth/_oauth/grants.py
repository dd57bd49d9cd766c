"""Authlib's grant classes, subclassed so that every rule and write goes to the domain core.

Departures from Authlib's defaults, each deliberate:

* the code is consumed and the token stored in one atomic step, not "save token, then
  delete code" (which lets two concurrent redemptions both succeed);
* a reused code or refresh token revokes its grant (RFC 9700 §4.5, §4.14.2);
* PKCE accepts only ``S256`` and compares in constant time;
* tokens live for ``OAuthSettings.access_token_lifetime`` (none by default), not 10 days.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any
from uuid import UUID

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import grants as authlib_grants
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge

from ..core import IssuedCode, IssuedToken
from ..models import RefreshToken
from .bridge import await_
from .models import ClientView, CodeView, TokenView
from .requests import OAuthRequest

if TYPE_CHECKING:
    from .server import BrokerAuthorizationServer

__all__ = ["CodeGrant", "DirectTokenGrant", "RefreshGrant", "S256Only"]

JSON_HEADERS = (
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
)
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


def _verify_s256(code_verifier: str, code_challenge: str) -> bool:
    return hmac.compare_digest(create_s256_code_challenge(code_verifier), code_challenge)


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE (RFC 7636) with ``S256`` only: ``plain`` and a missing method are refused."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - Authlib's class attribute
    CODE_CHALLENGE_METHODS = {"S256": _verify_s256}  # noqa: RUF012

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(authlib_grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """RFC 6749 §4.1: the partner's code endpoint, hosted consent, and the exchange."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: BrokerAuthorizationServer
    request: OAuthRequest

    def validate_authorization_request(self) -> str:
        if self.request.partner_flow:
            # The partner endpoint carries the client's secret (client_secret_post).
            self.server.authenticate_client(self.request, ["client_secret_post"], "authorize")
        redirect_uri: str = super().validate_authorization_request()
        self.server.core.check_active(self.request.client.model, redirect_uri=redirect_uri)
        return redirect_uri

    def create_authorization_response(self, redirect_uri: str, grant_user: UUID) -> Any:
        payload = self.request.payload.data
        issued: IssuedCode = await_(
            self.server.core.issue_code(
                self.request.client.model,
                account_id=grant_user,
                redirect_uri=redirect_uri,
                scope=self.request.scope or "",
                code_challenge=payload.get("code_challenge"),
                code_challenge_method=payload.get("code_challenge_method"),
                via="partner" if self.request.partner_flow else "consent",
                account=self.server.known_account(),
            )
        )
        return 200, issued, list(JSON_HEADERS)

    def query_authorization_code(self, code: str, client: ClientView) -> CodeView | None:
        record = await_(self.server.core.code_for(code, client.model))
        return None if record is None else CodeView(record)

    def authenticate_user(self, authorization_code: CodeView) -> UUID:
        # The account is checked when the code is redeemed (AuthorizationCore.redeem_code).
        return authorization_code.model.account_id

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: CodeView = self.request.authorization_code
        issued: IssuedToken = await_(
            self.server.core.redeem_code(code.model, self.request.client.model)
        )
        return 200, issued.response(), list(JSON_HEADERS)


class RefreshGrant(authlib_grants.RefreshTokenGrant):  # type: ignore[misc]
    """RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: BrokerAuthorizationServer
    request: OAuthRequest

    def authenticate_refresh_token(self, refresh_token: str) -> TokenView | None:
        core = self.server.core
        record = await_(core.refresh_token_for(refresh_token, self.request.client.model))
        return None if record is None else TokenView(record, core)

    def authenticate_user(self, refresh_token: TokenView) -> UUID:
        return refresh_token.model.account_id

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        old: TokenView = self.request.refresh_token
        assert isinstance(old.model, RefreshToken)
        issued: IssuedToken = await_(
            self.server.core.rotate_refresh_token(
                old.model, self.request.client.model, self.request.payload.scope
            )
        )
        return 200, issued.response(), list(JSON_HEADERS)


class DirectTokenGrant(authlib_grants.ImplicitGrant):  # type: ignore[misc]
    """The seed's ``response_type=token``: the partner obtains a token for the client."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]  # noqa: RUF012 - Authlib's
    server: BrokerAuthorizationServer
    request: OAuthRequest

    @classmethod
    def check_authorization_endpoint(cls, request: OAuthRequest) -> bool:
        # Only the partner endpoint issues tokens this way; never a browser redirect.
        return bool(request.partner_flow and request.payload.response_type == "token")

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        self.server.core.check_active(self.request.client.model)
        return redirect_uri

    def create_authorization_response(self, redirect_uri: str, grant_user: UUID) -> Any:
        issued: IssuedToken = await_(
            self.server.core.issue_token(
                self.request.client.model,
                account_id=grant_user,
                scope=self.request.scope or "",
                account=self.server.known_account(),
            )
        )
        return 200, issued.response(), list(JSON_HEADERS)
