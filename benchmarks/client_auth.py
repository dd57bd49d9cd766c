"""Whether a client id can be probed by timing client authentication.

Times the core's client authentication (what the token, revocation and introspection
endpoints run) for an unknown client id and for a known one with a wrong secret, in
alternating rounds on the same storage, and prints the medians and their ratio. A ratio
within the rounds' own spread means the two cannot be told apart. Then the same through
HTTP (``POST /oauth/introspect`` with Basic credentials, in process), where a client sees
it.

Run: ``python benchmarks/client_auth.py [--storage sqlite|memory|postgres URL] [--n 2000]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from starlette_broker_oauth import (
    ManagedStorage,
    MemoryStorage,
    OAuthSettings,
    SQLAlchemyStorage,
    create_oauth_app,
)
from starlette_broker_oauth.core import AuthorizationCore

ROUNDS = 15


async def per_call(run: object, n: int) -> float:
    assert callable(run)
    start = time.perf_counter()
    for _ in range(n):
        await run()
    return (time.perf_counter() - start) / n * 1e6


async def measure(storage: ManagedStorage, n: int) -> None:
    settings = OAuthSettings(issuer="https://broker.test")
    creds = await storage.create_client(name="App", redirect_uris=["https://a.example/cb"])
    core = AuthorizationCore(
        settings=settings, clients=storage, accounts=storage, partners=storage, grants=storage
    )
    wrong = creds.client_secret[:-1] + ("a" if creds.client_secret[-1] != "a" else "b")

    async def unknown() -> None:
        assert await core.authenticate_client("f" * 32, wrong, endpoint="token") is None

    async def known() -> None:
        assert await core.authenticate_client(creds.client_id, wrong, endpoint="token") is None

    app = create_oauth_app(settings=settings, storage=storage)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:

        async def over_http(client_id: str) -> None:
            answer = await http.post(
                "/oauth/introspect", data={"token": "x"}, auth=(client_id, wrong)
            )
            assert answer.status_code == 401

        async def http_unknown() -> None:
            await over_http("f" * 32)

        async def http_known() -> None:
            await over_http(creds.client_id)

        for label, a, b, calls in (
            ("core", unknown, known, n),
            ("HTTP", http_unknown, http_known, max(n // 10, 100)),
        ):
            await per_call(a, calls)  # warm up
            await per_call(b, calls)
            first, second, ratios = [], [], []
            for _ in range(ROUNDS):
                x = await per_call(a, calls)
                y = await per_call(b, calls)
                first.append(x)
                second.append(y)
                ratios.append(y / x)
            spread = statistics.quantiles(ratios, n=4)
            print(
                f"{label:5} unknown id {statistics.median(first):8.1f} µs   "
                f"known id, wrong secret {statistics.median(second):8.1f} µs   "
                f"ratio {statistics.median(ratios):.3f} "
                f"(quartiles {spread[0]:.3f}-{spread[2]:.3f}, {ROUNDS} rounds)"
            )


async def main(kind: str, url: str | None, n: int) -> None:
    storage: ManagedStorage
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "memory":
            storage = MemoryStorage()
        elif kind == "sqlite":
            storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        else:
            assert url is not None, "--url postgresql+asyncpg://…"
            storage = SQLAlchemyStorage(url, table_prefix="bench_auth_")
        async with storage:
            print(f"client authentication, {kind} storage")
            await measure(storage, n)
            if isinstance(storage, SQLAlchemyStorage) and kind == "postgres":
                async with storage.engine.begin() as conn:
                    await conn.run_sync(storage.metadata.drop_all)
                    await conn.exec_driver_sql("DROP TABLE IF EXISTS bench_auth_alembic_version")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=("sqlite", "memory", "postgres"), default="sqlite")
    parser.add_argument("--url", help="the PostgreSQL URL, with --storage postgres")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    anyio.run(main, args.storage, args.url, args.n)
