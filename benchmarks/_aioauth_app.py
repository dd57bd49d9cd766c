"""A competitor baseline: aioauth 2.0.1's ``AuthorizationServer`` behind Starlette, on
``sqlite3``, as its documentation builds one (``examples/fastapi_example.py`` and
``examples/shared/storage.py`` in aliev/aioauth): its storage classes implemented over the
database, its ``Request`` built from the framework's request, its ``Response`` turned back
into one.

``BENCH_AIOAUTH_DATABASE`` names the SQLite file; :func:`seed` creates its tables and rows
from the benchmark's process before uvicorn starts. Routes:

* ``POST /oauth/authorize`` - the authorization endpoint (``response_type=code`` and the
  rest in the query string, as aioauth reads them) for a fixed resource owner: the
  example's login and approval pages are left out, so the request is validated and at
  once finalized (``validate_authorization_request`` then
  ``finalize_authorization_response``); the code comes back in the ``Location`` of a 302;
* ``POST /oauth/token`` - ``create_token_response`` (``authorization_code`` with
  ``client_secret_basic`` and PKCE S256, ``client_credentials``);
* ``/quote`` - the JSON payload behind a bearer token looked up in aioauth's token
  storage (``get_token``; aioauth has no resource-server helper), scope ``data``;
* ``/bare`` - the JSON payload, no check.

Each worker holds one ``AuthorizationServer`` and one connection (the example builds a
server and a database session per request); the storage calls ``sqlite3`` on the event
loop, each statement its own transaction. As in ``_write_app.py``, ``gc.freeze()`` runs
after start-up unless ``BENCH_GC_FREEZE=0``.
"""

from __future__ import annotations

import gc
import hmac
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

from aioauth.collections import HTTPHeaderDict
from aioauth.config import Settings
from aioauth.errors import OAuth2Error
from aioauth.models import AuthorizationCode, Client, Token
from aioauth.requests import Post, Query
from aioauth.requests import Request as OAuthRequest
from aioauth.responses import Response as OAuthResponse
from aioauth.server import AuthorizationServer
from aioauth.storage import BaseStorage
from aioauth.types import CodeChallengeMethod, RequestMethod, TokenType
from aioauth.utils import build_error_response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DATABASE = os.environ.get("BENCH_AIOAUTH_DATABASE", "aioauth.db")
# The benchmark speaks plain HTTP to 127.0.0.1 (TLS would end at a proxy); aioauth refuses
# that unless told (or sent ``X-Forwarded-Proto: https``).
settings = Settings(INSECURE_TRANSPORT=True)
USER = 1  # the resource owner every code is issued for
PAYLOAD = {"symbol": "AAPL", "bid": 189.5, "ask": 189.52, "size": 100}

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    client_secret TEXT,
    grant_types TEXT NOT NULL,
    response_types TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    scope TEXT NOT NULL,
    user_id INTEGER REFERENCES users (id)
);
CREATE TABLE IF NOT EXISTS authorization_codes (
    code TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    response_type TEXT NOT NULL,
    scope TEXT NOT NULL,
    auth_time INTEGER NOT NULL,
    expires_in INTEGER NOT NULL,
    code_challenge TEXT,
    code_challenge_method TEXT,
    nonce TEXT,
    user_id INTEGER REFERENCES users (id)
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    access_token TEXT NOT NULL UNIQUE,
    refresh_token TEXT UNIQUE,
    scope TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_in INTEGER NOT NULL,
    refresh_token_expires_in INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    token_type TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    user_id INTEGER REFERENCES users (id)
);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (each statement its own transaction), on a file in
    WAL mode; a write that finds another process's lock waits up to 5 s (sqlite3's
    default timeout)."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def seed(
    path: str | Path,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    scope: str,
    tokens: Iterable[str] = (),
) -> None:
    """Create the tables, the resource owner, one confidential client and, for each value
    in ``tokens``, a valid access token with ``scope``."""
    connection = connect(path)
    try:
        connection.executescript(SCHEMA)
        connection.execute("INSERT OR IGNORE INTO users (id, username) VALUES (?, ?)", (USER, "u"))
        connection.execute(
            "INSERT INTO clients VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                client_id,
                client_secret,
                "authorization_code,client_credentials",
                "code",
                redirect_uri,
                scope,
                USER,
            ),
        )
        now = int(time.time())
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO tokens (access_token, refresh_token, scope, issued_at, expires_in,"
            " refresh_token_expires_in, client_id, token_type, user_id)"
            " VALUES (?, NULL, ?, ?, ?, ?, ?, 'Bearer', ?)",
            (
                (
                    token,
                    scope,
                    now,
                    settings.TOKEN_EXPIRES_IN,
                    settings.REFRESH_TOKEN_EXPIRES_IN,
                    client_id,
                    USER,
                )
                for token in tokens
            ),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


TOKEN_COLUMNS = (
    "access_token, refresh_token, scope, issued_at, expires_in, refresh_token_expires_in,"
    " client_id, revoked"
)
TOKEN_BY_ACCESS = f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE access_token = ?"  # noqa: S608
TOKEN_BY_REFRESH = f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE refresh_token = ?"  # noqa: S608


class SQLiteStorage(BaseStorage):
    """aioauth's storage interface over one ``sqlite3`` connection, after
    ``examples/shared/storage.py`` (clients, codes and tokens in tables of their own;
    tokens and secrets in clear, as there)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection

    # ClientStorage

    async def get_client(
        self, *, request: OAuthRequest, client_id: str, client_secret: str | None = None
    ) -> Client | None:
        row = self.db.execute(
            "SELECT client_id, client_secret, grant_types, response_types, redirect_uris,"
            " scope FROM clients WHERE client_id = ?",
            (client_id,),
        ).fetchone()
        if row is None:
            return None
        # As the example: a secret given must match the client's, when it has one.
        if (
            client_secret is not None
            and row[1] is not None
            and not hmac.compare_digest(client_secret.encode(), row[1].encode())
        ):
            return None
        return Client(
            client_id=row[0],
            client_secret=row[1] or "",
            grant_types=row[2].split(","),
            response_types=row[3].split(","),
            redirect_uris=row[4].split(","),
            scope=row[5],
        )

    # AuthorizationCodeStorage

    async def create_authorization_code(
        self,
        *,
        request: OAuthRequest,
        client_id: str,
        scope: str,
        response_type: str,
        redirect_uri: str,
        code: str,
        code_challenge_method: CodeChallengeMethod | None = None,
        code_challenge: str | None = None,
        nonce: str | None = None,
    ) -> AuthorizationCode:
        authorization_code = AuthorizationCode(
            code=code,
            client_id=client_id,
            redirect_uri=redirect_uri,
            response_type=response_type,
            scope=scope,
            auth_time=int(time.time()),
            expires_in=request.settings.AUTHORIZATION_CODE_EXPIRES_IN,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            nonce=nonce,
        )
        self.db.execute(
            "INSERT INTO authorization_codes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                code,
                client_id,
                redirect_uri,
                response_type,
                scope,
                authorization_code.auth_time,
                authorization_code.expires_in,
                code_challenge,
                code_challenge_method,
                nonce,
                request.extra.get("user"),
            ),
        )
        return authorization_code

    async def get_authorization_code(
        self, *, request: OAuthRequest, client_id: str, code: str
    ) -> AuthorizationCode | None:
        row = self.db.execute(
            "SELECT code, client_id, redirect_uri, response_type, scope, auth_time, expires_in,"
            " code_challenge, code_challenge_method, nonce, user_id"
            " FROM authorization_codes WHERE code = ? AND client_id = ?",
            (code, client_id),
        ).fetchone()
        if row is None:
            return None
        # aioauth hands create_token the request, not the code: the code's resource owner
        # travels in request.extra (the example loses it: its token request has no session).
        request.extra["user"] = row[10]
        return AuthorizationCode(
            code=row[0],
            client_id=row[1],
            redirect_uri=row[2],
            response_type=row[3],
            scope=row[4],
            auth_time=row[5],
            expires_in=row[6],
            code_challenge=row[7],
            code_challenge_method=row[8],
            nonce=row[9],
        )

    async def delete_authorization_code(
        self, *, request: OAuthRequest, client_id: str, code: str
    ) -> None:
        self.db.execute(
            "DELETE FROM authorization_codes WHERE code = ? AND client_id = ?", (code, client_id)
        )

    # TokenStorage

    async def create_token(
        self,
        *,
        request: OAuthRequest,
        client_id: str,
        scope: str,
        access_token: str,
        refresh_token: str | None = None,
    ) -> Token:
        token = Token(
            access_token=access_token,
            refresh_token=refresh_token,
            scope=scope,
            issued_at=int(time.time()),
            expires_in=request.settings.TOKEN_EXPIRES_IN,
            refresh_token_expires_in=request.settings.REFRESH_TOKEN_EXPIRES_IN,
            client_id=client_id,
        )
        self.db.execute(
            "INSERT INTO tokens (access_token, refresh_token, scope, issued_at, expires_in,"
            " refresh_token_expires_in, client_id, token_type, revoked, user_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.access_token,
                token.refresh_token,
                token.scope,
                token.issued_at,
                token.expires_in,
                token.refresh_token_expires_in,
                token.client_id,
                token.token_type,
                token.revoked,
                request.extra.get("user"),
            ),
        )
        return token

    async def get_token(
        self,
        *,
        request: OAuthRequest,
        client_id: str,
        token_type: TokenType | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
    ) -> Token | None:
        # As the example: looked up by the refresh token or the access token alone.
        if token_type == "refresh_token":
            sql, value = TOKEN_BY_REFRESH, refresh_token
        else:
            sql, value = TOKEN_BY_ACCESS, access_token
        row = self.db.execute(sql, (value,)).fetchone()
        if row is None:
            return None
        return Token(
            access_token=row[0],
            refresh_token=row[1],
            scope=row[2],
            issued_at=row[3],
            expires_in=row[4],
            refresh_token_expires_in=row[5],
            client_id=row[6],
            revoked=bool(row[7]),
        )

    async def revoke_token(
        self,
        *,
        request: OAuthRequest,
        client_id: str,
        refresh_token: str | None = None,
        token_type: TokenType | None = None,
        access_token: str | None = None,
    ) -> None:
        if token_type == "refresh_token":
            self.db.execute(
                "UPDATE tokens SET revoked = 1 WHERE refresh_token = ?", (refresh_token,)
            )
        else:
            self.db.execute("UPDATE tokens SET revoked = 1 WHERE access_token = ?", (access_token,))


server: list[AuthorizationServer] = []


async def to_request(request: Request, user: int | None = None) -> OAuthRequest:
    """The example's ``to_request``; the form is parsed with the standard library (python-
    multipart, which Starlette's ``request.form()`` needs, is not among the dependencies)
    and only aioauth's own fields are kept (``Post(**form)`` refuses any other)."""
    body = (await request.body()).decode()
    form = {k: v for k, v in parse_qsl(body) if k in Post.__dataclass_fields__}
    query = {k: v for k, v in request.query_params.items() if k in Query.__dataclass_fields__}
    return OAuthRequest(
        headers=HTTPHeaderDict(**request.headers),  # type: ignore[no-untyped-call]
        method=cast(RequestMethod, request.method),
        post=Post(**cast(dict[str, Any], form)),
        query=Query(**cast(dict[str, Any], query)),
        settings=settings,
        url=str(request.url),
        extra={"user": user},
    )


def to_response(response: OAuthResponse) -> Response:
    """The example's ``to_response``."""
    return Response(
        content=json.dumps(response.content),
        headers=dict(response.headers),
        status_code=response.status_code,
    )


async def authorize(request: Request) -> Response:
    """The example's ``/oauth/authorize``, then its ``/approve`` for a resource owner who
    is logged in and approves."""
    oauth_request = await to_request(request, user=USER)
    try:
        state = await server[0].validate_authorization_request(oauth_request)
    except OAuth2Error as exc:
        return to_response(build_error_response(exc=exc, request=oauth_request))
    return to_response(await server[0].finalize_authorization_response(state))


async def token(request: Request) -> Response:
    """The example's ``/oauth/tokenize``."""
    return to_response(await server[0].create_token_response(await to_request(request)))


async def quote(request: Request) -> Response:
    """The payload for a bearer token that aioauth's storage knows, live, with ``data``."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    found = None
    if scheme.lower() == "bearer" and value:
        found = await server[0].storage.get_token(
            request=OAuthRequest(method="GET", settings=settings),
            client_id="",
            token_type="access_token",
            access_token=value,
        )
    if found is None or found.revoked or found.is_expired or "data" not in found.scope.split():
        return JSONResponse(
            {"error": "invalid_token"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return JSONResponse(PAYLOAD)


async def bare(request: Request) -> Response:
    return JSONResponse(PAYLOAD)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    connection = connect(DATABASE)
    server.append(AuthorizationServer(storage=SQLiteStorage(connection)))
    if os.environ.get("BENCH_GC_FREEZE", "1") == "1":
        gc.freeze()
    try:
        yield
    finally:
        server.clear()
        connection.close()


app = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/bare", bare, methods=["GET", "POST"]),
        Route("/quote", quote),
        Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
        Route("/oauth/token", token, methods=["POST"]),
    ],
)
