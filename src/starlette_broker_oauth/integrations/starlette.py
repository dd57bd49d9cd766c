"""Starlette integration: an ``AuthenticationBackend`` and route guards over the verifier.

With ``AuthenticationMiddleware(backend=BearerTokenBackend(verifier),
on_error=bearer_error_response)`` every request carrying a valid bearer token gets
``request.user`` (a :class:`TokenUser`) and ``request.auth.scopes``, so Starlette's own
``@requires("trading")`` works unchanged; requests without a token stay anonymous; a
refused token is answered per RFC 6750 §3. :func:`requires_token` guards a route with
RFC 6750 answers (403 ``insufficient_scope`` naming the scope), with or without the
middleware.

Both accept DPoP-bound tokens (RFC 9449 §7): ``Authorization: DPoP <token>`` with a
``DPoP`` proof for the request, checked on every request. The proof's ``htu`` must be the
URL the client addressed: the resource origin (the issuer's, or
``TokenVerifier(resource_origin=…)``; never the ``Host`` header) and the request's full
path, mount prefixes included (:func:`request_path`). A refused DPoP request is answered
with RFC 9449 §7.1's ``DPoP`` challenge.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Scope

from .. import routes
from ..core.dpop import quoted_path
from ..core.verifier import PresentedToken, TokenVerifier, VerifiedToken, token_of_request
from ..errors import StorageUnavailable, TokenError, TokenErrorKind
from ..web.render import bearer_error

__all__ = [
    "BearerAuthenticationError",
    "BearerTokenBackend",
    "TokenUser",
    "bearer_error_response",
    "request_path",
    "requires_token",
]

P = ParamSpec("P")


def _own_paths() -> re.Pattern[str]:
    """The sub-app's paths under any mount prefix: the Broker API's namespace, and every
    other endpoint's path at the end (a ``{name}`` matching one segment)."""
    patterns = [re.escape(routes.BROKER_API)]
    for route in routes.ROUTES:
        if not route.path.startswith(routes.BROKER_API):
            template = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(route.path))
            patterns.append(template + "$")
    return re.compile("|".join(patterns))


_OAUTH_ROUTE = _own_paths()
# Where the backend leaves the DPoP algorithms for a guard's challenge to a bound token.
_DPOP_ALGS_KEY = "starlette_broker_oauth.dpop_algs"
# Where a request's checked DPoP proof is kept: (token, verifier, what it verified).
_DPOP_DONE_KEY = "starlette_broker_oauth.dpop_checked"
# What every one of those paths has: a path without it is the platform's (a fast check).
_MARK = "oauth" if all("oauth" in route.path for route in routes.ROUTES) else ""


def request_path(scope: Scope) -> str:
    """The path the client addressed, as a DPoP proof's ``htu`` names it: the request's
    whole path, including the ``root_path`` of every mount and of the server
    (``uvicorn --root-path``, which a proxy that forwards a prefix needs: see *Run behind
    a proxy*). Servers that follow the ASGI spec put ``root_path`` in ``path`` already
    (Starlette's ``request.url`` reads it so); for one that does not, it is prefixed. The
    ASGI path is decoded: what would change its meaning (``?``, ``#``, ``%``) is escaped
    again, so that a proof for ``/files/a`` is not good for ``/files/a%3Fb``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and not path.startswith(root):
        path = root + path
    return quoted_path(path)


async def verify_presented(
    verifier: TokenVerifier,
    presented: PresentedToken,
    scope: Scope,
    *,
    scopes: tuple[str, ...] = (),
) -> VerifiedToken:
    """Verify a presented token: a DPoP one with its proof (``verify_dpop``), a bearer one
    from the cache or the storage.

    A DPoP proof is good for one check: when the backend has checked it, a guard or the
    FastAPI dependency on the same request takes what it found (the request's scope
    carries it) instead of refusing the proof's ``jti`` as replayed.
    """
    if presented.dpop:
        done = scope.get(_DPOP_DONE_KEY)
        if done is not None and done[0] == presented.token and done[1] is verifier:
            token: VerifiedToken = done[2]
            if scopes and not token.scopes.issuperset(scopes):
                raise TokenError(
                    TokenErrorKind.INSUFFICIENT_SCOPE, scopes=scopes, dpop_algs=verifier.dpop_algs
                )
            return token
        token = await verifier.verify_dpop(
            presented.token,
            presented.proofs,
            # A WebSocket handshake has no method in its scope: it is a GET (RFC 6455).
            method=scope.get("method", "GET"),
            path=request_path(scope),
            scopes=scopes,
        )
        scope[_DPOP_DONE_KEY] = (presented.token, verifier, token)
        return token
    cached = None if scopes else verifier.cached(presented.token)
    return cached if cached is not None else await verifier.verify(presented.token, scopes=scopes)


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


class _Principals:
    """``(AuthCredentials, TokenUser)`` per verified token, built once.

    The verifier's cache hands back the same ``VerifiedToken`` object on every hit, so
    keeping what was built for it (bounded) lets a cached check allocate nothing.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._memo: dict[int, tuple[VerifiedToken, AuthCredentials, TokenUser]] = {}

    def __call__(self, token: VerifiedToken) -> tuple[AuthCredentials, TokenUser]:
        entry = self._memo.get(id(token))
        if entry is None or entry[0] is not token:
            if len(self._memo) >= self._size:
                self._memo.clear()
            entry = (token, AuthCredentials(sorted(token.scopes)), TokenUser(token))
            self._memo[id(token)] = entry
        return entry[1], entry[2]


class BearerAuthenticationError(AuthenticationError):
    """A bearer token was present but refused, or could not be checked.

    Parameters:
        error: Why, precisely; ``None`` when the storage was unavailable (answered 503).
    """

    def __init__(self, error: TokenError | None) -> None:
        super().__init__(error.kind.value if error else "unavailable")
        self.error = error


class BearerTokenBackend(AuthenticationBackend):
    """Authenticates ``Authorization: Bearer`` requests for ``AuthenticationMiddleware``.

    Parameters:
        verifier: The token verifier (``oauth_app.state.token_verifier``).
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier
        self._principal = _Principals()

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        scope = conn.scope
        try:
            presented = token_of_request(scope["headers"], scope.get("query_string", b""))
        except TokenError as exc:
            if _oauth_route(scope["path"]):
                return None
            raise BearerAuthenticationError(exc) from None
        if presented is None or _oauth_route(scope["path"]):
            # Anonymous, another scheme (a partner's HTTP Basic), or one of the OAuth
            # sub-app's own endpoints: they take no bearer token and answer a stray one
            # themselves, in their own shape, wherever they are mounted.
            return None
        token = None if presented.dpop else self.verifier.cached(presented.token)
        if token is None:
            try:
                token = await verify_presented(self.verifier, presented, scope)
            except TokenError as exc:
                raise BearerAuthenticationError(exc) from None
            except StorageUnavailable:
                raise BearerAuthenticationError(None) from None
            if token.jkt is not None:
                scope[_DPOP_ALGS_KEY] = self.verifier.dpop_algs
        return self._principal(token)


def bearer_error_response(conn: HTTPConnection, exc: Exception) -> Response:
    """``on_error`` for ``AuthenticationMiddleware``: RFC 6750 §3 answers (503 while the
    storage is unavailable)."""
    if isinstance(exc, BearerAuthenticationError):
        return bearer_error(exc.error or StorageUnavailable("token store"))
    return bearer_error(TokenError(TokenErrorKind.MALFORMED))


def requires_token(
    *scopes: str, verifier: TokenVerifier | None = None
) -> Callable[[Callable[P, Awaitable[Response]]], Callable[P, Awaitable[Response]]]:
    """Guard a Starlette endpoint: a valid bearer token with every one of ``scopes``.

    Parameters:
        scopes: Scopes the token must carry; a token without one gets 403
            ``insufficient_scope`` naming them (RFC 6750 §3.1).
        verifier: Verify the request's token with this verifier. Without it, the guard
            relies on ``AuthenticationMiddleware`` with :class:`BearerTokenBackend`.

    The endpoint then finds the token at ``request.user.token``.
    """

    required = frozenset(scopes)
    principal = _Principals()

    def decorate(endpoint: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> Response:
            request = args[0] if args and isinstance(args[0], Request) else _find_request(args)
            scope = request.scope
            if verifier is not None:
                # Hot path: a cached token costs a header scan and a dict lookup.
                try:
                    presented = token_of_request(scope["headers"], scope.get("query_string", b""))
                except TokenError as exc:
                    return bearer_error(exc)
                if presented is None:
                    return bearer_error(TokenError(TokenErrorKind.MISSING))
                token = None if presented.dpop else verifier.cached(presented.token)
                if token is None:
                    try:
                        token = await verify_presented(verifier, presented, scope)
                    except (TokenError, StorageUnavailable) as exc:
                        return bearer_error(exc)
                scope["auth"], scope["user"] = principal(token)
            else:
                user = scope.get("user")
                if not isinstance(user, TokenUser):
                    return bearer_error(TokenError(TokenErrorKind.MISSING))
                token = user.token
            if not required <= token.scopes:
                error = TokenError(
                    TokenErrorKind.INSUFFICIENT_SCOPE,
                    scopes=scopes,
                    dpop_algs=() if token.jkt is None else _algs(verifier, scope),
                )
                return bearer_error(error)
            return await endpoint(*args, **kwargs)

        return guarded

    return decorate


def _algs(verifier: TokenVerifier | None, scope: Scope) -> tuple[str, ...]:
    """The DPoP algorithms of the challenge to a DPoP-bound token's request."""
    if verifier is None:
        algs: tuple[str, ...] = scope.get(_DPOP_ALGS_KEY, ())
        return algs
    return verifier.dpop_algs


def _oauth_route(path: str) -> bool:
    return _MARK in path and _OAUTH_ROUTE.search(path) is not None


def _find_request(args: tuple[Any, ...]) -> Request:
    for arg in args:
        if isinstance(arg, Request):
            return arg
    raise TypeError("requires_token() guards endpoints that take a Request")
