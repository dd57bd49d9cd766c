"""The app the DPoP benchmark serves; ``BENCH_MODE`` picks the route's guard.

* ``bare``          - the JSON route, no check;
* ``bearer-cached`` - ``@requires_token(verifier=...)``, cache on, a bearer token;
* ``dpop-cached``   - the same guard and cache, a DPoP-bound token with a proof per
                      request (its ``jti`` recorded once in the SQLite grant store).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, TokenVerifier
from starlette_broker_oauth.integrations.starlette import requires_token

MODE = os.environ.get("BENCH_MODE", "bare")
DATABASE = os.environ.get("BENCH_DATABASE", "bench.db")
# The origin the client addresses: a proof's htu is checked against it, not the Host header.
ISSUER = os.environ.get("BENCH_ISSUER", "http://127.0.0.1")
settings = OAuthSettings(issuer=ISSUER, token_cache_ttl=timedelta(seconds=60))
storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{DATABASE}")
verifier = TokenVerifier(
    grants=storage, clients=storage, settings=settings, cache_ttl=settings.token_cache_ttl
)
PAYLOAD = {"symbol": "AAPL", "bid": 189.5, "ask": 189.52, "size": 100}


async def bare(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


@requires_token("data", verifier=verifier)
async def guarded(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with storage:
        yield


app = Starlette(
    lifespan=lifespan,
    routes=[Route("/quote", bare if MODE == "bare" else guarded), Route("/health", bare)],
)
