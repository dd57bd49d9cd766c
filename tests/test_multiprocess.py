"""Several workers on one PostgreSQL: nothing depends on per-process state."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager

import anyio
import httpx
import pytest

from starlette_broker_oauth import SQLAlchemyStorage
from starlette_broker_oauth.core import Administrator
from starlette_broker_oauth.events import OAuthEvent

from .conftest import POSTGRES_URL, worker_processes

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        POSTGRES_URL is None, reason="needs the PostgreSQL of scripts/with-postgres"
    ),
]

REDIRECT = "https://app.example.com/callback"


def workers(n: int, prefix: str) -> AbstractContextManager[list[str]]:
    """``n`` workers on the PostgreSQL tables of ``prefix``, with a long token cache."""
    return worker_processes(
        n,
        {
            "WORKER_DATABASE_URL": str(POSTGRES_URL),
            "WORKER_TABLE_PREFIX": prefix,
            "WORKER_CACHE_TTL": str(CACHE_TTL),
        },
    )


async def ignore(event: OAuthEvent) -> None:
    return None


# The documented bound for a revocation to reach another worker's cache while its
# notification connection is up (docs/production.md); the cache TTL is far longer.
NOTIFY_BOUND = 1.0
CACHE_TTL = 300


@pytest.fixture
async def seeded() -> AsyncIterator[tuple[str, dict[str, str]]]:
    prefix = f"w{uuid.uuid4().hex[:8]}_"
    assert POSTGRES_URL is not None
    async with SQLAlchemyStorage(POSTGRES_URL, table_prefix=prefix) as storage:
        client = await storage.create_client(name="App", redirect_uris=[REDIRECT])
        partner = await storage.create_partner(name="P")
        await storage.allow_partner_client(partner.key_id, client.client_id)
        account = await storage.create_account()
        yield (
            prefix,
            {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "partner_key": partner.key_id,
                "partner_secret": partner.secret,
                "account_id": str(account.account_id),
            },
        )
        async with storage.engine.begin() as conn:
            await conn.run_sync(storage.metadata.drop_all)
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {prefix}alembic_version")


def grant(c: dict[str, str]) -> dict[str, str]:
    return {
        "client_id": c["client_id"],
        "client_secret": c["client_secret"],
        "redirect_uri": REDIRECT,
        "scope": "general",
        "account_id": c["account_id"],
    }


async def test_one_code_redeemed_once_across_workers(seeded: tuple[str, dict[str, str]]) -> None:
    prefix, c = seeded
    with workers(2, prefix) as urls:
        async with httpx.AsyncClient(timeout=30) as http:
            issued = await http.post(
                urls[0] + "/v1/oauth/authorize",
                json=grant(c),
                auth=(c["partner_key"], c["partner_secret"]),
            )
            code = issued.json()["code"]
            statuses: list[int] = []
            errors: list[str] = []

            async def redeem(i: int) -> None:
                response = await http.post(
                    urls[i % 2] + "/oauth/token",
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": REDIRECT,
                    },
                    auth=(c["client_id"], c["client_secret"]),
                )
                statuses.append(response.status_code)
                if response.status_code != 200:
                    errors.append(response.json()["error"])

            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(redeem, i)
    assert len(statuses) == 100
    assert statuses.count(200) == 1, sorted(statuses)
    assert set(errors) == {"invalid_grant"}


async def test_revocation_reaches_the_other_worker(seeded: tuple[str, dict[str, str]]) -> None:
    prefix, c = seeded
    partner = (c["partner_key"], c["partner_secret"])
    with workers(2, prefix) as (a, b):
        async with httpx.AsyncClient(timeout=10) as http:
            token = (await http.post(a + "/v1/oauth/token", json=grant(c), auth=partner)).json()[
                "access_token"
            ]
            headers = {"Authorization": f"Bearer {token}"}
            for url in (a, b):  # both caches now hold the token
                assert (await http.get(url + "/v2/account", headers=headers)).status_code == 200
            pids = {
                (await http.get(url + "/v2/account", headers=headers)).json()["pid"]
                for url in (a, b)
            }
            assert len(pids) == 2
            revoked = await http.delete(f"{a}/v1/oauth/token/{token}", auth=partner)
            assert revoked.status_code == 204
            start = time.monotonic()
            while (await http.get(b + "/v2/account", headers=headers)).status_code == 200:
                assert time.monotonic() - start < NOTIFY_BOUND, "revocation did not reach worker b"
                await anyio.sleep(0.01)
            assert (await http.get(a + "/v2/account", headers=headers)).status_code == 401


async def test_disabling_a_client_reaches_every_worker(seeded: tuple[str, dict[str, str]]) -> None:
    prefix, c = seeded
    partner = (c["partner_key"], c["partner_secret"])
    assert POSTGRES_URL is not None
    with workers(2, prefix) as urls:
        async with httpx.AsyncClient(timeout=10) as http:
            token = (
                await http.post(urls[0] + "/v1/oauth/token", json=grant(c), auth=partner)
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            for url in urls:
                assert (await http.get(url + "/v2/account", headers=headers)).status_code == 200
            async with SQLAlchemyStorage(
                POSTGRES_URL, table_prefix=prefix, migrate=False
            ) as storage:
                admin = Administrator(storage, emit=ignore)
                assert await admin.disable_client(c["client_id"])
            start = time.monotonic()
            for url in urls:
                while (await http.get(url + "/v2/account", headers=headers)).status_code == 200:
                    assert time.monotonic() - start < NOTIFY_BOUND
                    await anyio.sleep(0.01)


@pytest.mark.parametrize("scope", ["one_app", "whole_account"])
async def test_disconnecting_reaches_every_workers_cache(
    seeded: tuple[str, dict[str, str]], scope: str
) -> None:
    """The platform cuts an app (or closes the account) through ``ConnectedApps`` on one
    worker; every worker's token check refuses the app's tokens, both cached."""
    prefix, c = seeded
    partner = (c["partner_key"], c["partner_secret"])
    with workers(2, prefix) as (a, b):
        async with httpx.AsyncClient(timeout=10) as http:
            tokens = [
                (await http.post(url + "/v1/oauth/token", json=grant(c), auth=partner)).json()[
                    "access_token"
                ]
                for url in (a, b)
            ]
            for token in tokens:
                for url in (a, b):  # every worker's cache holds every token
                    answer = await http.get(
                        url + "/v2/account", headers={"Authorization": f"Bearer {token}"}
                    )
                    assert answer.status_code == 200
            body = {"account_id": c["account_id"]}
            if scope == "one_app":
                body["client_id"] = c["client_id"]
            cut = await http.post(a + "/admin/disconnect", json=body)
            assert cut.json() == {"revoked": 2}
            start = time.monotonic()
            for token in tokens:
                headers = {"Authorization": f"Bearer {token}"}
                assert (await http.get(a + "/v2/account", headers=headers)).status_code == 401
                while (await http.get(b + "/v2/account", headers=headers)).status_code == 200:
                    assert time.monotonic() - start < NOTIFY_BOUND, "worker b kept the token"
                    await anyio.sleep(0.01)
