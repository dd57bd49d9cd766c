"""Exceptions raised and rendered by the library.

The tree::

    BrokerOAuthError
     ├── ConfigurationError          a setting or argument is wrong (raised at start-up)
     ├── RegistrationError           a client registration is refused (a redirect URI)
     ├── StorageError                a repository could not do its work
     │    └── StorageUnavailable     the database cannot be reached right now
     ├── Refusal                     a rule refused the request (RFC 6749 ``error`` code)
     │    ├── InvalidRequest         invalid_request
     │    │    ├── UnknownAccount    no such account
     │    │    └── InvalidRedirectURI  not a registered redirect URI: never redirected to
     │    ├── InvalidClient          invalid_client: unknown, wrong secret, or not the
     │    │                          partner's - one answer for all three
     │    ├── PartnerUnauthenticated the partner's HTTP Basic credentials were refused
     │    ├── UnauthorizedClient     unauthorized_client
     │    │    ├── ClientDisabled
     │    │    └── LiveTradingNotApproved
     │    ├── InvalidGrant           invalid_grant: code or refresh token unusable
     │    │    ├── CodeReplayed      the code was used before; its grant is revoked
     │    │    └── RefreshTokenReused  the same, for a rotated-out refresh token
     │    ├── InvalidScope           invalid_scope
     │    ├── UnsupportedResponseType, UnsupportedGrantType, UnsupportedTokenType
     │    └── AccessDenied           access_denied: the user said no
     ├── APIError                    an HTTP error in the broker shape {"code", "message"}
     │    ├── BadRequest             400  40010000
     │    ├── Unauthorized           401  40110000
     │    ├── NotFound               404  40410000
     │    ├── UnprocessableEntity    422  42210000
     │    └── ServiceUnavailable     503  50310000
     └── TokenError                  a bearer token failed verification (RFC 6750 §3.1)

The domain raises :class:`Refusal` and its subclasses and knows nothing of HTTP; each face
of the sub-app renders them in its documented shape in one place (``_render.py``): the
broker ``{"code", "message"}``, RFC 6749 §5.2, RFC 6750 §3 and the consent pages.
"""

from __future__ import annotations

import enum
from typing import ClassVar, TypedDict

__all__ = [
    "APIError",
    "AccessDenied",
    "BadRequest",
    "BrokerOAuthError",
    "ClientDisabled",
    "CodeReplayed",
    "ConfigurationError",
    "ErrorBody",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRedirectURI",
    "InvalidRequest",
    "InvalidScope",
    "LiveTradingNotApproved",
    "NotFound",
    "PartnerUnauthenticated",
    "RefreshTokenReused",
    "Refusal",
    "ServiceUnavailable",
    "RegistrationError",
    "StorageError",
    "StorageUnavailable",
    "TokenError",
    "TokenErrorKind",
    "Unauthorized",
    "UnauthorizedClient",
    "UnknownAccount",
    "UnprocessableEntity",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "UnsupportedTokenType",
    "refusal_for",
]


class ErrorBody(TypedDict):
    """The brokerage error shape of the partner endpoints."""

    code: int
    message: str


class BrokerOAuthError(Exception):
    """Base of every exception the library raises."""


class ConfigurationError(BrokerOAuthError, ValueError):
    """A setting or argument given to the library is invalid."""


class RegistrationError(BrokerOAuthError, ValueError):
    """A client's registration is not acceptable (e.g. a redirect URI it may not have)."""


class StorageError(BrokerOAuthError):
    """A repository failed to do its work."""


class StorageUnavailable(StorageError):
    """The database is unreachable or timed out; the request may be retried."""


class Refusal(BrokerOAuthError):
    """A rule of the authorization server refused the request.

    Parameters:
        description: What was wrong, for the client's developer; never carries a secret.
            May be empty: the ``error`` code then says it all.
        redirect_uri: Set once the client and its redirect URI are validated, when the
            refusal may be sent back to the client (RFC 6749 §4.1.2.1); ``None`` means the
            user agent must be shown an error, never redirected (RFC 9700 §4.11).
        state: The request's ``state``, returned with a redirected refusal.
    """

    error: str = "invalid_request"

    def __init__(
        self, description: str = "", *, redirect_uri: str | None = None, state: str | None = None
    ) -> None:
        super().__init__(description or self.error)
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state


class InvalidRequest(Refusal):
    """A parameter is missing, repeated or malformed (``invalid_request``)."""


class UnknownAccount(InvalidRequest):
    """The account does not exist."""

    def __init__(self, description: str = "Unknown 'account_id'.", **kwargs: str | None) -> None:
        super().__init__(description, **kwargs)


class InvalidRedirectURI(InvalidRequest):
    """The redirect URI is not one the client registered; nothing is redirected to it."""


class InvalidClient(Refusal):
    """Client authentication failed, the client is unknown, or the partner may not use it.

    All of these get one answer so that none can be told from the others.
    """

    error = "invalid_client"
    #: The one message of the partner endpoints for every such refusal.
    ONE_ANSWER = "client does not exist, you do not have access to it, or the secret is wrong"


class PartnerUnauthenticated(Refusal):
    """The partner's HTTP Basic credentials are missing or wrong."""

    error = "unauthorized"


class UnauthorizedClient(Refusal):
    """The client may not do this (``unauthorized_client``)."""

    error = "unauthorized_client"


class ClientDisabled(UnauthorizedClient):
    """The client is disabled: it gets no codes or tokens, and its tokens stop working."""

    def __init__(self, description: str = "The client is disabled.", **kwargs: str | None) -> None:
        super().__init__(description, **kwargs)


class LiveTradingNotApproved(UnauthorizedClient):
    """The account is live and the client is not approved for live trading."""

    def __init__(
        self,
        description: str = "The client is not approved for live trading.",
        **kwargs: str | None,
    ) -> None:
        super().__init__(description, **kwargs)


class InvalidGrant(Refusal):
    """The code or refresh token is unknown, expired, used, or not this client's."""

    error = "invalid_grant"


class CodeReplayed(InvalidGrant):
    """A used code was presented again; what it issued is revoked (RFC 9700 §4.5)."""

    def __init__(
        self, description: str = "The code has already been used.", **kwargs: str | None
    ) -> None:
        super().__init__(description, **kwargs)


class RefreshTokenReused(InvalidGrant):
    """A rotated-out refresh token was presented again; its grant is revoked."""

    def __init__(
        self, description: str = "The refresh token has already been used.", **kwargs: str | None
    ) -> None:
        super().__init__(description, **kwargs)


class InvalidScope(Refusal):
    """A requested scope is unknown or not allowed for the client (``invalid_scope``)."""

    error = "invalid_scope"


class UnsupportedResponseType(Refusal):
    """``unsupported_response_type``."""

    error = "unsupported_response_type"


class UnsupportedGrantType(Refusal):
    """``unsupported_grant_type``."""

    error = "unsupported_grant_type"


class UnsupportedTokenType(Refusal):
    """``unsupported_token_type`` (RFC 7009 §2.2.1)."""

    error = "unsupported_token_type"


class AccessDenied(Refusal):
    """The user denied the request (``access_denied``)."""

    error = "access_denied"


_BY_CODE: dict[str, type[Refusal]] = {
    cls.error: cls
    for cls in (
        InvalidRequest,
        InvalidClient,
        UnauthorizedClient,
        InvalidGrant,
        InvalidScope,
        UnsupportedResponseType,
        UnsupportedGrantType,
        UnsupportedTokenType,
        AccessDenied,
    )
}


def refusal_for(
    error: str,
    description: str = "",
    *,
    redirect_uri: str | None = None,
    state: str | None = None,
) -> Refusal:
    """The refusal for an RFC 6749 ``error`` code (a generic one for codes of other RFCs)."""
    cls = _BY_CODE.get(error)
    if cls is None:
        refusal = Refusal(description or error, redirect_uri=redirect_uri, state=state)
        refusal.error = error
        return refusal
    return cls(description, redirect_uri=redirect_uri, state=state)


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
    INVALID_REQUEST = "invalid_request"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    CLIENT_DISABLED = "client_disabled"
    NO_LONGER_ALLOWED = "no_longer_allowed"
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
        if self.kind is TokenErrorKind.INVALID_REQUEST:
            return "invalid_request"
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
        if self.kind is TokenErrorKind.INVALID_REQUEST:
            return "send the access token once, in the Authorization header"
        return "the access token is invalid"

    @property
    def status_code(self) -> int:
        """401; 403 for insufficient scope, 400 for an invalid request (RFC 6750 §3.1)."""
        if self.kind is TokenErrorKind.INSUFFICIENT_SCOPE:
            return 403
        return 400 if self.kind is TokenErrorKind.INVALID_REQUEST else 401

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
