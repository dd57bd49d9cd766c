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

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749 import grants as authlib_grants
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge

from ..core import IssuedCode, IssuedToken
from ..models import RefreshToken
from .bridge import await_
from .models import ClientView, CodeView, TokenView
from .requests import OAuthRequest

if TYPE_CHECKING:
    from .server import BrokerAuthorizationServer

__all__ = [
    "CodeGrant",
    "DirectTokenGrant",
    "PartnerCodeGrant",
    "PartnerGrant",
    "RefreshGrant",
    "S256Only",
]

JSON_HEADERS = (
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
)
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


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


def _issue_code(grant: CodeGrant | PartnerCodeGrant, redirect_uri: str, account_id: UUID) -> Any:
    request = grant.request
    payload = request.payload.data
    issued: IssuedCode = await_(
        grant.server.core.issue_code(
            request.client.model,
            account_id=account_id,
            redirect_uri=redirect_uri,
            scope=request.scope or "",
            code_challenge=payload.get("code_challenge"),
            code_challenge_method=payload.get("code_challenge_method"),
            via="partner" if request.partner_flow else "consent",
            account=request.user,
            dpop_jkt=payload.get("dpop_jkt") or None,
        )
    )
    return 200, issued, list(JSON_HEADERS)


class CodeGrant(authlib_grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """RFC 6749 §4.1: a browser's authorization request (hosted consent), and the exchange.

    The partner's code endpoint is :class:`PartnerCodeGrant`'s.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: BrokerAuthorizationServer
    request: OAuthRequest

    @classmethod
    def check_authorization_endpoint(cls, request: OAuthRequest) -> bool:
        return not request.partner_flow and bool(super().check_authorization_endpoint(request))

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        self.server.core.check_active(self.request.client.model, redirect_uri=redirect_uri)
        return redirect_uri

    def create_authorization_response(self, redirect_uri: str, grant_user: UUID) -> Any:
        return _issue_code(self, redirect_uri, grant_user)

    def query_authorization_code(self, code: str, client: ClientView) -> CodeView | None:
        record = await_(self.server.core.code_for(code, client.model))
        return None if record is None else CodeView(record)

    def authenticate_user(self, authorization_code: CodeView) -> UUID:
        # The account is checked when the code is redeemed (AuthorizationCore.redeem_code).
        return authorization_code.model.account_id

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: CodeView = self.request.authorization_code
        issued: IssuedToken = await_(
            self.server.core.redeem_code(
                code.model, self.request.client.model, dpop=self.request.dpop
            )
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
                old.model,
                self.request.client.model,
                self.request.payload.scope,
                dpop=self.request.dpop,
            )
        )
        return 200, issued.response(), list(JSON_HEADERS)


class PartnerGrant(authlib_grants.ImplicitGrant):  # type: ignore[misc]
    """The partner endpoints' grants: the partner, not a browser, asks for a code or token.

    The partner carries the client's secret (``client_secret_post``), so the client
    authenticates instead of being looked up, which is how Authlib's implicit grant
    validates an authorization request. The secret is compared with the client record the
    partner endpoint has read (``OAuthRequest.known_client``), and the grant issues for the
    account it has read (``OAuthRequest.user``): neither is read again.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]  # noqa: RUF012 - Authlib's
    server: BrokerAuthorizationServer
    request: OAuthRequest

    @classmethod
    def check_authorization_endpoint(cls, request: OAuthRequest) -> bool:
        # Only the partner endpoints issue this way; never a browser redirect.
        return request.partner_flow and bool(super().check_authorization_endpoint(request))


class PartnerCodeGrant(PartnerGrant):
    """RFC 6749 §4.1.2 for the partner's ``POST /v1/oauth/authorize``: a code, with PKCE."""

    RESPONSE_TYPES = {"code"}  # noqa: RUF012 - Authlib's

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        try:
            S256Only(required=False).validate_code_challenge(self, redirect_uri)
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        self.server.core.check_active(self.request.client.model, redirect_uri=redirect_uri)
        return redirect_uri

    def create_authorization_response(self, redirect_uri: str, grant_user: UUID) -> Any:
        return _issue_code(self, redirect_uri, grant_user)


class DirectTokenGrant(PartnerGrant):
    """The seed's ``response_type=token``: the partner obtains a token for the client."""

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
                account=self.request.user,
            )
        )
        return 200, issued.response(), list(JSON_HEADERS)
