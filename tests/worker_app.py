"""A platform worker for the multi-process tests: ``uvicorn tests.worker_app:app``.

Configured by ``WORKER_DATABASE_URL``, ``WORKER_TABLE_PREFIX`` and ``WORKER_CACHE_TTL``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, create_oauth_app
from starlette_broker_oauth.integrations.starlette import TokenUser, requires_token

settings = OAuthSettings(
    issuer="http://127.0.0.1",
    token_cache_ttl=timedelta(seconds=float(os.environ.get("WORKER_CACHE_TTL", "0"))),
)
storage = SQLAlchemyStorage(
    os.environ["WORKER_DATABASE_URL"],
    table_prefix=os.environ.get("WORKER_TABLE_PREFIX", "oauth_"),
    migrate=False,
)
oauth = create_oauth_app(settings=settings, storage=storage)


@requires_token(verifier=oauth.state.token_verifier)
async def account(request: Request) -> Response:
    assert isinstance(request.user, TokenUser)
    return JSONResponse({"account_id": str(request.user.token.account_id), "pid": os.getpid()})


async def disconnect(request: Request) -> Response:
    """What a platform's own admin route does: cut one app, or a closed account's every app."""
    body = await request.json()
    account_id = uuid.UUID(body["account_id"])
    apps = oauth.state.connected_apps
    if body.get("client_id"):
        count = await apps.disconnect(account_id, body["client_id"])
    else:
        count = await apps.disconnect_all(account_id)
    return JSONResponse({"revoked": count})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with storage:
        yield


app = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/v2/account", account),
        Route("/admin/disconnect", disconnect, methods=["POST"]),
        Mount("/", oauth),
    ],
)
