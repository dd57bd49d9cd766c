"""The app the write-path benchmark serves (``uvicorn _write_app:app --workers 2``).

``BENCH_DATABASE_URL`` names the storage. Routes: ``/bare`` (static JSON, the baseline),
the OAuth sub-app (``/v1/oauth/*``, ``/oauth/*``), ``/quote`` guarded by the token check
without a cache and ``/quote-cached`` with it. ``BENCH_GC_FREEZE=0`` leaves out the
``gc.freeze()`` after start-up that docs/production.md advises.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, TokenVerifier, create_oauth_app
from starlette_broker_oauth.integrations.starlette import requires_token

settings = OAuthSettings(issuer="https://broker.example")  # TLS ends at the proxy, as in production
storage = SQLAlchemyStorage(os.environ["BENCH_DATABASE_URL"], migrate=False)
oauth = create_oauth_app(settings=settings, storage=storage)
uncached = TokenVerifier(grants=storage, clients=storage)
cached = TokenVerifier(grants=storage, clients=storage, cache_ttl=timedelta(seconds=30))

PAYLOAD = {"symbol": "AAPL", "bid": 189.5, "ask": 189.52, "size": 100}


async def bare(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


@requires_token("data", verifier=uncached)
async def quote(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


@requires_token("data", verifier=cached)
async def quote_cached(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with storage:
        if os.environ.get("BENCH_GC_FREEZE", "1") == "1":
            # As docs/production.md advises: what start-up built is never collected.
            gc.freeze()
        yield


app = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/bare", bare, methods=["GET", "POST"]),
        Route("/quote", quote),
        Route("/quote-cached", quote_cached),
        Mount("/", oauth),
    ],
)
