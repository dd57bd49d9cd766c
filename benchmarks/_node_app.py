"""The app each worker of the multi-node benchmark serves (``uvicorn _node_app:app``).

``BENCH_DATABASE_URL`` names the PostgreSQL database (its tables made beforehand: the app
does not migrate), ``BENCH_CACHE_TTL`` the token cache's lifetime in seconds (30 unless
given). Routes: the OAuth sub-app (``/v1/oauth/*``, ``/oauth/*``) and ``/quote``, guarded
by the sub-app's own token check (``oauth.state.token_verifier``, with its cache), which
answers the worker's process id.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, create_oauth_app
from starlette_broker_oauth.integrations.starlette import requires_token

# The library's warnings (the revocation listener's reconnections) and errors, with a level.
logging.basicConfig(
    level=logging.WARNING, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
)
settings = OAuthSettings(
    issuer="https://broker.example",  # TLS ends at the proxy, as in production
    token_cache_ttl=timedelta(seconds=float(os.environ.get("BENCH_CACHE_TTL", "30"))),
)
storage = SQLAlchemyStorage(os.environ["BENCH_DATABASE_URL"], migrate=False)
oauth = create_oauth_app(settings=settings, storage=storage)
PID = os.getpid()


@requires_token("data", verifier=oauth.state.token_verifier)
async def quote(request: Request) -> Response:
    return JSONResponse({"symbol": "AAPL", "bid": 189.5, "ask": 189.52, "pid": PID})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with storage:
        gc.freeze()  # as docs/production.md advises
        yield


app = Starlette(lifespan=lifespan, routes=[Route("/quote", quote), Mount("/", oauth)])
