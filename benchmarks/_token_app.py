"""The app the token-check benchmark serves; ``BENCH_MODE`` picks how the route is guarded.

* ``bare``       - the JSON route, no check at all;
* ``handwritten``- a hand-written handler doing one SQLite lookup per request (reference);
* ``protected``  - ``AuthenticationMiddleware`` with the library's backend and
                   ``@requires_token``, tokens in SQLite, no cache;
* ``cached``     - the same with the verifier's cache on (``BENCH_CACHE_TTL`` seconds);
* ``route``      - ``@requires_token(verifier=...)`` on the route alone, no middleware,
                   no cache;
* ``route-cached`` - the same with the cache on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import aiosqlite
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, TokenVerifier
from starlette_broker_oauth.integrations.starlette import (
    BearerTokenBackend,
    bearer_error_response,
    requires_token,
)

MODE = os.environ.get("BENCH_MODE", "bare")
DATABASE = os.environ.get("BENCH_DATABASE", "bench.db")
settings = OAuthSettings(
    issuer="http://127.0.0.1",
    token_cache_ttl=timedelta(seconds=float(os.environ.get("BENCH_CACHE_TTL", "0"))),
)
storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{DATABASE}")
verifier = TokenVerifier(
    grants=storage,
    clients=storage,
    cache_ttl=settings.token_cache_ttl if MODE.endswith("cached") else timedelta(0),
)
connection: list[aiosqlite.Connection] = []

PAYLOAD = {"symbol": "AAPL", "bid": 189.5, "ask": 189.52, "size": 100}


async def bare(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


@requires_token("data")
async def protected(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


@requires_token("data", verifier=verifier)
async def route(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


async def handwritten(request: Request) -> Response:
    header = request.headers.get("authorization", "")
    token_hash = hashlib.sha256(header[7:].encode()).hexdigest()
    cursor = await connection[0].execute(
        "SELECT scope FROM oauth_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        (token_hash,),
    )
    row = await cursor.fetchone()
    if row is None:
        return JSONResponse({"error": "invalid_token"}, status_code=401)
    return JSONResponse(PAYLOAD)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with storage:
        if MODE == "handwritten":
            connection.append(await aiosqlite.connect(DATABASE))
        yield
        for conn in connection:
            await conn.close()


guarded = MODE in {"protected", "cached"}
endpoint = {
    "bare": bare,
    "handwritten": handwritten,
    "protected": protected,
    "cached": protected,
    "route": route,
    "route-cached": route,
}[MODE]
app = Starlette(
    lifespan=lifespan,
    routes=[Route("/quote", endpoint)],
    middleware=[
        Middleware(
            AuthenticationMiddleware,
            backend=BearerTokenBackend(verifier),
            on_error=bearer_error_response,
        )
    ]
    if guarded
    else [],
)
