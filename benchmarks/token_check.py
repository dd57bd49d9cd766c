"""What the token check costs on a protected route, and how it scales with the table.

Part 1 starts uvicorn (one worker, uvloop + httptools) serving one small JSON route seven
ways - bare; a hand-written handler doing one SQLite lookup (reference); protected through
Starlette's ``AuthenticationMiddleware`` with the library's backend, tokens in SQLite,
without and with the verifier's cache; protected by ``@requires_token(verifier=...)`` on
the route alone, without and with the cache (see ``_token_app.py``); and, as a competitor,
aioauth 2.0.1 on ``sqlite3`` looking the token up in its token storage
(``_aioauth_app.py``, the same token values in its own table) - and drives each with wrk
from a second process, in rounds, in the same run. It prints requests/s, p50 and p99
latency, and each mode's throughput as a ratio of the bare route and of aioauth.

Part 2 times ``TokenVerifier.verify`` (no cache) on SQLite as the token table grows from
10^3 to 10^6 rows, as a ratio of the 10^3 figure.

Run: ``python benchmarks/token_check.py [--duration 5] [--rounds 3] [--skip-scaling]
[--skip-aioauth]``.
Needs ``wrk`` (Debian package) and ``pip install 'starlette-broker-oauth[bench]'``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import _aioauth_app
import anyio
import sqlalchemy as sa
from _wrk import figures, free_port, start_worker

from starlette_broker_oauth import SQLAlchemyStorage, TokenVerifier
from starlette_broker_oauth.security import hash_secret

MODES = ["bare", "handwritten", "protected", "cached", "route", "route-cached", "aioauth"]


async def seed(database: Path, n_tokens: int) -> str:
    """A client and ``n_tokens`` tokens; returns one valid token value."""
    async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{database}") as storage:
        creds = await storage.create_client(name="Bench", redirect_uris=["https://b/cb"])
        account = await storage.create_account()
        await insert_tokens(storage, creds.client_id, account.account_id, 0, n_tokens)
        return token_value(n_tokens // 2)


def seed_aioauth(database: Path, n_tokens: int) -> str:
    """aioauth's tables, a client and the same ``n_tokens`` token values as :func:`seed`
    (in clear, as aioauth's example keeps them); returns the same valid token."""
    _aioauth_app.seed(
        database,
        client_id="bench",
        client_secret=uuid.uuid4().hex,
        redirect_uri="https://b/cb",
        scope="general data",
        tokens=(token_value(i) for i in range(n_tokens)),
    )
    return token_value(n_tokens // 2)


def token_value(i: int) -> str:
    return f"bench-token-{i:08d}-" + "x" * 24


async def insert_tokens(
    storage: SQLAlchemyStorage, client_id: str, account_id: uuid.UUID, start: int, stop: int
) -> None:
    table = storage.metadata.tables["oauth_tokens"]
    now = datetime.now(UTC)
    batch = 50_000
    for lo in range(start, stop, batch):
        rows = [
            {
                "token_hash": hash_secret(token_value(i)),
                "client_id": client_id,
                "account_id": account_id,
                "scope": "general data",
                "account_live": False,
                "issued_at": now,
                "expires_at": None,
                "revoked_at": None,
                "family_id": None,
            }
            for i in range(lo, min(stop, lo + batch))
        ]
        async with storage.engine.begin() as conn:
            await conn.execute(sa.insert(table), rows)


def run_wrk(url: str, token: str, duration: int) -> tuple[float, float, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c32",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return figures(out)


def serve(mode: str, database: Path, port: int) -> subprocess.Popen[bytes]:
    environ = {
        "BENCH_MODE": mode,
        "BENCH_DATABASE": str(database),
        "BENCH_AIOAUTH_DATABASE": str(database.with_name("aioauth.db")),
        "BENCH_CACHE_TTL": "5",
        # The aioauth app freezes the GC after start-up as the library's write-path app
        # does; _token_app does not, so neither does it here.
        "BENCH_GC_FREEZE": "0",
    }
    app = "_aioauth_app:app" if mode == "aioauth" else "_token_app:app"
    return start_worker(app, port, environ)


def http_benchmark(
    database: Path, token: str, duration: int, rounds: int, modes: list[str]
) -> None:
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
    for _ in range(rounds):
        for mode in modes:
            port = free_port()
            process = serve(mode, database, port)
            try:
                url = f"http://127.0.0.1:{port}/quote"
                run_wrk(url, token, 1)  # warm-up
                results[mode].append(run_wrk(url, token, duration))
            finally:
                process.terminate()
                process.wait(10)
    bare = statistics.median(r[0] for r in results["bare"])
    rival = statistics.median(r[0] for r in results["aioauth"]) if "aioauth" in modes else None
    print(f"\nHTTP, one uvicorn worker, wrk -t1 -c32, {rounds} x {duration}s per mode (medians)")
    head = f"{'mode':<14}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs bare':>9}"
    print(head + (f"{'vs aioauth':>11}" if rival else ""))
    for mode in modes:
        rps = statistics.median(r[0] for r in results[mode])
        p50 = statistics.median(r[1] for r in results[mode])
        p99 = statistics.median(r[2] for r in results[mode])
        line = f"{mode:<14}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{rps / bare:>9.2f}"
        if rival and mode not in ("bare", "aioauth"):
            line += f"{rps / rival:>11.2f}"
        print(line)


async def scaling_benchmark(workdir: Path, samples: int) -> None:
    print("\nTokenVerifier.verify (no cache) on SQLite as the token table grows")
    print(f"{'tokens':>10}{'us/verify':>12}{'vs 10^3':>9}")
    database = workdir / "scale.db"
    async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{database}") as storage:
        creds = await storage.create_client(name="Scale", redirect_uris=["https://b/cb"])
        account = await storage.create_account()
        verifier = TokenVerifier(grants=storage, clients=storage)
        have = 0
        first = None
        for size in (10**3, 10**4, 10**5, 10**6):
            await insert_tokens(storage, creds.client_id, account.account_id, have, size)
            have = size
            picks = [token_value(random.randrange(size)) for _ in range(samples)]
            for token in picks[:200]:
                await verifier.verify(token)
            start = time.perf_counter()
            for token in picks:
                await verifier.verify(token)
            per = (time.perf_counter() - start) / samples
            first = first or per
            print(f"{size:>10}{per * 1e6:>12.1f}{per / first:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-aioauth", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.skip_http:
            if shutil.which("wrk") is None:
                raise SystemExit("wrk is not installed (apt-get install wrk)")
            token = anyio.run(seed, workdir / "bench.db", 1000)
            modes = [m for m in MODES if not (args.skip_aioauth and m == "aioauth")]
            if "aioauth" in modes and seed_aioauth(workdir / "aioauth.db", 1000) != token:
                raise RuntimeError("aioauth's table must hold the same token")
            http_benchmark(workdir / "bench.db", token, args.duration, args.rounds, modes)
        if not args.skip_scaling:
            anyio.run(scaling_benchmark, workdir, args.samples)


if __name__ == "__main__":
    main()
