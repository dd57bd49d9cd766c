"""A brokerage platform on FastAPI: the OAuth sub-app mounted, routes guarded by scope.

Run it with ``uvicorn examples.fastapi_platform:app``; the Swagger UI at ``/docs`` shows an
*Authorize* button with the broker's scopes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Security

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, VerifiedToken, create_oauth_app
from starlette_broker_oauth.integrations.fastapi import BrokerTokenBearer

settings = OAuthSettings(
    issuer=os.environ.get("BROKER_OAUTH_ISSUER", "http://127.0.0.1:8000"),
    scope_descriptions={
        "general": "See your balances, positions and orders",
        "trading": "Place and cancel orders",
        "data": "Market data",
    },
)
storage = SQLAlchemyStorage(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///platform.db"))
oauth = create_oauth_app(settings=settings, storage=storage)
bearer = BrokerTokenBearer(verifier=oauth.state.token_verifier, settings=settings)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with storage:
        yield


app = FastAPI(title="Brokerage", lifespan=lifespan)


@app.get("/v2/account")
async def account(
    token: Annotated[VerifiedToken, Security(bearer, scopes=["general"])],
) -> dict[str, object]:
    return {"account_id": str(token.account_id), "live": token.account_live}


@app.post("/v2/orders")
async def place_order(
    token: Annotated[VerifiedToken, Security(bearer, scopes=["trading"])],
) -> dict[str, str]:
    return {"account_id": str(token.account_id), "status": "accepted"}


app.mount("/", oauth)  # after the platform's routes
