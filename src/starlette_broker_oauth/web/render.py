"""Every error the sub-app and the guards answer with, rendered in one place.

One function per face, each mapping the error tree (:mod:`.errors`) to that face's
documented shape:

* :func:`broker_error` - the partner endpoints, ``{"code", "message"}``;
* :func:`oauth_error` - the standard endpoints, RFC 6749 §5.2 ``{"error",
  "error_description"}``;
* :func:`bearer_error` - protected routes, RFC 6750 §3 (Starlette and FastAPI alike);
* :func:`consent_error` - the hosted consent page: a redirect to the client once its
  redirect URI is trusted (RFC 6749 §4.1.2.1), an error page otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.responses import JSONResponse, RedirectResponse, Response

from ..errors import (
    APIError,
    InvalidClient,
    PartnerUnauthenticated,
    Refusal,
    StorageUnavailable,
    TokenError,
)

__all__ = [
    "NO_STORE",
    "bearer_error",
    "broker_error",
    "consent_error",
    "oauth_error",
    "redirect_location",
]

log = logging.getLogger("starlette_broker_oauth")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PARTNER_REALM = 'Basic realm="broker-oauth", charset="UTF-8"'


def broker_error(exc: BaseException, *, what: str = "") -> Response:
    """The partner endpoints' answer: ``{"code": int, "message": str}``.

    A refused partner or client is 401 (one answer for an unknown client, a client the
    partner may not use and a wrong secret), any other refusal 422, storage trouble 503.
    """
    headers = None
    if isinstance(exc, APIError):
        status, code, message = exc.status_code, exc.code, exc.message
    elif isinstance(exc, InvalidClient):
        status, code, message = 401, 40110000, InvalidClient.ONE_ANSWER
    elif isinstance(exc, PartnerUnauthenticated):
        status, code, message = 401, 40110000, exc.description
    elif isinstance(exc, Refusal):
        status, code, message = 422, 42210000, exc.description or exc.error
    elif isinstance(exc, StorageUnavailable):
        status, code, message = 503, 50310000, "service temporarily unavailable"
    else:
        log.error("unexpected error on %s", what or "a partner endpoint", exc_info=exc)
        status, code, message = 500, 50010000, "internal server error"
    if status == 401:
        headers = {"WWW-Authenticate": _PARTNER_REALM}
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def oauth_error(exc: BaseException, *, what: str = "") -> Response:
    """The standard endpoints' answer (RFC 6749 §5.2); ``invalid_client`` is 401 with the
    ``WWW-Authenticate`` challenge of HTTP Basic."""
    headers = dict(NO_STORE)
    if isinstance(exc, Refusal):
        status, error, description = 400, exc.error, exc.description
        if isinstance(exc, InvalidClient):
            status = 401
            safe = description.replace('"', "|")
            headers["WWW-Authenticate"] = f'Basic error="{exc.error}", error_description="{safe}"'
    elif isinstance(exc, APIError):
        status, error, description = exc.status_code, "invalid_request", exc.message
    elif isinstance(exc, StorageUnavailable):
        status, error, description = 503, "temporarily_unavailable", "storage is unavailable"
    else:
        log.error("unexpected error at %s", what or "a standard endpoint", exc_info=exc)
        status, error, description = 500, "server_error", "internal server error"
    body = {"error": error, "error_description": description} if description else {"error": error}
    return JSONResponse(body, status_code=status, headers=headers)


def bearer_error(exc: TokenError | StorageUnavailable) -> Response:
    """A protected route's refusal (RFC 6750 §3): 401 or 403 with ``WWW-Authenticate``;
    503 with ``Retry-After`` while the token store cannot be reached."""
    if isinstance(exc, StorageUnavailable):
        return JSONResponse(
            {"error": "temporarily_unavailable", "error_description": "try again shortly"},
            status_code=503,
            headers={"Retry-After": "1", "Cache-Control": "no-store"},
        )
    return JSONResponse(
        {"error": exc.error_code or "unauthorized", "error_description": exc.description},
        status_code=exc.status_code,
        headers={"WWW-Authenticate": exc.www_authenticate(), "Cache-Control": "no-store"},
    )


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


def consent_error(
    exc: BaseException, *, issuer: str, page: Callable[[int, str, str], Response]
) -> Response:
    """The hosted pages' answer to a failure: once the client and its redirect URI are
    validated, a 303 back to the client with the error; before that, never a redirect
    (RFC 9700 §4.11), but ``page(status, error, detail)``."""
    if isinstance(exc, Refusal):
        if exc.redirect_uri is not None:
            params = [("error", exc.error)]
            if exc.description:
                params.append(("error_description", exc.description))
            location = redirect_location(exc.redirect_uri, params, state=exc.state, issuer=issuer)
            return RedirectResponse(
                location, status_code=303, headers={"Cache-Control": "no-store"}
            )
        return page(400, exc.error, exc.description)
    if isinstance(exc, APIError):
        return page(exc.status_code, "invalid_request", exc.message)
    if isinstance(exc, StorageUnavailable):
        return page(503, "temporarily_unavailable", "storage is unavailable")
    log.error("unexpected error on a hosted page", exc_info=exc)
    return page(500, "server_error", "")
