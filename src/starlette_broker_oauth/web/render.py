"""Every error the sub-app and the guards answer with: one table, rendered in one place.

:data:`ANSWERS` says, for each class of the error tree (:mod:`.errors`), each kind of
refused bearer token and any other exception, what each face answers: its HTTP status
there, the RFC 6749/6750/7009 ``error`` code and, where the error's own words may not be
shown, the words the face says instead. Each face renders it in its documented shape:

* the partner endpoints (and the documents, and any path nothing serves):
  ``{"code": status * 100000 + 10000, "message": …}``, HTTP Basic's challenge with a 401;
* the standard endpoints: RFC 6749 §5.2 ``{"error", "error_description"}``, never stored,
  HTTP Basic's challenge with a 401 (``invalid_client``);
* the hosted pages: a redirect to the client once its redirect URI is trusted
  (RFC 6749 §4.1.2.1), an error page otherwise (RFC 9700 §4.11);
* the platform's protected routes: RFC 6750 §3, the same bytes from the Starlette
  middleware, the route guard and the FastAPI dependency; a request made with DPoP (or
  a DPoP-bound token sent as a bearer one) gets RFC 9449 §7.1's ``DPoP`` challenge
  instead, with ``DPoP-Nonce`` when the proof needs the server's nonce.

Every 503 (the storage is unavailable) carries ``Retry-After: 1``.

The sub-app answers through Starlette's exception handlers (:class:`ErrorHandlers`):
which face answers is the face of the endpoint the request was sent to
(:func:`.routes.route_at`). An error a face has no answer for is a bug there: it is
logged, answered as a 500 in the face's shape, and raised on to the platform's error
middleware and the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ExceptionHandler, Scope

from ..errors import (
    AccessDenied,
    BadRequest,
    BrokerOAuthError,
    ClientAssertionRefused,
    ClientDisabled,
    CodeReplayed,
    ConfigurationError,
    InvalidClient,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidRedirectURI,
    InvalidRequest,
    InvalidRequestURI,
    InvalidScope,
    LiveTradingNotApproved,
    MethodNotAllowed,
    NotFound,
    PartnerUnauthenticated,
    PushedRequestRequired,
    RefreshTokenReused,
    Refusal,
    RegistrationError,
    RequestError,
    StorageError,
    StorageUnavailable,
    TokenError,
    TokenErrorKind,
    UnauthorizedClient,
    UnknownAccount,
    UnsupportedGrantType,
    UnsupportedResponseType,
    UnsupportedTokenType,
    UseDPoPNonce,
)
from ..routes import Face, RouteSpec, route_at
from ..telemetry import record_refusal

__all__ = [
    "ANSWERS",
    "NO_STORE",
    "REASON_KEY",
    "RETRY_AFTER",
    "Answer",
    "ErrorBody",
    "ErrorHandlers",
    "answer_to",
    "bearer_error",
    "bearer_text",
    "reason_of",
    "redirect_location",
    "route_path",
    "routing_error",
]

log = logging.getLogger("starlette_broker_oauth")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: Sent with every 503 (RFC 9110 §10.2.3): the storage is unavailable, try again in a second.
RETRY_AFTER = {"Retry-After": "1"}
_PARTNER_REALM = 'Basic realm="broker-oauth", charset="UTF-8"'

PARTNER, STANDARD, PAGE, BEARER = Face.PARTNER, Face.STANDARD, Face.PAGE, Face.BEARER


class ErrorBody(TypedDict):
    """The Broker API's error shape, on the partner endpoints."""

    code: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What the faces answer to one error.

    Parameters:
        status: The HTTP status on each face that answers it. A face not named never
            meets the error: if it does, that is a bug, answered as ``Exception`` is.
        error: The RFC 6749/6750/7009 ``error`` code; ``None`` for a refusal's own
            (:attr:`.errors.Refusal.error`), ``""`` for none at all (a request with no
            token, RFC 6750 §3.1).
        text: What a face says instead of the error's own words.
    """

    status: Mapping[Face, int]
    error: str | None = None
    text: Mapping[Face, str] = field(default_factory=dict)


# Any refusal of a rule: 422 on the partner endpoints (the Broker API's "invalid field"),
# 400 on the standard endpoints (RFC 6749 §5.2) and the hosted pages.
_REFUSED = Answer(status={PARTNER: 422, STANDARD: 400, PAGE: 400})
# Raised while a request is served, a bug: answered as Exception is.
_BUG = Answer(status={})
# A token the check refused: the caller learns no more than that (RFC 6750 §3.1).
_INVALID_TOKEN = Answer(
    status={BEARER: 401}, error="invalid_token", text={BEARER: "the access token is invalid"}
)

#: Every error's answer on every face, by class (the nearest in its ``__mro__``) and, for
#: a refused bearer token, by kind.
ANSWERS: dict[type[Exception] | TokenErrorKind, Answer] = {
    Exception: Answer(
        status={PARTNER: 500, STANDARD: 500, PAGE: 500},
        error="server_error",
        text={PARTNER: "internal server error", STANDARD: "internal server error", PAGE: ""},
    ),
    BrokerOAuthError: _BUG,
    ConfigurationError: _BUG,
    RegistrationError: _BUG,
    StorageError: _BUG,
    StorageUnavailable: Answer(
        status={PARTNER: 503, STANDARD: 503, PAGE: 503, BEARER: 503},
        error="temporarily_unavailable",
        text={
            PARTNER: "service temporarily unavailable",
            STANDARD: "storage is unavailable",
            PAGE: "storage is unavailable",
            BEARER: "try again shortly",
        },
    ),
    RequestError: _BUG,
    BadRequest: Answer(status={PARTNER: 400, STANDARD: 400, PAGE: 400}, error="invalid_request"),
    # A path with control characters: 404 as a path nothing serves, except on the standard
    # endpoints, whose every refusal of a request is a 400 (RFC 6749 §5.2).
    NotFound: Answer(status={PARTNER: 404, STANDARD: 400, PAGE: 404}, error="invalid_request"),
    MethodNotAllowed: Answer(status={PARTNER: 405}, error="invalid_request"),
    Refusal: _REFUSED,
    InvalidRequest: _REFUSED,
    UnknownAccount: _REFUSED,
    InvalidRedirectURI: _REFUSED,
    # Pushed authorization requests (RFC 9126): never redirected, since the request's
    # redirect URI cannot be trusted.
    InvalidRequestURI: _REFUSED,
    PushedRequestRequired: _REFUSED,
    # One answer for an unknown client, one the partner may not use and a wrong secret.
    InvalidClient: Answer(
        status={PARTNER: 401, STANDARD: 401, PAGE: 400}, text={PARTNER: InvalidClient.ONE_ANSWER}
    ),
    # private_key_jwt (RFC 7523): every refused assertion gets the same answer, its
    # problem only reaching the logs and metrics (reason_of).
    ClientAssertionRefused: Answer(
        status={PARTNER: 401, STANDARD: 401},
        text={PARTNER: InvalidClient.ONE_ANSWER, STANDARD: ClientAssertionRefused.ONE_SENTENCE},
    ),
    PartnerUnauthenticated: Answer(status={PARTNER: 401, STANDARD: 400, PAGE: 400}),
    UnauthorizedClient: _REFUSED,
    ClientDisabled: _REFUSED,
    LiveTradingNotApproved: _REFUSED,
    InvalidGrant: _REFUSED,
    CodeReplayed: _REFUSED,
    RefreshTokenReused: _REFUSED,
    InvalidScope: _REFUSED,
    UnsupportedResponseType: _REFUSED,
    UnsupportedGrantType: _REFUSED,
    UnsupportedTokenType: _REFUSED,
    AccessDenied: _REFUSED,
    # DPoP at the token endpoint (RFC 9449 §5): 400 like any refused token request; the
    # partner endpoints and the pages never check a proof.
    InvalidDPoPProof: _REFUSED,
    UseDPoPNonce: _REFUSED,
    # The sub-app checks no bearer token: the guards answer each kind (RFC 6750 §3.1).
    TokenError: _BUG,
    TokenErrorKind.MISSING: Answer(
        status={BEARER: 401}, error="", text={BEARER: "a bearer token is required"}
    ),
    TokenErrorKind.INVALID_REQUEST: Answer(
        status={BEARER: 400},
        error="invalid_request",
        text={BEARER: "send the access token once, in the Authorization header"},
    ),
    TokenErrorKind.MALFORMED: _INVALID_TOKEN,
    TokenErrorKind.UNKNOWN: _INVALID_TOKEN,
    TokenErrorKind.EXPIRED: Answer(
        status={BEARER: 401}, error="invalid_token", text={BEARER: "the access token expired"}
    ),
    TokenErrorKind.REVOKED: _INVALID_TOKEN,
    TokenErrorKind.CLIENT_DISABLED: _INVALID_TOKEN,
    TokenErrorKind.NO_LONGER_ALLOWED: _INVALID_TOKEN,
    TokenErrorKind.INSUFFICIENT_SCOPE: Answer(
        status={BEARER: 403},
        error="insufficient_scope",
        text={BEARER: "the access token lacks a required scope"},
    ),
    # DPoP on the protected routes (RFC 9449 §7.1, §9)
    TokenErrorKind.DPOP_PROOF_INVALID: Answer(
        status={BEARER: 401},
        error="invalid_dpop_proof",
        text={BEARER: "send one valid DPoP proof for this request, signed by the token's key"},
    ),
    TokenErrorKind.DPOP_NONCE_REQUIRED: Answer(
        status={BEARER: 401},
        error="use_dpop_nonce",
        text={BEARER: "put the nonce of the DPoP-Nonce header in the DPoP proof"},
    ),
    TokenErrorKind.DPOP_BOUND_AS_BEARER: Answer(
        status={BEARER: 401},
        error="invalid_token",
        text={BEARER: "the access token is DPoP-bound: send it with the DPoP scheme and a proof"},
    ),
    TokenErrorKind.NOT_DPOP_BOUND: Answer(
        status={BEARER: 401},
        error="invalid_token",
        text={BEARER: "the access token is not DPoP-bound: send it as a bearer token"},
    ),
}


def answer_to(exc: BaseException) -> Answer:
    """The row of :data:`ANSWERS` for ``exc``: its kind's for a refused bearer token,
    else its nearest class's (``Exception``'s for anything the tree does not name)."""
    if isinstance(exc, TokenError):
        return ANSWERS[exc.kind]
    for cls in type(exc).__mro__:
        answer = ANSWERS.get(cls)
        if answer is not None:
            return answer
    return ANSWERS[Exception]


#: Where a request's refusal reason is kept in its ASGI scope (for its span's outcome).
REASON_KEY = "starlette_broker_oauth.reason"


def reason_of(exc: BaseException) -> str:
    """The precise reason of a refusal, for metrics and spans: a refused bearer token's
    kind, a refused client assertion's problem (``assertion_expired``, …), else the
    error's class in snake case (``invalid_client``, ``code_replayed``,
    ``storage_unavailable``, ``unknown_account``, …)."""
    if isinstance(exc, TokenError):
        return exc.kind.value
    if isinstance(exc, ClientAssertionRefused):
        return exc.problem.value
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _own_text(exc: BaseException) -> str:
    """The error's own words: a refusal's description, a request error's message."""
    if isinstance(exc, Refusal):
        return exc.description
    if isinstance(exc, RequestError):
        return exc.message
    return ""


def _error(answer: Answer, exc: BaseException) -> str:
    """The RFC ``error`` code: the row's, or the refusal's own."""
    if answer.error is not None:
        return answer.error
    assert isinstance(exc, Refusal)
    return exc.error


# the faces


def _partner(exc: BaseException, answer: Answer) -> Response:
    status = answer.status[PARTNER]
    message = answer.text.get(PARTNER)
    if message is None:
        message = _own_text(exc) or _error(answer, exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = _PARTNER_REALM
    if status == 503:
        headers |= RETRY_AFTER
    if isinstance(exc, MethodNotAllowed):
        headers["Allow"] = ", ".join(exc.allowed)
    body: ErrorBody = {"code": status * 100000 + 10000, "message": message}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _standard(exc: BaseException, answer: Answer) -> Response:
    status = answer.status[STANDARD]
    error = _error(answer, exc)
    description = answer.text.get(STANDARD, _own_text(exc))
    headers = dict(NO_STORE)
    if status == 401:  # invalid_client, with the challenge of HTTP Basic (RFC 6749 §5.2)
        safe = description.replace('"', "|")
        headers["WWW-Authenticate"] = f'Basic error="{error}", error_description="{safe}"'
    if status == 503:
        headers |= RETRY_AFTER
    if isinstance(exc, UseDPoPNonce) and exc.nonce:  # RFC 9449 §8
        headers["DPoP-Nonce"] = exc.nonce
    body = {"error": error, "error_description": description} if description else {"error": error}
    return JSONResponse(body, status_code=status, headers=headers)


#: Renders the hosted pages' error page: ``(request, status, error, detail)``.
PageRenderer = Callable[[Request, int, str, str], Response]


def _page(
    request: Request, exc: BaseException, answer: Answer, *, page: PageRenderer, issuer: str
) -> Response:
    if isinstance(exc, Refusal) and exc.redirect_uri is not None:
        params = [("error", exc.error)]
        if exc.description:
            params.append(("error_description", exc.description))
        location = redirect_location(exc.redirect_uri, params, state=exc.state, issuer=issuer)
        return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})
    detail = answer.text.get(PAGE, _own_text(exc))
    response = page(request, answer.status[PAGE], _error(answer, exc), detail)
    if response.status_code == 503:
        response.headers.update(RETRY_AFTER)
    return response


def bearer_error(exc: TokenError | StorageUnavailable) -> Response:
    """A protected route's refusal (RFC 6750 §3): 401, 403 or 400 with
    ``WWW-Authenticate``; 503 with ``Retry-After`` while the token store cannot be
    reached."""
    answer = answer_to(exc)
    error = _error(answer, exc)
    record_refusal("protected route", reason_of(exc), error)
    if isinstance(exc, TokenError) and exc.dpop_algs:
        # RFC 9449 §7.1: the DPoP scheme's challenge, with the algorithms accepted.
        params = [f'algs="{" ".join(exc.dpop_algs)}"', f'error="{error or "invalid_token"}"']
        if exc.scopes:
            params.append(f'scope="{" ".join(exc.scopes)}"')
        params.append(f'error_description="{answer.text[BEARER]}"')
        headers = {"WWW-Authenticate": "DPoP " + ", ".join(params), "Cache-Control": "no-store"}
        if exc.nonce is not None:
            headers["DPoP-Nonce"] = exc.nonce
    elif isinstance(exc, TokenError):
        # A request with no token gets no error code in the challenge (RFC 6750 §3.1).
        params = [f'error="{error}"'] if error else []
        if exc.scopes:
            params.append(f'scope="{" ".join(exc.scopes)}"')
        challenge = "Bearer " + ", ".join(params) if params else "Bearer"
        headers = {"WWW-Authenticate": challenge, "Cache-Control": "no-store"}
    else:
        headers = {**RETRY_AFTER, "Cache-Control": "no-store"}
    body = {"error": error or "unauthorized", "error_description": answer.text[BEARER]}
    return JSONResponse(body, status_code=answer.status[BEARER], headers=headers)


def bearer_text(exc: TokenError | StorageUnavailable) -> str:
    """What a protected route says about a refused token (``error_description``): what
    to do, nothing about anyone's token."""
    return answer_to(exc).text[BEARER]


def redirect_location(
    redirect_uri: str, params: list[tuple[str, str]], *, state: str | None, issuer: str
) -> str:
    """The redirect back to the client (RFC 6749 §4.1.2), with ``state`` and ``iss``
    (RFC 9207) added to the registered URI's own query."""
    added = [*params, ("state", state)] if state else list(params)
    added.append(("iss", issuer))
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + added
    return urlunsplit(parts._replace(query=urlencode(query)))


async def routing_error(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405, in the partner endpoints' shape whatever the path (the
    sub-app's, and a host's that wants its own the same)."""
    assert isinstance(exc, HTTPException)
    error: RequestError = NotFound("not found")
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        error = MethodNotAllowed("method not allowed", allowed=tuple(allow.split(", ")))
    answer = answer_to(error)
    _refused(request.scope, None, error, answer)
    return _partner(error, answer)


def _refused(scope: Scope, route: RouteSpec | None, exc: BaseException, answer: Answer) -> None:
    """Count a refusal of the sub-app, and note its reason for the request's span."""
    reason = reason_of(exc)
    scope[REASON_KEY] = reason
    record_refusal("unrouted" if route is None else route.path, reason, _error(answer, exc))


def route_path(scope: Scope) -> str:
    """The request's path below where the sub-app is mounted."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class ErrorHandlers:
    """The sub-app's exception handlers: each error answered by the face of the endpoint
    the request was sent to, as :data:`ANSWERS` says.

    Parameters:
        issuer: The issuer, named in refusals redirected to a client (RFC 9207).
        page: Renders the hosted pages' error page; ``None`` when they are off.
    """

    def __init__(self, *, issuer: str, page: PageRenderer | None) -> None:
        self.issuer = issuer
        self.page = page

    def handlers(self) -> dict[Any, ExceptionHandler]:
        """For ``Starlette(exception_handlers=…)``: every error some face answers; the
        router's 404 and 405; and, for the server's error middleware, any other
        exception."""
        handlers: dict[Any, ExceptionHandler] = {
            key: self.expected
            for key, answer in ANSWERS.items()
            if isinstance(key, type) and key is not Exception and answer.status
        }
        handlers[404] = handlers[405] = routing_error
        handlers[Exception] = self.unexpected
        return handlers

    def route(self, scope: Scope) -> RouteSpec | None:
        """The endpoint a request was sent to (:func:`.routes.route_at`); its face answers
        the request's errors, the partner endpoints' when it is ``None``."""
        return route_at(route_path(scope), pages=self.page is not None)

    def answer(self, request: Request, exc: Exception) -> Response | None:
        """The answer to ``exc`` of the face the request reached; ``None`` when that face
        has none (a bug)."""
        route = self.route(request.scope)
        face = PARTNER if route is None else route.face
        answer = answer_to(exc)
        response = self._render(face, request, exc, answer)
        if response is not None:
            _refused(request.scope, route, exc, answer)
        return response

    def _render(
        self, face: Face, request: Request, exc: Exception, answer: Answer
    ) -> Response | None:
        if face not in answer.status:
            return None
        if face is PARTNER:
            return _partner(exc, answer)
        if face is STANDARD:
            return _standard(exc, answer)
        assert face is PAGE
        assert self.page is not None
        return _page(request, exc, answer, page=self.page, issuer=self.issuer)

    async def expected(self, request: Request, exc: Exception) -> Response:
        """An error of the tree: its answer, or on to :meth:`unexpected` if the face the
        request reached has none."""
        response = self.answer(request, exc)
        if response is None:
            raise exc
        return response

    async def unexpected(self, request: Request, exc: Exception) -> Response:
        """A bug: logged with the endpoint's path template (never the request's path,
        which may carry a token) and answered as ``Exception`` is, in the face's shape.
        Starlette's error middleware then raises it on, to the platform's error
        middleware and the server."""
        route = self.route(request.scope)
        where = "a path no endpoint has" if route is None else route.path
        log.error("unexpected error on %s %s", request.method, where, exc_info=exc)
        face = PARTNER if route is None else route.face
        response = self._render(face, request, exc, ANSWERS[Exception])
        assert response is not None
        return response
