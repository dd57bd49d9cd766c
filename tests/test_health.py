"""Liveness and readiness over HTTP: which check fails, and an answer within the bound
whatever the database does (up, stopped, hung, at an older schema, its listener cut)."""

from __future__ import annotations

import contextlib
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.routing import Mount

from starlette_broker_oauth import (
    MemoryStorage,
    OAuthSettings,
    SQLAlchemyStorage,
    Storage,
    StorageUnavailable,
    create_oauth_app,
    health_routes,
)

from .cluster import private_cluster
from .conftest import ISSUER, POSTGRES_URL, drop_tables, free_port, open_storage

pytestmark = pytest.mark.anyio

needs_postgres = pytest.mark.skipif(POSTGRES_URL is None, reason="needs PostgreSQL")
needs_pg_ctl = pytest.mark.skipif(
    POSTGRES_URL is None or shutil.which("pg_ctl") is None,
    reason="needs PostgreSQL server binaries (scripts/with-postgres)",
)

VERSIONS = (
    Path(__file__).resolve().parents[1]
    / "src/starlette_broker_oauth/storage/sqlalchemy/migrations/versions"
)
# The revisions the package ships, read from its migration scripts.
SHIPPED = sorted(
    found[1]
    for script in VERSIONS.glob("[0-9]*.py")
    if (found := re.search(r'^revision = "(\w+)"', script.read_text(), re.M)) is not None
)
EXPECTED = SHIPPED[-1]

NO_LISTENER = {
    "status": "skipped",
    "reason": "no revocation listener: no token cache, or one process",
}
NOT_ASKED = {"status": "skipped", "reason": "the database did not answer"}
SCHEMA_OK = {"status": "ok", "revision": EXPECTED, "expected": EXPECTED}
UP = {"database": {"status": "ok"}, "schema": SCHEMA_OK, "listener": NO_LISTENER}


@asynccontextmanager
async def probed(
    storage: Storage, *, bound: float = 1.0, cache: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """The platform's app with the health routes, as docs/health.md mounts them."""
    ttl = timedelta(seconds=30) if cache else timedelta(0)
    oauth = create_oauth_app(
        settings=OAuthSettings(issuer=ISSUER, token_cache_ttl=ttl), storage=storage
    )
    app = Starlette(routes=[*health_routes(oauth, timeout=bound), Mount("/", oauth)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER, timeout=30) as http:
        yield http


async def readiness(http: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = await http.get("/healthz/ready")
    return response, time.monotonic() - start


def assert_ready(response: httpx.Response, checks: dict[str, Any]) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert "retry-after" not in response.headers
    assert response.json() == {"status": "ready", "checks": checks}


def assert_not_ready(response: httpx.Response, checks: dict[str, Any]) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"status": "not_ready", "checks": checks}


async def assert_alive(http: httpx.AsyncClient) -> None:
    live = await http.get("/healthz/live")
    assert live.status_code == 200
    assert live.json() == {"status": "alive"}


async def ready_within(http: httpx.AsyncClient, seconds: float) -> httpx.Response:
    """The first ready answer, asking until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        response, _ = await readiness(http)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await anyio.sleep(0.05)


async def test_ready_on_every_backend(backend: str, tmp_path: Path) -> None:
    async with open_storage(backend, tmp_path) as storage, probed(storage) as http:
        await assert_alive(http)
        response, _ = await readiness(http)
        schema = (
            {"status": "skipped", "reason": "MemoryStorage has no schema to check"}
            if backend == "memory"
            else SCHEMA_OK
        )
        assert_ready(
            response, {"database": {"status": "ok"}, "schema": schema, "listener": NO_LISTENER}
        )


async def test_a_storage_without_probes_is_reported_as_such() -> None:
    class PlatformStorage(MemoryStorage):
        ping = Storage.ping  # the contract's default: no probe
        schema_state = Storage.schema_state

    async with PlatformStorage() as storage, probed(storage) as http:
        response, _ = await readiness(http)
    skipped = {"status": "skipped", "reason": "PlatformStorage offers no probe"}
    no_schema = {"status": "skipped", "reason": "PlatformStorage has no schema to check"}
    assert_ready(response, {"database": skipped, "schema": no_schema, "listener": NO_LISTENER})


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
async def test_not_ready_at_an_older_schema_revision(kind: str, tmp_path: Path) -> None:
    """A storage opened without migrating, on tables one revision behind: not ready, and
    the answer names both revisions."""
    url = f"sqlite:///{tmp_path / 'oauth.db'}" if kind == "sqlite" else POSTGRES_URL
    assert url is not None
    storage = SQLAlchemyStorage(url, table_prefix=f"h{uuid.uuid4().hex[:8]}_", migrate=False)
    try:
        async with storage, probed(storage) as http:
            await storage.upgrade(SHIPPED[-2])
            response, _ = await readiness(http)
            behind = {"status": "behind", "revision": SHIPPED[-2], "expected": EXPECTED}
            assert_not_ready(
                response, {"database": {"status": "ok"}, "schema": behind, "listener": NO_LISTENER}
            )
            await storage.upgrade()
            response, _ = await readiness(http)
            assert_ready(response, UP)
    finally:
        await drop_tables(storage)


@pytest.mark.parametrize(
    ("revision", "status"), [(None, "behind"), ("ffff_from_a_newer_version", "unknown")]
)
async def test_not_ready_without_tables_or_at_a_revision_unknown_here(
    revision: str | None, status: str, tmp_path: Path
) -> None:
    storage = SQLAlchemyStorage(f"sqlite:///{tmp_path / 'oauth.db'}", migrate=revision is not None)
    async with storage, probed(storage) as http:
        if revision is not None:
            async with storage.engine.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE oauth_alembic_version SET version_num = :v"), {"v": revision}
                )
        response, _ = await readiness(http)
    schema = {"status": status, "revision": revision, "expected": EXPECTED}
    assert_not_ready(
        response, {"database": {"status": "ok"}, "schema": schema, "listener": NO_LISTENER}
    )


@needs_pg_ctl
async def test_not_ready_while_the_database_is_down() -> None:
    """The database stopped: not ready at once, the database check failed, the schema not
    asked; the worker is still alive; ready again once the database is back."""
    with private_cluster() as cluster:
        async with SQLAlchemyStorage(cluster.url) as storage, probed(storage) as http:
            assert_ready((await readiness(http))[0], UP)
            await anyio.to_thread.run_sync(cluster.stop)
            refused, _ = await readiness(http)
            assert_not_ready(
                refused,
                {
                    "database": {"status": "failed", "reason": "ConnectionRefusedError"},
                    "schema": NOT_ASKED,
                    "listener": NO_LISTENER,
                },
            )
            # The worker now knows the database is away: readiness, like every request,
            # answers without a connection attempt.
            away, _ = await readiness(http)
            assert away.status_code == 503
            reason = away.json()["checks"]["database"]["reason"]
            assert re.fullmatch(r"the database has been unreachable for \d+\.\d s", reason)
            await assert_alive(http)
            await anyio.to_thread.run_sync(cluster.start)
            assert_ready(await ready_within(http, 5.0), UP)


@needs_pg_ctl
async def test_readiness_answers_within_its_bound_while_the_database_hangs() -> None:
    """Every backend terminated and the postmaster frozen: no pooled connection answers and
    a new one would wait out the driver's connect timeout. Readiness answers within its
    bound, with ``timeout``; once a request has waited out the connect timeout, at once
    with ``failed``; ready again once the postmaster runs."""
    with private_cluster() as cluster:
        storage = SQLAlchemyStorage(cluster.url, engine_options={"connect_args": {"timeout": 2}})
        async with storage, probed(storage, bound=0.5) as http:
            assert_ready((await readiness(http))[0], UP)
            await cluster.terminate_backends()
            with cluster.frozen():
                for _ in range(2):
                    hung, took = await readiness(http)
                    assert took < 1.5
                    assert_not_ready(
                        hung,
                        {
                            "database": {"status": "timeout", "after": 0.5},
                            "schema": NOT_ASKED,
                            "listener": NO_LISTENER,
                        },
                    )
                await assert_alive(http)
                with pytest.raises(StorageUnavailable):
                    await storage.get_client("a request")  # waits out the connect timeout
                away, took = await readiness(http)
                assert took < 0.5
                assert away.json()["checks"]["database"]["status"] == "failed"
            assert_ready(await ready_within(http, 5.0), UP)


class Proxy:
    """A TCP proxy between the storage and PostgreSQL that can cut the connection holding
    ``LISTEN``, and every later one that sends it, while the others carry on."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.refusing = False
        self.listening: set[anyio.CancelScope] = set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self.port = free_port()
        async with await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=self.port
        ) as listener:
            task_status.started()
            await listener.serve(self.link)

    def refuse_listen(self) -> None:
        self.refusing = True
        for scope in self.listening:
            scope.cancel()

    async def link(self, client: anyio.abc.SocketStream) -> None:
        with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            async with (
                client,
                await anyio.connect_tcp("127.0.0.1", self.target) as server,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(self.pipe, server, client, tg.cancel_scope)
                async for data in client:
                    if b"LISTEN " in data:
                        if self.refusing:
                            break
                        self.listening.add(tg.cancel_scope)
                    await server.send(data)
                tg.cancel_scope.cancel()

    @staticmethod
    async def pipe(
        source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, link: anyio.CancelScope
    ) -> None:
        with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for data in source:
                await sink.send(data)
        link.cancel()


@needs_postgres
async def test_not_ready_while_the_listener_is_down() -> None:
    """PostgreSQL with a token cache: while the ``LISTEN`` connection is down (cut, and
    cut again each time it comes back), not ready, though the database answers; ready
    again once it listens."""
    assert POSTGRES_URL is not None
    url = sa.make_url(POSTGRES_URL)
    proxy = Proxy(url.port or 5432)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.run)
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        storage = SQLAlchemyStorage(proxied, table_prefix=f"h{uuid.uuid4().hex[:8]}_")
        try:
            async with storage, probed(storage, cache=True) as http:
                listening = {
                    "database": {"status": "ok"},
                    "schema": SCHEMA_OK,
                    "listener": {"status": "ok"},
                }
                assert_ready(await ready_within(http, 5.0), listening)
                proxy.refuse_listen()
                deadline = time.monotonic() + 5.0
                while (response := (await readiness(http))[0]).status_code == 200:
                    assert time.monotonic() < deadline, "the listener's loss went unnoticed"
                    await anyio.sleep(0.02)
                assert_not_ready(
                    response,
                    {
                        "database": {"status": "ok"},
                        "schema": SCHEMA_OK,
                        "listener": {"status": "disconnected"},
                    },
                )
                proxy.refusing = False
                assert_ready(await ready_within(http, 10.0), listening)
        finally:
            await drop_tables(storage)
            tg.cancel_scope.cancel()
