"""Starlette integration: an ``AuthenticationBackend`` over the token verifier."""

from __future__ import annotations

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from .errors import TokenError
from .verifier import TokenVerifier, VerifiedToken

__all__ = ["BearerTokenBackend", "TokenUser", "bearer_error_response"]


class TokenUser(BaseUser):
    """``request.user`` for a request that carried a valid bearer token.

    Parameters:
        token: What the token grants.
    """

    def __init__(self, token: VerifiedToken) -> None:
        self.token = token

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return str(self.token.account_id)

    @property
    def identity(self) -> str:
        return str(self.token.account_id)


class BearerAuthenticationError(AuthenticationError):
    """A bearer token was present but refused."""

    def __init__(self, error: TokenError) -> None:
        super().__init__(error.kind.value)
        self.error = error


class BearerTokenBackend(AuthenticationBackend):
    """Authenticates ``Authorization: Bearer`` requests for ``AuthenticationMiddleware``.

    Requests without a bearer token stay anonymous; a refused token is an
    authentication error, answered by :func:`bearer_error_response` when that is the
    middleware's ``on_error``.

    Parameters:
        verifier: The token verifier (``oauth_app.state.token_verifier``).
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if header is None or header[:7].lower() != "bearer ":
            return None
        try:
            token = await self.verifier.verify_header(header)
        except TokenError as exc:
            raise BearerAuthenticationError(exc) from None
        return AuthCredentials(sorted(token.scopes)), TokenUser(token)


def bearer_error_response(conn: HTTPConnection, exc: Exception) -> Response:
    """RFC 6750 §3 answer to a refused token: 401 with ``WWW-Authenticate: Bearer …``."""
    if isinstance(exc, BearerAuthenticationError):
        error = exc.error
        body = {"error": error.error_code, "error_description": "the access token is invalid"}
        return JSONResponse(
            body,
            status_code=error.status_code,
            headers={"WWW-Authenticate": error.www_authenticate()},
        )
    return JSONResponse(
        {"error": "invalid_request"}, status_code=400, headers={"WWW-Authenticate": "Bearer"}
    )
