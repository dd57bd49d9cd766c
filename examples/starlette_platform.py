"""A brokerage platform on Starlette with the OAuth sub-application mounted.

Run it with ``uvicorn examples.starlette_platform:app`` (SQLite file ``platform.db``), or
``python examples/starlette_platform.py``. Create a partner, a client and accounts with
the storage's admin methods, or start from ``broker-oauth demo`` instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, create_oauth_app
from starlette_broker_oauth.integrations.starlette import (
    BearerTokenBackend,
    TokenUser,
    bearer_error_response,
    requires_token,
)

settings = OAuthSettings(issuer=os.environ.get("BROKER_OAUTH_ISSUER", "http://127.0.0.1:8000"))
storage = SQLAlchemyStorage(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///platform.db"))
oauth = create_oauth_app(settings=settings, storage=storage)


@requires_token("general")
async def account(request: Request) -> Response:
    assert isinstance(request.user, TokenUser)
    token = request.user.token
    return JSONResponse({"account_id": str(token.account_id), "live": token.account_live})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # A mounted app's lifespan does not run: the host enters the storage in its own.
    async with storage:
        yield


app = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/v2/account", account),
        Mount("/", oauth),  # last: it answers every path the platform's routes do not
    ],
    middleware=[
        Middleware(
            AuthenticationMiddleware,
            backend=BearerTokenBackend(oauth.state.token_verifier),
            on_error=bearer_error_response,
        )
    ],
)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
