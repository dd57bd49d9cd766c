"""Does the cost of a request stay flat as the tables grow, and does purging cost what it
removes? On PostgreSQL, in one process.

For each size (10^4 stored tokens, then ``--rows``), the token table is bulk-loaded on
the server (``generate_series``: live tokens, and as many expired or revoked ones as
``--purge-share`` says), then each operation is timed through the OAuth app in process
(httpx's ASGI transport, no network): the token check on a protected route without the
cache, token issuance, the code flow (a code, then its exchange) and a partner's
revocation. Each figure is the median of ``--requests`` requests, printed with its ratio
to the smallest size. Last, ``db purge``'s work (``purge_expired``) is timed at each size,
with the rows it removed and its time per removed row.

Run: ``scripts/with-postgres python benchmarks/scale.py [--rows 10000000]
[--requests 300]``.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_broker_oauth import OAuthSettings, SQLAlchemyStorage, create_oauth_app
from starlette_broker_oauth.core.verifier import TokenVerifier
from starlette_broker_oauth.integrations.starlette import requires_token

ISSUER = "https://broker.example"
REDIRECT = "https://app.example/cb"


async def bulk_load(storage: SQLAlchemyStorage, client_id: str, rows: int, share: float) -> None:
    """``rows`` tokens of other accounts, of which ``share`` expired or revoked long ago."""
    t = storage.tables.tokens
    dead = int(rows * share)
    now = datetime.now(UTC)
    old = now - timedelta(days=30)
    statement = sa.text(
        f"INSERT INTO {t.name} (token_hash, client_id, account_id, scope, account_live, "  # noqa: S608
        "issued_at, expires_at, revoked_at, family_id) "
        "SELECT md5(n::text || :salt) || md5(n::text), :client, gen_random_uuid(), 'general', "
        "false, CAST(:old AS timestamptz), "
        "CASE WHEN n <= :dead AND n % 2 = 0 THEN CAST(:old AS timestamptz) "
        "ELSE CAST(:later AS timestamptz) END, "
        "CASE WHEN n <= :dead AND n % 2 = 1 THEN CAST(:old AS timestamptz) END, NULL "
        "FROM generate_series(1, :rows) AS n"
    )
    async with storage.engine.begin() as conn:
        await conn.execute(
            statement,
            {
                "salt": uuid.uuid4().hex,
                "client": client_id,
                "old": old,
                "later": now + timedelta(days=365),
                "dead": dead,
                "rows": rows,
            },
        )
    async with storage.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql(f"VACUUM ANALYZE {t.name}")


async def timed(step: Callable[[], Awaitable[None]], count: int) -> float:
    """The median time of ``step`` in microseconds, after a warm-up."""
    for _ in range(20):
        await step()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


async def measure(url: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"s{uuid.uuid4().hex[:8]}_"
    # Bulk loading and purging millions of rows takes longer than a request may.
    storage = SQLAlchemyStorage(
        url, table_prefix=prefix, engine_options={"connect_args": {"command_timeout": 3600}}
    )
    settings = OAuthSettings(issuer=ISSUER)
    oauth = create_oauth_app(settings=settings, storage=storage)
    verifier = TokenVerifier(grants=storage, clients=storage, settings=settings)

    @requires_token("general", verifier=verifier)
    async def protected(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/quote", protected), Mount("/", oauth)])
    figures: dict[str, Any] = {"rows": rows}
    async with storage:
        try:
            client = await storage.create_client(name="Scale", redirect_uris=[REDIRECT])
            partner = await storage.create_partner(name="Scale partner")
            await storage.allow_partner_client(partner.key_id, client.client_id)
            account = await storage.create_account()
            started = time.perf_counter()
            await bulk_load(storage, client.client_id, rows, args.purge_share)
            figures["load s"] = time.perf_counter() - started
            basic = base64.b64encode(f"{partner.key_id}:{partner.secret}".encode()).decode()
            headers = {"Authorization": f"Basic {basic}"}
            grant = {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "redirect_uri": REDIRECT,
                "scope": "general",
                "account_id": str(account.account_id),
            }
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
                token = (await http.post("/v1/oauth/token", json=grant, headers=headers)).json()
                bearer = {"Authorization": f"Bearer {token['access_token']}"}

                async def check() -> None:
                    assert (await http.get("/quote", headers=bearer)).status_code == 200

                async def issue() -> None:
                    r = await http.post("/v1/oauth/token", json=grant, headers=headers)
                    assert r.status_code == 200, r.text

                async def flow() -> None:
                    code = await http.post("/v1/oauth/authorize", json=grant, headers=headers)
                    exchange = await http.post(
                        "/oauth/token",
                        auth=(client.client_id, client.client_secret),
                        data={
                            "grant_type": "authorization_code",
                            "code": code.json()["code"],
                            "redirect_uri": REDIRECT,
                        },
                    )
                    assert exchange.status_code == 200, exchange.text

                issued: list[str] = []
                for _ in range(args.requests + 20):
                    r = await http.post("/v1/oauth/token", json=grant, headers=headers)
                    issued.append(r.json()["access_token"])

                async def revoke() -> None:
                    r = await http.delete(f"/v1/oauth/token/{issued.pop()}", headers=headers)
                    assert r.status_code == 204, r.text

                figures["token check"] = await timed(check, args.requests)
                figures["issuance"] = await timed(issue, args.requests)
                figures["code flow"] = await timed(flow, args.requests)
                figures["revocation"] = await timed(revoke, args.requests)
            started = time.perf_counter()
            purged = await storage.purge_expired(now=datetime.now(UTC), batch_size=1000)
            figures["purge s"] = time.perf_counter() - started
            figures["purged"] = purged.tokens
        finally:
            async with storage.engine.begin() as conn:
                await conn.run_sync(storage.metadata.drop_all)
                await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {prefix}alembic_version")
    return figures


async def main(args: argparse.Namespace) -> None:
    url = os.environ["BROKER_OAUTH_TEST_POSTGRES_URL"]
    sizes = [10_000, args.rows]
    results = [await measure(url, rows, args) for rows in sizes]
    base = results[0]
    print(f"\nPostgreSQL, in process, median of {args.requests} requests (microseconds)")
    print(f"{'stored tokens':>14} " + " ".join(f"{name:>18}" for name in OPERATIONS))
    for result in results:
        cells = [f"{result[name]:8.0f} ({result[name] / base[name]:4.2f}x)" for name in OPERATIONS]
        print(f"{result['rows']:>14,} " + " ".join(f"{cell:>18}" for cell in cells))
    print("\ndb purge (purge_expired, batches of 1000)")
    for result in results:
        per_row = result["purge s"] / max(result["purged"], 1) * 1e6
        print(
            f"{result['rows']:>14,} stored: removed {result['purged']:,} rows in "
            f"{result['purge s']:.2f} s ({per_row:.1f} us per row); loaded in "
            f"{result['load s']:.0f} s"
        )


OPERATIONS = ("token check", "issuance", "code flow", "revocation")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--purge-share", type=float, default=0.26)
    anyio.run(main, parser.parse_args())
