"""PostgreSQL goes away mid-traffic and comes back: 503s in the documented shapes, never a
500 or a hang, service back without a restart, and no row behind a failed answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
import sqlalchemy as sa

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage
from starlette_broker_oauth.security import hash_secret

from .conftest import ISSUER, POSTGRES_URL, build_platform, free_port

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        POSTGRES_URL is None or shutil.which("pg_ctl") is None,
        reason="needs PostgreSQL server binaries (scripts/with-postgres)",
    ),
]


class Cluster:
    """A private PostgreSQL cluster this test may stop and start."""

    def __init__(self, directory: Path, port: int) -> None:
        self.data = directory / "data"
        self.directory = directory
        self.port = port
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"

    def run(self, *args: str, check: bool = True) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=60)

    def start(self) -> None:
        self.run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "log"),
            "-w",
            "-t",
            "30",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    directory = Path(tempfile.mkdtemp(prefix="broker-oauth-fault-"))
    directory.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    cluster = Cluster(directory, free_port())
    cluster.run("initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "--no-sync")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.run("pg_ctl", "-D", str(cluster.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(directory, ignore_errors=True)


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
