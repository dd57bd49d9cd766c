"""PostgreSQL goes away mid-traffic and comes back: 503s in the documented shapes, never a
500 or a hang, service back without a restart, and no row behind a failed answer. While it
is away a worker answers at once, after the first failure it sees."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
import sqlalchemy as sa

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, StorageUnavailable
from starlette_broker_oauth.security import hash_secret

from .cluster import Cluster, private_cluster
from .conftest import ISSUER, POSTGRES_URL, build_platform

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        POSTGRES_URL is None or shutil.which("pg_ctl") is None,
        reason="needs PostgreSQL server binaries (scripts/with-postgres)",
    ),
]


async def test_database_outage(tmp_path: Path) -> None:
    with private_cluster() as cluster:
        storage = SQLAlchemyStorage(cluster.url, table_prefix=f"f{uuid.uuid4().hex[:6]}_")
        async with storage:
            client = await storage.create_client(name="App", redirect_uris=["https://a/cb"])
            partner = await storage.create_partner(name="P")
            await storage.allow_partner_client(partner.key_id, client.client_id)
            account = await storage.create_account()
            settings = OAuthSettings(issuer=ISSUER)
            app = build_platform(storage, settings)
            body = {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "redirect_uri": "https://a/cb",
                "scope": "general",
                "account_id": str(account.account_id),
            }
            issued: list[str] = []
            failed = 0
            statuses: dict[str, list[int]] = {"issue": [], "check": [], "exchange": []}
            phase = {"down": False, "back_at": 0.0}
            after_restart: list[int] = []
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER, timeout=30) as http:

                async def traffic(deadline: float) -> None:
                    nonlocal failed
                    while time.monotonic() < deadline:
                        response = await http.post(
                            "/v1/oauth/token", json=body, auth=(partner.key_id, partner.secret)
                        )
                        statuses["issue"].append(response.status_code)
                        if response.status_code == 200:
                            issued.append(response.json()["access_token"])
                            if phase["back_at"]:
                                after_restart.append(200)
                        else:
                            failed += 1
                            assert response.json() == {
                                "code": 50310000,
                                "message": "service temporarily unavailable",
                            }
                        if issued:
                            check = await http.get(
                                "/v2/account", headers={"Authorization": f"Bearer {issued[-1]}"}
                            )
                            statuses["check"].append(check.status_code)
                            if check.status_code == 503:
                                assert check.json()["error"] == "temporarily_unavailable"
                        exchange = await http.post(
                            "/oauth/token",
                            data={
                                "grant_type": "authorization_code",
                                "code": "x",
                                "redirect_uri": "https://a/cb",
                            },
                            auth=(client.client_id, client.client_secret),
                        )
                        statuses["exchange"].append(exchange.status_code)
                        await anyio.sleep(0.005)

                async def outage() -> None:
                    await anyio.sleep(1.0)
                    await anyio.to_thread.run_sync(cluster.stop)
                    phase["down"] = True
                    await anyio.sleep(1.5)
                    await anyio.to_thread.run_sync(cluster.start)
                    phase["back_at"] = time.monotonic()

                start = time.monotonic()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(outage)
                    tg.start_soon(traffic, start + 9.0)
                    tg.start_soon(traffic, start + 9.0)

            assert set(statuses["issue"]) == {200, 503}, statuses["issue"]
            assert set(statuses["check"]) <= {200, 503}
            assert 503 in statuses["check"]
            assert set(statuses["exchange"]) <= {400, 503}
            assert failed > 0
            assert after_restart, "service did not come back by itself"
            # Every token a client received exists; none behind a failed answer.
            table = storage.metadata.tables[f"{storage.table_prefix}tokens"]
            async with storage.engine.connect() as conn:
                stored = set((await conn.execute(sa.select(table.c.token_hash))).scalars())
            assert stored == {hash_secret(t) for t in issued}


@dataclass
class Traffic:
    """A platform on a cluster, and one request of each face that needs the database."""

    storage: SQLAlchemyStorage
    http: httpx.AsyncClient
    body: dict[str, str]
    partner: tuple[str, str]
    client: tuple[str, str]
    token: str

    async def issue(self) -> httpx.Response:
        """A partner endpoint."""
        return await self.http.post("/v1/oauth/token", json=self.body, auth=self.partner)

    async def exchange(self) -> httpx.Response:
        """A standard endpoint (client authentication reads the client)."""
        return await self.http.post(
            "/oauth/token",
            data={"grant_type": "authorization_code", "code": "x", "redirect_uri": "https://a/cb"},
            auth=self.client,
        )

    async def check(self) -> httpx.Response:
        """A protected route of the platform (no token cache: each check reads the token)."""
        return await self.http.get("/v2/account", headers={"Authorization": f"Bearer {self.token}"})

    async def back(self, within: float) -> float:
        """Seconds until a token is issued again, without anything being done."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            if (await self.issue()).status_code == 200:
                return time.monotonic() - start
            await anyio.sleep(0.02)
        raise AssertionError(f"service did not come back within {within} s")


@asynccontextmanager
async def traffic(cluster: Cluster) -> AsyncIterator[Traffic]:
    storage = SQLAlchemyStorage(cluster.url, table_prefix=f"f{uuid.uuid4().hex[:6]}_")
    async with storage:
        client = await storage.create_client(name="App", redirect_uris=["https://a/cb"])
        partner = await storage.create_partner(name="P")
        await storage.allow_partner_client(partner.key_id, client.client_id)
        account = await storage.create_account()
        app = build_platform(storage, OAuthSettings(issuer=ISSUER))
        body = {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "redirect_uri": "https://a/cb",
            "scope": "general",
            "account_id": str(account.account_id),
        }
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER, timeout=30) as http:
            world = Traffic(
                storage,
                http,
                body,
                (partner.key_id, partner.secret),
                (client.client_id, client.client_secret),
                "",
            )
            issued = await world.issue()
            assert issued.status_code == 200
            world.token = issued.json()["access_token"]
            assert (await world.check()).status_code == 200
            yield world


def assert_unavailable(response: httpx.Response, face: str) -> None:
    """The 503 of each face, in its documented shape, with Retry-After."""
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    if face == "partner":
        assert response.json() == {"code": 50310000, "message": "service temporarily unavailable"}
    elif face == "standard":
        assert response.json() == {
            "error": "temporarily_unavailable",
            "error_description": "storage is unavailable",
        }
        assert response.headers["cache-control"] == "no-store"
    else:
        assert response.json() == {
            "error": "temporarily_unavailable",
            "error_description": "try again shortly",
        }
        assert response.headers["cache-control"] == "no-store"


async def answers_at_once(world: Traffic) -> None:
    """Every face answers 503 well within a second (a request that tried a connection
    would wait out asyncpg's 5 s connect timeout)."""
    faces: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
        ("partner", world.issue),
        ("standard", world.exchange),
        ("bearer", world.check),
    ]
    for _ in range(3):
        for face, request in faces:
            start = time.monotonic()
            response = await request()
            assert time.monotonic() - start < 1.0, face
            assert_unavailable(response, face)


async def test_requests_fail_fast_while_the_database_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every backend terminated and the postmaster frozen: the first request waits out the
    connect timeout; after it, every request that needs the database is answered 503 at
    once; once the postmaster runs again, service resumes by itself."""
    caplog.set_level(logging.WARNING, "starlette_broker_oauth")
    with private_cluster() as cluster:
        async with traffic(cluster) as world:
            await cluster.terminate_backends()
            with cluster.frozen():
                assert_unavailable(await world.issue(), "partner")
                await answers_at_once(world)
            assert await world.back(within=5.0) < 5.0
            assert_unavailable_logged_once(caplog, "TimeoutError")


async def test_requests_fail_fast_while_the_database_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database stopped: 503 at once on every face; started again, service resumes by
    itself; a storage closed while its database is away leaves no task behind."""
    caplog.set_level(logging.WARNING, "starlette_broker_oauth")
    with private_cluster() as cluster:
        before = asyncio.all_tasks()
        async with traffic(cluster) as world:
            await anyio.to_thread.run_sync(cluster.stop)
            assert_unavailable(await world.issue(), "partner")
            await answers_at_once(world)
            await anyio.to_thread.run_sync(cluster.start)
            assert await world.back(within=5.0) < 5.0
            assert_unavailable_logged_once(caplog, "")
            await anyio.to_thread.run_sync(cluster.stop)
            assert_unavailable(await world.issue(), "partner")
        assert asyncio.all_tasks() == before


def assert_unavailable_logged_once(caplog: pytest.LogCaptureFixture, cause: str) -> None:
    lines = [r.getMessage() for r in caplog.records if r.name == "starlette_broker_oauth"]
    away = [line for line in lines if line.startswith("the database is unreachable")]
    assert len(away) == 1, lines
    assert f"({cause}" in away[0]
    assert any(line.startswith("the database answers again, after") for line in lines), lines


async def test_a_full_pool_is_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    """A pool with no connection to spare on a healthy database is answered 503 after the
    pool's timeout, and nothing takes the database for away."""
    assert POSTGRES_URL is not None
    caplog.set_level(logging.WARNING, "starlette_broker_oauth")
    storage = SQLAlchemyStorage(
        POSTGRES_URL,
        table_prefix=f"f{uuid.uuid4().hex[:6]}_",
        engine_options={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2},
    )
    async with storage:
        try:
            holding, release = anyio.Event(), anyio.Event()

            async def hold() -> None:
                async with storage.unit_of_work():
                    assert await storage.get_client("held") is None
                    holding.set()
                    await release.wait()

            async with anyio.create_task_group() as tg:
                tg.start_soon(hold)
                await holding.wait()
                with pytest.raises(StorageUnavailable):
                    await storage.get_client("waiting")
                release.set()
            assert await storage.get_client("after") is None
        finally:
            async with storage.engine.begin() as conn:
                await conn.run_sync(storage.metadata.drop_all)
                await conn.exec_driver_sql(f"DROP TABLE {storage.table_prefix}alembic_version")
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]
