"""RFC 7009 revocation and RFC 7662 introspection, over the domain core.

Both answer a token of another client exactly like an unknown one (RFC 7009 §2.2,
RFC 7662 §2.2), so token values cannot be probed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from .bridge import await_
from .grants import AUTH_METHODS
from .models import ClientView, TokenView
from .requests import OAuthRequest

if TYPE_CHECKING:
    from .server import BrokerAuthorizationServer

__all__ = ["Introspection", "Revocation"]


class _TokenLookup:
    server: BrokerAuthorizationServer
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        core = self.server.core
        known = token_type_hint if token_type_hint in ("access_token", "refresh_token") else None
        record = await_(core.find_token(token_string, hint=known))
        return None if record is None else TokenView(record, core)


class Revocation(_TokenLookup, RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: a client revokes its own access or refresh token."""

    def authenticate_token(self, request: OAuthRequest, client: ClientView) -> TokenView | None:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        # Another client's token is answered like an unknown one: 200, nothing revoked.
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token: TokenView, request: OAuthRequest) -> None:
        await_(self.server.core.revoke(token.model, reason="revocation_endpoint"))


class Introspection(_TokenLookup, IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662: a client asks about its own token; anything else is ``active: false``.

    A ``token_type_hint`` it does not know only widens the search (RFC 7662 §2.1): unlike
    RFC 7009, introspection has no ``unsupported_token_type``.
    """

    def check_params(self, request: OAuthRequest, client: ClientView) -> None:
        if "token" not in request.form:
            raise InvalidRequestError()

    def check_permission(self, token: TokenView, client: ClientView, request: OAuthRequest) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: TokenView) -> dict[str, Any]:
        model = token.model
        payload: dict[str, Any] = {
            "active": True,
            "scope": model.scope,
            "client_id": model.client_id,
            "token_type": (
                "refresh_token" if token.refresh else "Bearer" if not model.dpop_jkt else "DPoP"
            ),
            "sub": str(model.account_id),
            "iat": int(model.issued_at.timestamp()),
            "iss": self.server.core.settings.issuer,
        }
        if model.dpop_jkt is not None:
            payload["cnf"] = {"jkt": model.dpop_jkt}  # RFC 9449 §6.2
        if model.expires_at is not None:
            payload["exp"] = int(model.expires_at.timestamp())
        return payload
