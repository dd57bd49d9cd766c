"""The FastAPI security dependency and its OpenAPI scheme."""

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Security
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import VerifiedToken, create_oauth_app
from starlette_broker_oauth.integrations.fastapi import BrokerTokenBearer, exception_handlers
from starlette_broker_oauth.integrations.starlette import (
    BearerTokenBackend,
    bearer_error_response,
    requires_token,
)
from starlette_broker_oauth.settings import DEFAULT_SCOPE_DESCRIPTIONS

from .conftest import ISSUER, Platform

pytestmark = pytest.mark.anyio


def build(platform: Platform) -> FastAPI:
    oauth = create_oauth_app(settings=platform.settings, storage=platform.storage)
    bearer = BrokerTokenBearer(
        verifier=oauth.state.token_verifier,
        settings=platform.settings,
    )
    optional = BrokerTokenBearer(
        verifier=oauth.state.token_verifier, settings=platform.settings, auto_error=False
    )
    app = FastAPI(exception_handlers=exception_handlers)
    market = APIRouter(prefix="/market", dependencies=[Security(bearer, scopes=["general"])])

    @app.get("/v2/account")
    async def account(token: Annotated[VerifiedToken, Security(bearer)]) -> dict[str, str]:
        return {"account_id": str(token.account_id), "client_id": token.client_id}

    @app.post("/v2/orders")
    async def orders(
        token: Annotated[VerifiedToken, Security(bearer, scopes=["trading"])],
    ) -> dict[str, list[str]]:
        return {"scopes": sorted(token.scopes)}

    @market.get("/quotes")
    async def quotes(
        token: Annotated[VerifiedToken, Security(bearer, scopes=["data"])],
    ) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/hello")
    async def hello(
        token: Annotated[VerifiedToken | None, Security(optional)],
    ) -> dict[str, str | None]:
        return {"account_id": None if token is None else str(token.account_id)}

    app.include_router(market)
    app.mount("/", oauth)
    return app


@pytest.fixture
async def api(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build(platform))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


async def issue(platform: Platform, scope: str) -> dict[str, str]:
    response = await platform.http.post(
        "/v1/oauth/token", json=platform.grant_body(scope=scope), auth=platform.partner
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_valid_token(platform: Platform, api: httpx.AsyncClient) -> None:
    response = await api.get("/v2/account", headers=await issue(platform, "general"))
    assert response.json() == {
        "account_id": str(platform.paper_account),
        "client_id": platform.client_id,
    }


async def test_missing_token_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/v2/account")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_invalid_token_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/v2/account", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_revoked_token_401(platform: Platform, api: httpx.AsyncClient) -> None:
    headers = await issue(platform, "general")
    token = headers["Authorization"].split()[1]
    await api.delete(f"/v1/oauth/token/{token}", auth=platform.partner)
    response = await api.get("/v2/account", headers=headers)
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_security_scopes(platform: Platform, api: httpx.AsyncClient) -> None:
    trading = await issue(platform, "trading")
    assert (await api.post("/v2/orders", headers=trading)).json() == {"scopes": ["trading"]}
    lacking = await api.post("/v2/orders", headers=await issue(platform, "general data"))
    assert lacking.status_code == 403
    assert lacking.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="trading"'
    )


@pytest.mark.parametrize(
    ("scope", "status"),
    [("general data", 200), ("data", 403), ("general", 403), ("general data trading", 200)],
)
async def test_scopes_of_enclosing_security_add_up(
    platform: Platform, api: httpx.AsyncClient, scope: str, status: int
) -> None:
    response = await api.get("/market/quotes", headers=await issue(platform, scope))
    assert response.status_code == status
    if status == 403:
        assert 'scope="' in response.headers["www-authenticate"]


async def test_optional_dependency(platform: Platform, api: httpx.AsyncClient) -> None:
    assert (await api.get("/hello")).json() == {"account_id": None}
    authed = await api.get("/hello", headers=await issue(platform, "general"))
    assert authed.json() == {"account_id": str(platform.paper_account)}
    refused = await api.get("/hello", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401


async def test_openapi_carries_the_scheme(platform: Platform, api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["BrokerOAuth"]
    assert scheme["type"] == "oauth2"
    flow = scheme["flows"]["authorizationCode"]
    assert flow["tokenUrl"] == f"{ISSUER}/oauth/token"
    assert flow["authorizationUrl"] == platform.settings.authorization_endpoint
    # The descriptions are the settings' (the defaults here), the ones consent shows.
    assert flow["scopes"] == {
        scope: DEFAULT_SCOPE_DESCRIPTIONS[scope] for scope in platform.settings.scopes_supported
    }
    assert flow["scopes"]["trading"] == "Place, change and cancel orders for you"
    assert doc["paths"]["/v2/orders"]["post"]["security"] == [{"BrokerOAuth": ["trading"]}]
    quotes = doc["paths"]["/market/quotes"]["get"]["security"]
    assert {s for entry in quotes for s in entry["BrokerOAuth"]} == {"general", "data"}
    docs = await api.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def build_starlette(platform: Platform) -> Starlette:
    """The same routes on plain Starlette: one behind the middleware and Starlette's own
    ``@requires`` way, one guarded by ``@requires_token(verifier=…)`` alone."""
    oauth = create_oauth_app(settings=platform.settings, storage=platform.storage)
    verifier = oauth.state.token_verifier

    @requires_token("trading")
    async def middleware_orders(request: Request) -> Response:
        return JSONResponse({})

    @requires_token("trading", verifier=verifier)
    async def guarded_orders(request: Request) -> Response:
        return JSONResponse({})

    return Starlette(
        routes=[
            Route("/v2/orders", middleware_orders, methods=["POST"]),
            Route("/guarded/v2/orders", guarded_orders, methods=["POST"]),
            Mount("/", oauth),
        ],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=BearerTokenBackend(verifier),
                on_error=bearer_error_response,
            )
        ],
    )


async def test_fastapi_and_starlette_refuse_byte_for_byte(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    revoked = await issue(platform, "trading")
    await platform.http.delete(
        f"/v1/oauth/token/{revoked['Authorization'].split()[1]}", auth=platform.partner
    )
    cases = {
        "missing": {},
        "not a bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "unknown": {"Authorization": "Bearer nope"},
        "malformed": {"Authorization": "Bearer not/a\\token"},
        "revoked": revoked,
        "insufficient scope": await issue(platform, "general"),
    }
    transport = httpx.ASGITransport(app=build_starlette(platform))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as plain:
        for name, headers in cases.items():
            fast = await api.post("/v2/orders", headers=headers)
            expected_status = 403 if name == "insufficient scope" else 401
            assert fast.status_code == expected_status, name
            assert fast.json()["error"] in {"invalid_token", "insufficient_scope", "unauthorized"}
            for path in ("/v2/orders", "/guarded/v2/orders"):
                theirs = await plain.post(path, headers=headers)
                assert theirs.status_code == fast.status_code, (name, path)
                assert theirs.content == fast.content, (name, path)
                assert theirs.headers["www-authenticate"] == fast.headers["www-authenticate"]
                assert theirs.headers["cache-control"] == fast.headers["cache-control"]


async def test_a_token_sent_twice_is_an_invalid_request_everywhere(
    platform: Platform, api: httpx.AsyncClient
) -> None:
    """RFC 6750 §3.1: a request that "uses more than one method for including an access
    token" is invalid_request, 400, whatever face answers it."""
    good = (await issue(platform, "trading"))["Authorization"]
    token = good.split()[1]
    cases: dict[str, tuple[str, list[tuple[str, str]]]] = {
        "two headers": ("", [("Authorization", good), ("Authorization", good)]),
        "header and query": (f"?access_token={token}", [("Authorization", good)]),
    }
    transport = httpx.ASGITransport(app=build_starlette(platform))
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as plain:
        for name, (query, headers) in cases.items():
            answers = [await api.post("/v2/orders" + query, headers=headers)] + [
                await plain.post(path + query, headers=headers)
                for path in ("/v2/orders", "/guarded/v2/orders")
            ]
            for answer in answers:
                assert answer.status_code == 400, name
                assert answer.json() == {
                    "error": "invalid_request",
                    "error_description": "send the access token once, in the Authorization header",
                }
                assert answer.headers["www-authenticate"] == 'Bearer error="invalid_request"'
        # The query alone is not a way this server takes tokens: no token at all.
        alone = await plain.post(f"/guarded/v2/orders?access_token={token}")
        assert alone.status_code == 401
        assert alone.headers["www-authenticate"] == "Bearer"
