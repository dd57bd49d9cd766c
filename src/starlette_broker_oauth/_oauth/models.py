"""Authlib's views of the library's records: clients, codes and tokens.

Each view answers Authlib's questions by asking the domain core, so no rule lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from authlib.oauth2.rfc6749 import ClientMixin

from ..errors import InvalidScope
from ..models import AccessToken, AuthorizationCode, Client, RefreshToken
from .bridge import await_

if TYPE_CHECKING:
    from ..core import AuthorizationCore

__all__ = ["ClientView", "CodeView", "TokenView"]


class ClientView(ClientMixin):  # type: ignore[misc]
    """Authlib's view of a :class:`~.models.Client`."""

    def __init__(self, client: Client, core: AuthorizationCore) -> None:
        self.model = client
        self.core = core

    def get_client_id(self) -> str:
        return self.model.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.model.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        try:
            return self.core.allowed_scope(self.model, scope)
        except InvalidScope:
            return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return self.core.redirect_uri_registered(self.model, redirect_uri)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # The core authenticated the client by this method, and refused a method the
        # client may not use (a secret from a private_key_jwt client, keys never registered).
        return method in {"client_secret_basic", "client_secret_post", "private_key_jwt"}

    def check_response_type(self, response_type: str) -> bool:
        return self.core.response_type_allowed(self.model, response_type)

    def check_grant_type(self, grant_type: str) -> bool:
        return self.core.grant_type_allowed(grant_type)


class CodeView:
    """Authlib's view of an :class:`~.models.AuthorizationCode`."""

    def __init__(self, code: AuthorizationCode) -> None:
        self.model = code
        self.code_challenge = code.code_challenge
        self.code_challenge_method = code.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.model.redirect_uri

    def get_scope(self) -> str:
        return self.model.scope


class TokenView:
    """Authlib's view of a stored access or refresh token."""

    def __init__(self, record: AccessToken | RefreshToken, core: AuthorizationCore) -> None:
        self.model = record
        self.refresh = isinstance(record, RefreshToken)
        self._core = core

    def check_client(self, client: ClientView) -> bool:
        return self._core.owned_by(self.model, client.model)

    def get_scope(self) -> str:
        return self.model.scope

    def is_expired(self) -> bool:
        return self._core.is_expired(self.model)

    def is_revoked(self) -> bool:
        revoked: bool = await_(self._core.is_revoked(self.model))
        return revoked
