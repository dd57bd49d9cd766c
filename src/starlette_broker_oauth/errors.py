"""Exceptions raised and rendered by the library.

The tree::

    BrokerOAuthError
     ├── ConfigurationError        a setting or argument is wrong (raised at start-up)
     ├── StorageError              a repository could not do its work
     │    └── StorageUnavailable   the database cannot be reached right now
     ├── APIError                  an HTTP error in the broker shape {"code", "message"}
     │    ├── BadRequest           400  40010000
     │    ├── Unauthorized         401  40110000
     │    ├── NotFound             404  40410000
     │    ├── UnprocessableEntity  422  42210000
     │    └── ServiceUnavailable   503  50310000
     └── TokenError                a bearer token failed verification (RFC 6750 §3.1)

Protocol errors of the standard endpoints are Authlib's ``OAuth2Error`` and are
rendered in the RFC 6749 §5.2 shape instead.
"""

from __future__ import annotations

import enum
from typing import ClassVar, TypedDict

__all__ = [
    "APIError",
    "BadRequest",
    "BrokerOAuthError",
    "ConfigurationError",
    "ErrorBody",
    "NotFound",
    "ServiceUnavailable",
    "StorageError",
    "StorageUnavailable",
    "TokenError",
    "TokenErrorKind",
    "Unauthorized",
    "UnprocessableEntity",
]


class ErrorBody(TypedDict):
    """The brokerage error shape of the partner endpoints."""

    code: int
    message: str


class BrokerOAuthError(Exception):
    """Base of every exception the library raises."""


class ConfigurationError(BrokerOAuthError, ValueError):
    """A setting or argument given to the library is invalid."""


class StorageError(BrokerOAuthError):
    """A repository failed to do its work."""


class StorageUnavailable(StorageError):
    """The database is unreachable or timed out; the request may be retried."""


class APIError(BrokerOAuthError):
    """An HTTP error rendered as ``{"code": int, "message": str}``.

    Parameters:
        message: Human-readable text; never carries a secret.
    """

    status_code: ClassVar[int] = 500
    code: ClassVar[int] = 50010000

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> ErrorBody:
        """The JSON body of the error response."""
        return {"code": self.code, "message": self.message}


class BadRequest(APIError):
    """400: the body could not be read."""

    status_code = 400
    code = 40010000


class Unauthorized(APIError):
    """401: the caller is not authenticated, or the client is unknown to it."""

    status_code = 401
    code = 40110000

    @classmethod
    def client_refused(cls) -> Unauthorized:
        """The one answer for an unknown client, a client the partner may not use, and a
        wrong client secret, so that none can be told from the others."""
        return cls("client does not exist, you do not have access to it, or the secret is wrong")


class NotFound(APIError):
    """404: no such resource."""

    status_code = 404
    code = 40410000


class UnprocessableEntity(APIError):
    """422: a field is missing or invalid."""

    status_code = 422
    code = 42210000


class ServiceUnavailable(APIError):
    """503: the storage is unavailable; retry later."""

    status_code = 503
    code = 50310000


class TokenErrorKind(enum.Enum):
    """Why a bearer token was refused."""

    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    CLIENT_DISABLED = "client_disabled"
    INSUFFICIENT_SCOPE = "insufficient_scope"


class TokenError(BrokerOAuthError):
    """A bearer token failed verification.

    Parameters:
        kind: The precise reason, for logs and metrics; responses use only the RFC 6750
            error code so that a caller learns nothing about other people's tokens.
        scopes: With ``INSUFFICIENT_SCOPE``, the scopes the resource needs.
    """

    def __init__(self, kind: TokenErrorKind, *, scopes: tuple[str, ...] = ()) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.scopes = scopes

    @property
    def error_code(self) -> str:
        """The RFC 6750 §3.1 error code (empty for a request with no token)."""
        if self.kind is TokenErrorKind.MISSING:
            return ""
        if self.kind is TokenErrorKind.INSUFFICIENT_SCOPE:
            return "insufficient_scope"
        return "invalid_token"

    @property
    def description(self) -> str:
        """Text for ``error_description``: says what to do, tells nothing about others."""
        if self.kind is TokenErrorKind.MISSING:
            return "a bearer token is required"
        if self.kind is TokenErrorKind.EXPIRED:
            return "the access token expired"
        if self.kind is TokenErrorKind.INSUFFICIENT_SCOPE:
            return "the access token lacks a required scope"
        return "the access token is invalid"

    @property
    def status_code(self) -> int:
        """401, or 403 for insufficient scope (RFC 6750 §3.1)."""
        return 403 if self.kind is TokenErrorKind.INSUFFICIENT_SCOPE else 401

    def www_authenticate(self, realm: str | None = None) -> str:
        """The ``WWW-Authenticate`` header value (RFC 6750 §3)."""
        params = []
        if realm:
            params.append(f'realm="{realm}"')
        if self.error_code:
            params.append(f'error="{self.error_code}"')
        if self.scopes:
            params.append(f'scope="{" ".join(self.scopes)}"')
        return "Bearer " + ", ".join(params) if params else "Bearer"
