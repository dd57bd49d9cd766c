"""Authlib's authorization server over the domain core."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from authlib.oauth2.rfc6749 import AuthorizationServer, InvalidClientError, OAuth2Error

from ..core import AuthorizationCore
from ..errors import Refusal, refusal_for
from ..security import client_basic_credentials
from .bridge import await_
from .endpoints import Introspection, Revocation
from .grants import CodeGrant, DirectTokenGrant, PartnerCodeGrant, RefreshGrant, S256Only
from .models import ClientView
from .requests import OAuthRequest

__all__ = ["BrokerAuthorizationServer", "ServerResponse", "refusal"]

ServerResponse = tuple[int, Any, tuple[tuple[str, str], ...]]

CLIENT_REFUSED = "Client authentication failed."


def refusal(error: OAuth2Error) -> Refusal:
    """The domain's refusal for an error Authlib raised."""
    return refusal_for(
        error.error,
        error.description or "",
        redirect_uri=error.redirect_uri,
        state=error.state,
    )


class BrokerAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's authorization server whose grants and endpoints ask ``core``.

    Its errors leave as :class:`~.errors.Refusal`: the faces render them. What a request
    has already read travels on the request (:class:`~.requests.OAuthRequest`): the server
    itself holds nothing of any one request.
    """

    def __init__(self, core: AuthorizationCore) -> None:
        super().__init__(scopes_supported=sorted(core.settings.scopes_supported))
        self.core = core
        self.register_client_auth_method("client_secret_basic", self.authenticate_basic)
        self.register_client_auth_method("client_secret_post", self.authenticate_post)
        self.register_client_auth_method("none", lambda query_client, request: None)
        self.register_client_auth_method("private_key_jwt", self.authenticate_assertion)
        self.register_grant(CodeGrant, [S256Only(required=False)])
        self.register_grant(PartnerCodeGrant)
        self.register_grant(DirectTokenGrant)
        if core.refresh_enabled:
            self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)

    # client authentication: one rule, in the core

    def authenticate_basic(self, query_client: Any, request: OAuthRequest) -> ClientView | None:
        """``client_secret_basic`` (RFC 6749 §2.3.1), registered with Authlib."""
        client_id, secret = client_basic_credentials(request.headers.get("authorization"))
        return self.authenticate_credentials(client_id, secret, request)

    def authenticate_post(self, query_client: Any, request: OAuthRequest) -> ClientView | None:
        """``client_secret_post`` (RFC 6749 §2.3.1), registered with Authlib."""
        form = request.form
        return self.authenticate_credentials(
            form.get("client_id"), form.get("client_secret"), request
        )

    def authenticate_assertion(self, query_client: Any, request: OAuthRequest) -> ClientView | None:
        """``private_key_jwt`` (RFC 7523 §2.2), registered with Authlib when
        ``OAuthSettings.private_key_jwt`` is on; the core checks the assertion and raises
        its refusal itself."""
        form = request.form
        if not self.core.settings.private_key_jwt or (
            "client_assertion" not in form and "client_assertion_type" not in form
        ):
            return None
        client = await_(
            self.core.authenticate_assertion(
                form.get("client_assertion_type"),
                form.get("client_assertion"),
                client_id=form.get("client_id"),
                endpoint=request.endpoint,
                known=request.known_client,
            )
        )
        return ClientView(client, self.core)

    def authenticate_credentials(
        self, client_id: str | None, secret: str | None, request: OAuthRequest
    ) -> ClientView | None:
        """The client these credentials authenticate, compared with the record the request
        has already read if it has (``OAuthRequest.known_client``)."""
        client = await_(
            self.core.authenticate_client(
                client_id, secret, endpoint=request.endpoint, known=request.known_client
            )
        )
        return None if client is None else ClientView(client, self.core)

    def authenticate_client(
        self, request: OAuthRequest, methods: list[str], endpoint: str = "token"
    ) -> ClientView:
        # Authlib's refusal names the methods as a Python list; ours is a sentence, the same
        # for every cause (an unknown client, a wrong secret, a method not accepted here).
        try:
            client: ClientView = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            raise InvalidClientError(status_code=401, description=CLIENT_REFUSED) from None
        return client

    def query_client(self, client_id: str) -> ClientView | None:
        # Authlib looks a client up (rather than authenticating it) only for a browser's
        # authorization request, where nothing has read the client before.
        client = await_(self.core.clients.get_client(client_id))
        return None if client is None else ClientView(client, self.core)

    # Authlib's hooks for requests and responses

    def create_oauth2_request(self, request: OAuthRequest) -> OAuthRequest:
        return request

    def handle_response(
        self, status: int, body: Any, headers: Sequence[tuple[str, str]]
    ) -> ServerResponse:
        return status, body, tuple(headers)

    def handle_error_response(self, request: OAuthRequest, error: OAuth2Error) -> NoReturn:
        raise refusal(error)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None
