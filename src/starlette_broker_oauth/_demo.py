"""The demo platform behind ``broker-oauth demo``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .app import create_oauth_app
from .authentication import BearerTokenBackend, TokenUser, bearer_error_response
from .settings import OAuthSettings
from .storage.sqlalchemy import SQLAlchemyStorage

DEMO_PARTNER = "demo-partner"
DEMO_CLIENT = "demo-trading-app"
PAPER_ACCOUNT = uuid.uuid5(uuid.NAMESPACE_URL, "broker-oauth-demo/paper")
LIVE_ACCOUNT = uuid.uuid5(uuid.NAMESPACE_URL, "broker-oauth-demo/live")


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoCredentials:
    """What a script needs to drive the demo platform."""

    base_url: str
    partner_key: str
    partner_secret: str
    client_id: str
    client_secret: str
    redirect_uri: str
    paper_account_id: str
    live_account_id: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


async def seed(storage: SQLAlchemyStorage, *, base_url: str) -> DemoCredentials:
    """Create (or, on a re-run, re-key) the demo partner, client and accounts."""
    redirect_uri = "http://127.0.0.1:8001/callback"
    client = await storage.reset_client_secret(DEMO_CLIENT)
    if client is None:
        client = await storage.create_client(
            client_id=DEMO_CLIENT,
            name="Demo Trading App",
            description="A third-party trading app for trying the OAuth flow.",
            url="http://127.0.0.1:8001",
            redirect_uris=[redirect_uri, "http://localhost:8001/callback"],
        )
    partner = await storage.reset_partner_secret(DEMO_PARTNER)
    if partner is None:
        partner = await storage.create_partner(key_id=DEMO_PARTNER, name="Demo Broker")
    await storage.allow_partner_client(DEMO_PARTNER, DEMO_CLIENT)
    await storage.create_account(account_id=PAPER_ACCOUNT, live=False)
    await storage.create_account(account_id=LIVE_ACCOUNT, live=True)
    return DemoCredentials(
        base_url=base_url,
        partner_key=partner.key_id,
        partner_secret=partner.secret,
        client_id=client.client_id,
        client_secret=client.client_secret,
        redirect_uri=redirect_uri,
        paper_account_id=str(PAPER_ACCOUNT),
        live_account_id=str(LIVE_ACCOUNT),
    )


def build_platform(storage: SQLAlchemyStorage, settings: OAuthSettings) -> Starlette:
    """A small brokerage app: the OAuth sub-app plus one protected route."""
    oauth = create_oauth_app(settings=settings, storage=storage)

    async def account(request: Request) -> Response:
        user = request.user
        if not isinstance(user, TokenUser):
            return JSONResponse(
                {"error": "invalid_token", "error_description": "a bearer token is required"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        token = user.token
        return JSONResponse(
            {
                "account_id": str(token.account_id),
                "client_id": token.client_id,
                "scope": " ".join(sorted(token.scopes)),
                "live": token.account_live,
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with storage:
            yield

    return Starlette(
        routes=[Route("/v2/account", account), Mount("/", oauth)],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=BearerTokenBackend(oauth.state.token_verifier),
                on_error=bearer_error_response,
            )
        ],
        lifespan=lifespan,
    )
