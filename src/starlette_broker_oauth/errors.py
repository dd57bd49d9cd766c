"""Exceptions raised by the library: one tree, and no HTTP in it.

The tree::

    BrokerOAuthError
     ├── ConfigurationError          a setting or argument is wrong (raised at start-up)
     ├── RegistrationError           a client registration is refused (a redirect URI)
     ├── StorageError                a repository could not do its work
     │    └── StorageUnavailable     the database cannot be reached right now
     ├── RequestError                the request cannot be served as it was sent
     │    ├── BadRequest             its bytes cannot be read: body, encoding, size, type
     │    ├── NotFound               nothing is served at its path
     │    └── MethodNotAllowed       its path is served, not with its method
     ├── Refusal                     a rule refused the request (RFC 6749 ``error`` code)
     │    ├── InvalidRequest         invalid_request
     │    │    ├── UnknownAccount    no such account
     │    │    ├── InvalidRedirectURI  not a registered redirect URI: never redirected to
     │    │    ├── InvalidRequestURI   a request_uri unknown, used, expired or another
     │    │    │                       client's (RFC 9126 §4)
     │    │    └── PushedRequestRequired  a front-channel request where PAR is required
     │    ├── InvalidClient          invalid_client: unknown, wrong secret, or not the
     │    │    │                     partner's - one answer for all three
     │    │    └── ClientAssertionRefused  a private_key_jwt assertion refused (its
     │    │                          AssertionProblem); the same answer
     │    ├── PartnerUnauthenticated the partner's HTTP Basic credentials were refused
     │    ├── UnauthorizedClient     unauthorized_client
     │    │    ├── ClientDisabled
     │    │    └── LiveTradingNotApproved
     │    ├── InvalidGrant           invalid_grant: code or refresh token unusable
     │    │    ├── CodeReplayed      the code was used before; its grant is revoked
     │    │    └── RefreshTokenReused  the same, for a rotated-out refresh token
     │    ├── InvalidScope           invalid_scope
     │    ├── UnsupportedResponseType, UnsupportedGrantType, UnsupportedTokenType
     │    ├── AccessDenied           access_denied: the user said no
     │    ├── InvalidDPoPProof       invalid_dpop_proof: a DPoP proof refused (RFC 9449)
     │    └── UseDPoPNonce           use_dpop_nonce: the proof needs the server's nonce
     └── TokenError                  a bearer token failed verification (its TokenErrorKind)

No error carries an HTTP status or a Broker API code: what each face of the sub-app
answers to each error (the partner endpoints' ``{"code", "message"}``, RFC 6749 §5.2,
RFC 6750 §3, the hosted pages) is one table of the faces, ``_render.ANSWERS``. A
refusal's ``error`` is the RFC 6749 name of what was refused, which the protocol adapter
reads from Authlib and a hosted page sends back to the client.

``APIError``, ``Unauthorized``, ``UnprocessableEntity`` and ``ServiceUnavailable``, which
named HTTP statuses, are deprecated aliases of ``RequestError``,
``PartnerUnauthenticated``, ``InvalidRequest`` and ``StorageUnavailable``.
"""

from __future__ import annotations

import enum
import warnings

__all__ = [
    "AccessDenied",
    "AssertionProblem",
    "BadRequest",
    "BrokerOAuthError",
    "ClientAssertionRefused",
    "ClientDisabled",
    "CodeReplayed",
    "ConfigurationError",
    "InvalidClient",
    "InvalidDPoPProof",
    "InvalidGrant",
    "InvalidRedirectURI",
    "InvalidRequest",
    "InvalidRequestURI",
    "InvalidScope",
    "LiveTradingNotApproved",
    "MethodNotAllowed",
    "NotFound",
    "PartnerUnauthenticated",
    "PushedRequestRequired",
    "RefreshTokenReused",
    "Refusal",
    "RegistrationError",
    "RequestError",
    "StorageError",
    "StorageUnavailable",
    "TokenError",
    "TokenErrorKind",
    "UnauthorizedClient",
    "UnknownAccount",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "UnsupportedTokenType",
    "UseDPoPNonce",
    "refusal_for",
]


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


class RequestError(BrokerOAuthError):
    """The request cannot be served as it was sent: no rule was asked.

    Parameters:
        message: What was wrong with it, for the caller's developer; never carries a
            secret.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RequestError):
    """The request's bytes cannot be read: a body too large, not the content type it
    says, malformed or nested too deeply, or text that is not Unicode."""


class NotFound(RequestError):
    """Nothing is served at the request's path (or the path cannot be read as text)."""


class MethodNotAllowed(RequestError):
    """The request's path is served, but not with its method.

    Parameters:
        message: As for :class:`RequestError`.
        allowed: The methods the path is served with.
    """

    def __init__(self, message: str, *, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


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


class InvalidRequestURI(InvalidRequest):
    """A ``request_uri`` that is unknown, used, expired or another client's: one answer
    for all (RFC 9126 §4 rejects them as ``invalid_request``); never redirected, since
    nothing of the request can be trusted."""

    def __init__(
        self,
        description: str = "request_uri is unknown, expired, already used, or not this client's",
        **kwargs: str | None,
    ) -> None:
        super().__init__(description, **kwargs)


class PushedRequestRequired(InvalidRequest):
    """A front-channel authorization request without ``request_uri`` where the client or
    the platform requires pushed authorization requests (RFC 9126 §4, §6); shown, never
    redirected, since its parameters are the untrusted ones."""

    def __init__(
        self,
        description: str = "authorization requests must be pushed to the PAR endpoint first "
        "(RFC 9126): send client_id and request_uri",
        **kwargs: str | None,
    ) -> None:
        super().__init__(description, **kwargs)


class InvalidClient(Refusal):
    """Client authentication failed, the client is unknown, or the partner may not use it.

    All of these get one answer so that none can be told from the others.
    """

    error = "invalid_client"
    #: The one message of the partner endpoints for every such refusal.
    ONE_ANSWER = "client does not exist, you do not have access to it, or the secret is wrong"


class AssertionProblem(enum.Enum):
    """Why a client assertion (RFC 7523 §3) was refused: for logs, metrics and the audit
    event only; the client is told ``invalid_client`` alone."""

    MALFORMED = "assertion_malformed"
    UNSUPPORTED_TYPE = "assertion_type_unsupported"
    ALGORITHM = "assertion_algorithm_refused"
    UNKNOWN_CLIENT = "assertion_unknown_client"
    NO_KEYS = "assertion_client_has_no_keys"
    UNKNOWN_KEY = "assertion_unknown_key"
    SIGNATURE = "assertion_bad_signature"
    ISSUER = "assertion_wrong_issuer"
    AUDIENCE = "assertion_wrong_audience"
    NO_EXPIRY = "assertion_without_exp"
    EXPIRED = "assertion_expired"
    TOO_LONG = "assertion_lifetime_too_long"
    NOT_YET_VALID = "assertion_not_yet_valid"
    NO_JTI = "assertion_without_jti"
    REPLAYED = "assertion_replayed"


class ClientAssertionRefused(InvalidClient):
    """A ``private_key_jwt`` client assertion was refused (RFC 7523 §3.2): answered as
    every failed client authentication is, ``invalid_client`` with one sentence.

    Parameters:
        description: As for :class:`Refusal`; the faces say :attr:`ONE_SENTENCE` whatever
            it is.
        problem: What was wrong with the assertion, for logs, metrics and the audit event.
    """

    #: The one description of every failed client authentication at the standard endpoints.
    ONE_SENTENCE = "Client authentication failed."

    def __init__(
        self,
        description: str = ONE_SENTENCE,
        *,
        problem: AssertionProblem = AssertionProblem.MALFORMED,
        **kwargs: str | None,
    ) -> None:
        super().__init__(description, **kwargs)
        self.problem = problem


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


# DPoP (RFC 9449)


class InvalidDPoPProof(Refusal):
    """A DPoP proof is missing where one is required, or fails a check of RFC 9449 §4.3
    (``invalid_dpop_proof``)."""

    error = "invalid_dpop_proof"


class UseDPoPNonce(Refusal):
    """The DPoP proof must carry a nonce the server issued (RFC 9449 §8):
    ``use_dpop_nonce``, with the nonce to use.

    Parameters:
        description: As for :class:`Refusal`.
        nonce: The nonce the client must put in its next proof.
    """

    error = "use_dpop_nonce"

    def __init__(self, description: str = "", *, nonce: str = "", **kwargs: str | None) -> None:
        super().__init__(description, **kwargs)
        self.nonce = nonce


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
    #: A DPoP proof was refused (RFC 9449 §7.1: ``invalid_dpop_proof``).
    DPOP_PROOF_INVALID = "invalid_dpop_proof"
    #: The DPoP proof must carry the server's nonce (RFC 9449 §9: ``use_dpop_nonce``).
    DPOP_NONCE_REQUIRED = "use_dpop_nonce"
    #: A DPoP-bound token was sent as a bearer token (RFC 9449 §7.2).
    DPOP_BOUND_AS_BEARER = "dpop_bound_as_bearer"
    #: A token not bound to a key was sent with the DPoP scheme.
    NOT_DPOP_BOUND = "not_dpop_bound"


class TokenError(BrokerOAuthError):
    """A bearer (or DPoP-bound) token failed verification.

    Parameters:
        kind: The precise reason, for logs and metrics; responses use only the RFC 6750
            error code so that a caller learns nothing about other people's tokens.
        scopes: With ``INSUFFICIENT_SCOPE``, the scopes the resource needs.
        dpop_algs: For a request made with DPoP (or a DPoP-bound token sent as a bearer
            one), the proof algorithms the server accepts: the refusal is then a DPoP
            challenge (RFC 9449 §7.1). Empty for a bearer request.
        nonce: With ``DPOP_NONCE_REQUIRED``, the nonce the next proof must carry.
    """

    def __init__(
        self,
        kind: TokenErrorKind,
        *,
        scopes: tuple[str, ...] = (),
        dpop_algs: tuple[str, ...] = (),
        nonce: str | None = None,
    ) -> None:
        super().__init__(kind.value)
        self.kind = kind
        self.scopes = scopes
        self.dpop_algs = dpop_algs
        self.nonce = nonce


_DEPRECATED: dict[str, tuple[str, type[BrokerOAuthError]]] = {
    "APIError": ("RequestError", RequestError),
    "ServiceUnavailable": ("StorageUnavailable", StorageUnavailable),
    "Unauthorized": ("PartnerUnauthenticated", PartnerUnauthenticated),
    "UnprocessableEntity": ("InvalidRequest", InvalidRequest),
}


def deprecated(name: str, module: str = __name__) -> type[BrokerOAuthError]:
    """The class a deprecated name of ``module`` stands for, with a
    ``DeprecationWarning``; ``AttributeError`` for any other name."""
    if name not in _DEPRECATED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    replacement, cls = _DEPRECATED[name]
    warnings.warn(
        f"{name} named an HTTP status and is deprecated: use {replacement}",
        DeprecationWarning,
        stacklevel=3,
    )
    return cls


def __getattr__(name: str) -> type[BrokerOAuthError]:
    return deprecated(name)
