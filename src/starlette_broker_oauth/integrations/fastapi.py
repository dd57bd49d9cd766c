"""FastAPI integration: a security dependency over the token verifier.

Install the extra: ``pip install 'starlette-broker-oauth[fastapi]'``. The core never
imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

try:
    from fastapi import HTTPException, Request
    from fastapi.security import OAuth2AuthorizationCodeBearer, SecurityScopes
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "starlette_broker_oauth.integrations.fastapi needs FastAPI: "
        "pip install 'starlette-broker-oauth[fastapi]'"
    ) from exc

from .. import routes
from ..core.verifier import TokenVerifier, VerifiedToken, token_of_request
from ..errors import StorageUnavailable, TokenError, TokenErrorKind
from ..settings import OAuthSettings
from ..web.render import bearer_error, bearer_text
from .starlette import verify_presented

__all__ = [
    "BearerError",
    "BrokerTokenBearer",
    "bearer_error_handler",
    "dpop_description",
    "exception_handlers",
]


class BearerError(HTTPException):
    """A refused bearer token, carrying the RFC 6750 §3 answer the Starlette guards give.

    With :data:`exception_handlers` installed the answer is sent as it is; without them,
    FastAPI's own handler sends the same status and headers with ``{"detail": …}``.
    """

    def __init__(self, error: TokenError | StorageUnavailable) -> None:
        self.response = bearer_error(error)
        detail = bearer_text(error)
        headers = {k: v for k, v in self.response.headers.items() if k != "content-length"}
        headers.pop("content-type", None)
        super().__init__(status_code=self.response.status_code, detail=detail, headers=headers)


async def bearer_error_handler(request: Request, exc: Exception) -> Response:
    """Answer a :class:`BearerError` with its RFC 6750 response."""
    assert isinstance(exc, BearerError)
    return exc.response


exception_handlers: dict[
    int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]
] = {BearerError: bearer_error_handler}
"""Pass to ``FastAPI(exception_handlers=…)`` (or merge into yours) so that refused tokens
are answered exactly as on the Starlette guards."""


def dpop_description(settings: OAuthSettings) -> str:
    """What the OpenAPI security scheme says of DPoP (RFC 9449): OpenAPI has no DPoP
    scheme type, so the OAuth2 scheme's description carries it."""
    algs = ", ".join(settings.dpop_signing_algs)
    how = (
        "send `Authorization: DPoP <token>` with a `DPoP` proof header for each request "
        f"(RFC 9449; proofs signed with {algs})"
    )
    if settings.dpop_required:
        return f"Access tokens are DPoP-bound: {how}."
    return f"Bearer tokens: `Authorization: Bearer <token>`. DPoP-bound tokens: {how}."


class BrokerTokenBearer(OAuth2AuthorizationCodeBearer):
    """A FastAPI security dependency that returns the request's :class:`VerifiedToken`.

    Use it as ``Security(bearer, scopes=["trading"])``; the scopes of every enclosing
    ``Security`` are required (``SecurityScopes``). Refusals follow RFC 6750 §3: 401
    with ``WWW-Authenticate: Bearer error="invalid_token"``, 403 with
    ``error="insufficient_scope"``, raised as :class:`BearerError`; install
    :data:`exception_handlers` in the app so that the body is the same RFC 6750 JSON the
    Starlette guards send. In OpenAPI it is an OAuth2 authorization-code scheme
    pointing at this server's endpoints, so Swagger UI's *Authorize* lists the scopes;
    its description says that DPoP-bound tokens (RFC 9449) are sent as
    ``Authorization: DPoP <token>`` with a ``DPoP`` proof, and when the platform
    requires DPoP (``OAuthSettings.dpop_required``), that every token is.

    Parameters:
        verifier: The token verifier (``oauth_app.state.token_verifier``).
        settings: The server settings; endpoint URLs, scopes and their descriptions
            (``OAuthSettings.scope_descriptions``) come from them.
        scheme_name: Name of the scheme in the OpenAPI document.
        auto_error: When false, a request with no token gets ``None`` instead of a 401
            (a refused token is still refused).
    """

    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        settings: OAuthSettings,
        scheme_name: str = "BrokerOAuth",
        auto_error: bool = True,
    ) -> None:
        super().__init__(
            authorizationUrl=settings.authorization_endpoint or settings.url(routes.CONSENT.path),
            tokenUrl=settings.url(routes.TOKEN.path),
            scopes={s: settings.describe(s) for s in sorted(settings.scopes_supported)},
            scheme_name=scheme_name,
            auto_error=auto_error,
            description=dpop_description(settings),
        )
        self.verifier = verifier

    async def __call__(  # type: ignore[override]
        self, request: Request, security_scopes: SecurityScopes
    ) -> VerifiedToken | None:
        try:
            scope = request.scope
            presented = token_of_request(scope["headers"], scope["query_string"])
            if presented is None:
                raise TokenError(TokenErrorKind.MISSING)
            return await verify_presented(
                self.verifier, presented, scope, scopes=tuple(security_scopes.scopes)
            )
        except TokenError as exc:
            if exc.kind is TokenErrorKind.MISSING and not self.auto_error:
                return None
            raise BearerError(exc) from None
        except StorageUnavailable as exc:
            raise BearerError(exc) from None
