"""FastAPI integration: a security dependency over the token verifier.

Install the extra: ``pip install 'starlette-broker-oauth[fastapi]'``. The core never
imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping

try:
    from fastapi import HTTPException, Request
    from fastapi.security import OAuth2AuthorizationCodeBearer, SecurityScopes
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "starlette_broker_oauth.fastapi needs FastAPI: "
        "pip install 'starlette-broker-oauth[fastapi]'"
    ) from exc

from .errors import StorageUnavailable, TokenError, TokenErrorKind
from .settings import OAuthSettings
from .verifier import TokenVerifier, VerifiedToken

__all__ = ["BrokerTokenBearer"]


class BrokerTokenBearer(OAuth2AuthorizationCodeBearer):
    """A FastAPI security dependency that returns the request's :class:`VerifiedToken`.

    Use it as ``Security(bearer, scopes=["trading"])``; the scopes of every enclosing
    ``Security`` are required (``SecurityScopes``). Refusals follow RFC 6750 §3: 401
    with ``WWW-Authenticate: Bearer error="invalid_token"``, 403 with
    ``error="insufficient_scope"``. In OpenAPI it is an OAuth2 authorization-code scheme
    pointing at this server's endpoints, so Swagger UI's *Authorize* lists the scopes.

    Parameters:
        verifier: The token verifier (``oauth_app.state.token_verifier``).
        settings: The server settings; endpoint URLs and scopes come from them.
        scope_descriptions: Text shown for each scope in the documentation.
        scheme_name: Name of the scheme in the OpenAPI document.
        auto_error: When false, a request with no token gets ``None`` instead of a 401
            (a refused token is still refused).
    """

    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        settings: OAuthSettings,
        scope_descriptions: Mapping[str, str] | None = None,
        scheme_name: str = "BrokerOAuth",
        auto_error: bool = True,
    ) -> None:
        descriptions = dict(scope_descriptions or {})
        super().__init__(
            authorizationUrl=settings.authorization_endpoint or settings.url("/oauth/authorize"),
            tokenUrl=settings.url("/oauth/token"),
            scopes={s: descriptions.get(s, s) for s in sorted(settings.scopes_supported)},
            scheme_name=scheme_name,
            auto_error=auto_error,
        )
        self.verifier = verifier

    async def __call__(  # type: ignore[override]
        self, request: Request, security_scopes: SecurityScopes
    ) -> VerifiedToken | None:
        try:
            return await self.verifier.verify_header(
                request.headers.get("authorization"), scopes=security_scopes.scopes
            )
        except StorageUnavailable:
            raise HTTPException(
                status_code=503, detail="try again shortly", headers={"Retry-After": "1"}
            ) from None
        except TokenError as exc:
            if exc.kind is TokenErrorKind.MISSING and not self.auto_error:
                return None
            raise HTTPException(
                status_code=exc.status_code,
                detail=exc.description,
                headers={"WWW-Authenticate": exc.www_authenticate()},
            ) from None
