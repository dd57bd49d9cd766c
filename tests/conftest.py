"""Shared fixtures: a seeded platform on every storage backend, reached through HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import (
    Client,
    ClientRepository,
    ManagedStorage,
    MemoryStorage,
    OAuthSettings,
    Partner,
    PartnerRepository,
    SQLAlchemyStorage,
    Storage,
    create_oauth_app,
)
from starlette_broker_oauth.clock import ManualClock
from starlette_broker_oauth.integrations.starlette import (
    BearerTokenBackend,
    TokenUser,
    bearer_error_response,
)
from starlette_broker_oauth.web.hosted import HostedConsent, SessionAccount, SessionUser

pytest_plugins = ["pytester"]

POSTGRES_URL = os.environ.get("BROKER_OAUTH_TEST_POSTGRES_URL")
BACKENDS = ["memory", "sqlite"] + (["postgres"] if POSTGRES_URL else [])
ISSUER = "https://broker.test"
REDIRECT_URI = "https://app.example.com/callback"


TRIO = "memory+trio"  # the memory backend's run of a test, on trio instead of asyncio


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """asyncio, except in the memory backend's trio run of a ``backend``-parametrized test
    (the SQL drivers, aiosqlite and asyncpg, run on asyncio only)."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == TRIO:
        return "trio"
    return "asyncio"


def new_storage(kind: str, tmp_path: Path) -> ManagedStorage:
    """A fresh, empty storage of the given kind, not yet entered. On PostgreSQL its tables
    get a prefix of their own; :func:`drop_tables` removes them."""
    if kind == "memory":
        return MemoryStorage()
    if kind == "sqlite":
        return SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path / 'oauth.db'}")
    assert POSTGRES_URL is not None
    return SQLAlchemyStorage(POSTGRES_URL, table_prefix=f"t{uuid.uuid4().hex[:10]}_")


async def drop_tables(storage: Storage) -> None:
    if isinstance(storage, SQLAlchemyStorage) and storage.url.get_backend_name() == "postgresql":
        async with storage, storage.engine.begin() as conn:
            await conn.run_sync(storage.metadata.drop_all)
            await conn.exec_driver_sql(
                f"DROP TABLE IF EXISTS {storage.table_prefix}alembic_version"
            )


@asynccontextmanager
async def open_storage(kind: str, tmp_path: Path) -> AsyncIterator[ManagedStorage]:
    """A fresh, empty storage of the given kind, entered."""
    storage = new_storage(kind, tmp_path)
    try:
        async with storage:
            yield storage
    finally:
        await drop_tables(storage)


@dataclass
class Platform:
    """A seeded brokerage platform with the OAuth sub-app mounted."""

    kind: str
    storage: ManagedStorage
    settings: OAuthSettings
    app: Starlette
    http: httpx.AsyncClient
    partner: tuple[str, str]
    client_id: str
    client_secret: str
    paper_account: uuid.UUID
    live_account: uuid.UUID
    clock: ManualClock
    redirect_uri: str = REDIRECT_URI
    oauth: Starlette | None = None

    def grant_body(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "scope": "general trading",
            "account_id": str(self.paper_account),
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    async def authorize(self, **overrides: Any) -> httpx.Response:
        return await self.http.post(
            "/v1/oauth/authorize", json=self.grant_body(**overrides), auth=self.partner
        )

    async def code(self, **overrides: Any) -> str:
        response = await self.authorize(**overrides)
        assert response.status_code == 200, response.text
        code: str = response.json()["code"]
        return code

    async def exchange(
        self, code: str, *, method: str = "client_secret_basic", **extra: str
    ) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        data.update(extra)
        if method == "client_secret_basic":
            return await self.http.post(
                "/oauth/token", data=data, auth=(self.client_id, self.client_secret)
            )
        data |= {"client_id": self.client_id, "client_secret": self.client_secret}
        return await self.http.post("/oauth/token", data=data)

    async def account(self, token: str) -> httpx.Response:
        return await self.http.get("/v2/account", headers={"Authorization": f"Bearer {token}"})


def build_platform(
    storage: Storage, settings: OAuthSettings, clock: ManualClock | None = None
) -> Starlette:
    """The platform app the way the README tells a user to build it (with a clock that
    tests move instead of sleeping)."""
    oauth = create_oauth_app(settings=settings, storage=storage, clock=clock)

    async def account(request: Request) -> Response:
        if not isinstance(request.user, TokenUser):
            return JSONResponse(
                {"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        token = request.user.token
        return JSONResponse(
            {
                "account_id": str(token.account_id),
                "client_id": token.client_id,
                "scope": " ".join(sorted(token.scopes)),
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with storage:
            yield

    return Starlette(
        lifespan=lifespan,
        routes=[Route("/v2/account", account), Mount("/", oauth)],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=BearerTokenBackend(oauth.state.token_verifier),
                on_error=bearer_error_response,
            )
        ],
    )


async def seed_platform(
    kind: str, storage: ManagedStorage, settings: OAuthSettings, base_url: str = ISSUER
) -> Platform:
    creds = await storage.create_client(
        name="TradingApp",
        description="Sample description",
        url="https://app.example.com",
        terms_of_use="https://app.example.com/tos",
        privacy_policy="https://app.example.com/privacy",
        redirect_uris=[REDIRECT_URI, "https://app.example.com/other"],
    )
    partner = await storage.create_partner(name="Correspondent")
    await storage.allow_partner_client(partner.key_id, creds.client_id)
    paper = await storage.create_account(live=False)
    live = await storage.create_account(live=True)
    clock = ManualClock()
    app = build_platform(storage, settings, clock)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
    return Platform(
        kind=kind,
        storage=storage,
        settings=settings,
        app=app,
        http=http,
        partner=(partner.key_id, partner.secret),
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        paper_account=paper.account_id,
        live_account=live.account_id,
        clock=clock,
    )


@pytest.fixture(params=[BACKENDS[0], TRIO, *BACKENDS[1:]])
def backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return "memory" if kind == TRIO else kind


@pytest.fixture
def settings() -> OAuthSettings:
    return OAuthSettings(issuer=ISSUER, authorization_endpoint="https://partner.example/consent")


@pytest.fixture
async def platform(
    backend: str, settings: OAuthSettings, tmp_path: Path
) -> AsyncIterator[Platform]:
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_platform(backend, storage, settings)
        async with world.http:
            yield world


def pkce_pair() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: Starlette, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a loopback port in a thread; yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def worker_processes(n: int, env: dict[str, str]) -> Iterator[list[str]]:
    """``n`` uvicorn processes of ``tests.worker_app`` (configured by ``env``) on their
    own loopback ports; their base URLs once each answers."""
    root = Path(__file__).parent.parent
    ports = [free_port() for _ in range(n)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.worker_app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=root,
            env=os.environ | env,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 30
        for url in urls:
            while True:
                assert time.monotonic() < deadline, "workers did not start"
                try:
                    httpx.get(url + "/.well-known/oauth-authorization-server", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


class CookieSession:
    """A stand-in for the platform's login: the ``session`` cookie names the user's
    accounts, comma-separated."""

    async def current_user(self, request: Request) -> SessionUser | None:
        value = request.cookies.get("session")
        try:
            ids = [uuid.UUID(part) for part in value.split(",")] if value else []
        except ValueError:
            return None
        if not ids:
            return None
        return SessionUser(
            name="Test Trader",
            accounts=tuple(SessionAccount(account_id=i, label=f"Account {i.hex[:4]}") for i in ids),
        )

    def login_url(self, request: Request) -> str:
        return "/login?next=" + quote(str(request.url), safe="")

    def switch_user_url(self, request: Request) -> str:
        return "/logout?next=" + quote(str(request.url), safe="")


CONSENT_SECRET = "consent-signing-key-" + "k" * 32


def full_settings(**overrides: Any) -> OAuthSettings:
    """Settings with refresh tokens on."""
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "access_token_lifetime": timedelta(minutes=15),
        "refresh_token_lifetime": timedelta(days=30),
    }
    values.update(overrides)
    return OAuthSettings(**values)


async def seed_full_platform(
    kind: str,
    storage: ManagedStorage,
    settings: OAuthSettings,
    *,
    events: list[Any] | None = None,
    consent: HostedConsent | None = None,
) -> Platform:
    """A platform with hosted consent and an event listener."""
    world = await seed_platform(kind, storage, settings)
    await world.http.aclose()
    consent = consent or HostedConsent(session=CookieSession(), secret_key=CONSENT_SECRET)
    oauth = create_oauth_app(
        settings=settings,
        storage=storage,
        consent=consent,
        on_event=None if events is None else events.append,
        clock=world.clock,
    )

    async def account(request: Request) -> Response:
        if not isinstance(request.user, TokenUser):
            return JSONResponse(
                {"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return JSONResponse({"account_id": str(request.user.token.account_id)})

    world.app = Starlette(
        routes=[Route("/v2/account", account), Mount("/", oauth)],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=BearerTokenBackend(oauth.state.token_verifier),
                on_error=bearer_error_response,
            )
        ],
    )
    world.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=world.app), base_url=ISSUER)
    world.oauth = oauth
    return world


@pytest.fixture
async def full(backend: str, tmp_path: Path) -> AsyncIterator[Platform]:
    """A platform with refresh tokens and hosted consent on."""
    async with open_storage(backend, tmp_path) as storage:
        world = await seed_full_platform(backend, storage, full_settings())
        async with world.http:
            yield world


class FailingClients(ClientRepository):
    """A client repository whose database is broken (``error`` on every call)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get_client(self, client_id: str) -> Client | None:
        raise self.error


class FailingPartners(PartnerRepository):
    """A partner repository whose database is broken."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def get_partner(self, key_id: str) -> Partner | None:
        raise self.error

    async def is_client_allowed(self, partner_id: str, client_id: str) -> bool:
        raise self.error

    async def account_owner(self, account_id: uuid.UUID) -> str | None:
        raise self.error

    async def partner_count(self) -> int:
        raise self.error
