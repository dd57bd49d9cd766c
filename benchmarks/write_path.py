"""The write path against a bare route, in one run: token issuance, the code flow and the
protected route (cache off and on), on SQLite and, when one is given, PostgreSQL.

uvicorn serves ``_write_app.py`` with two workers (uvloop, httptools), each on a socket of
its own (``_serve.py`` says why). Each HTTP scenario is measured with wrk (``-t1 -c16``)
from another process; the code flow, which chains two requests, is run sequentially by
one httpx client and compared with the same two requests (headers and bodies alike) sent
to the bare route the same way. Every figure is printed as a ratio of the bare route in
the same round (the median over the rounds), with p50 and p99 latency. Part 2 times the
token cache's cost per miss (an insertion that evicts the oldest entry) at 10^2, 10^4 and
10^6 entries.

On SQLite, a competitor is served beside it the same way (two workers, same wrk and httpx
settings, in the same rounds): aioauth 2.0.1 on ``sqlite3`` (``_aioauth_app.py``). Its
rows are the same scenarios as aioauth offers them - a token is issued by the
``client_credentials`` grant (aioauth has no endpoint that issues a user's token to a
trusted caller), the code flow is its authorization endpoint for a fixed user (the code
in the redirect) and ``/oauth/token`` with PKCE S256 (the library's code flow here carries
no PKCE: a SHA-256 of 64 bytes, microseconds), and the protected route looks the token up
in its storage - and their ratios are of the library app's bare route, as the library's
are. "aioauth: bare route" is aioauth's app's own ``/bare``: near 1.00 when
the two servers are alike. "vs aioauth" is a library row over its aioauth row.

Run: ``python benchmarks/write_path.py [--duration 5] [--rounds 3] [--skip-aioauth]``;
with PostgreSQL: ``scripts/with-postgres python benchmarks/write_path.py`` (it reads
``BROKER_OAUTH_TEST_POSTGRES_URL``; aioauth is measured on SQLite only). Needs ``wrk`` and
the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import _aioauth_app
import anyio
import httpx
from _wrk import figures, free_port

from starlette_broker_oauth import SQLAlchemyStorage, TokenVerifier
from starlette_broker_oauth.models import AccessToken, Client
from starlette_broker_oauth.security import hash_secret
from starlette_broker_oauth.storage import MemoryStorage

HERE = Path(__file__).parent
REDIRECT = "https://app.example/cb"


async def seed(url: str, prefix_reset: bool) -> dict[str, str]:
    """A fresh schema with a client, a partner, an account and one valid token."""
    storage = SQLAlchemyStorage(url)
    async with storage:
        if prefix_reset:
            async with storage.engine.begin() as conn:
                await conn.run_sync(storage.metadata.drop_all)
                await conn.exec_driver_sql("DROP TABLE IF EXISTS oauth_alembic_version")
    async with SQLAlchemyStorage(url) as storage:
        client = await storage.create_client(name="Bench", redirect_uris=[REDIRECT])
        partner = await storage.create_partner(name="Bench partner")
        await storage.allow_partner_client(partner.key_id, client.client_id)
        account = await storage.create_account()
        token = f"bench-{uuid.uuid4().hex}"
        await storage.save_token(
            AccessToken(
                token_hash=hash_secret(token),
                client_id=client.client_id,
                account_id=account.account_id,
                scope="general data",
                account_live=False,
                issued_at=datetime.now(UTC),
            )
        )
        return {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "partner": f"{partner.key_id}:{partner.secret}",
            "account_id": str(account.account_id),
            "token": token,
        }


def seed_aioauth(database: Path) -> dict[str, str]:
    """aioauth's tables, a client and one valid token."""
    creds = {
        "client_id": f"bench-{uuid.uuid4().hex[:8]}",
        "client_secret": secrets.token_urlsafe(32),
        "token": f"bench-{uuid.uuid4().hex}",
    }
    _aioauth_app.seed(
        database,
        client_id=creds["client_id"],
        client_secret=creds["client_secret"],
        redirect_uri=REDIRECT,
        scope="general data",
        tokens=[creds["token"]],
    )
    return creds


def serve(port: int, app: str = "_write_app:app", **environ: str) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(HERE)]))
    env = os.environ | environ | {"PYTHONPATH": path}
    process = subprocess.Popen(
        [sys.executable, str(HERE / "_serve.py"), app, str(port), "2"], env=env
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/bare", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def wrk(
    url: str, duration: int, *, headers: dict[str, str], body: str | None, workdir: Path
) -> tuple[float, float, float]:
    args = ["wrk", "-t1", "-c16", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    if body is not None:
        script = workdir / "post.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    return figures(out)


def sequential(base: str, seconds: float, step: Any) -> tuple[float, float, float]:
    """Run ``step(client)`` back to back for ``seconds``: per second, p50 and p99 in ms."""
    times: list[float] = []
    with httpx.Client(base_url=base) as client:
        for _ in range(20):
            step(client)
        end = time.perf_counter() + seconds
        while (start := time.perf_counter()) < end:
            step(client)
            times.append(time.perf_counter() - start)
    times.sort()
    return (
        len(times) / sum(times),
        times[len(times) // 2] * 1e3,
        times[int(len(times) * 0.99)] * 1e3,
    )


def scenarios(
    url: str,
    duration: int,
    rounds: int,
    workdir: Path,
    label: str,
    reset: bool,
    *,
    aioauth: bool = False,
) -> None:
    creds = anyio.run(seed, url, reset)
    partner = "Basic " + base64.b64encode(creds["partner"].encode()).decode()
    grant = json.dumps(
        {
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "redirect_uri": REDIRECT,
            "scope": "general data",
            "account_id": creds["account_id"],
        }
    )
    bearer = {"Authorization": f"Bearer {creds['token']}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client_auth = (creds["client_id"], creds["client_secret"])

    def bare_step(client: httpx.Client) -> None:
        # The code flow's two requests, with the same headers and bodies, to the bare route.
        first = client.post(
            "/bare",
            content=grant,
            headers={"Authorization": partner, "Content-Type": "application/json"},
        )
        second = client.post(
            "/bare",
            auth=client_auth,
            data={"grant_type": "authorization_code", "code": "x" * 43, "redirect_uri": REDIRECT},
        )
        assert first.status_code == second.status_code == 200

    def flow_step(client: httpx.Client) -> None:
        code = client.post(
            "/v1/oauth/authorize",
            content=grant,
            headers={"Authorization": partner, "Content-Type": "application/json"},
        )
        exchange = client.post(
            "/oauth/token",
            auth=client_auth,
            data={
                "grant_type": "authorization_code",
                "code": code.json()["code"],
                "redirect_uri": REDIRECT,
            },
        )
        assert exchange.status_code == 200, exchange.text

    # aioauth: its app, seeded, on a port of its own.
    a_creds = seed_aioauth(workdir / "aioauth.db") if aioauth else {}
    a_port = free_port()
    a_base = f"http://127.0.0.1:{a_port}"
    a_auth = (a_creds.get("client_id", ""), a_creds.get("client_secret", ""))
    a_basic = "Basic " + base64.b64encode(":".join(a_auth).encode()).decode()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    a_authorize = {
        "response_type": "code",
        "client_id": a_auth[0],
        "redirect_uri": REDIRECT,
        "scope": "general data",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }

    def aioauth_flow_step(client: httpx.Client) -> None:
        code = client.post("/oauth/authorize", params=a_authorize)
        assert code.status_code == 302, code.text
        exchange = client.post(
            "/oauth/token",
            auth=a_auth,
            data={
                "grant_type": "authorization_code",
                "code": parse_qs(urlsplit(code.headers["location"]).query)["code"][0],
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
        )
        assert exchange.status_code == 200, exchange.text

    results: dict[str, list[tuple[float, float, float]]] = {}
    process = serve(port, BENCH_DATABASE_URL=url)
    a_process = None
    try:
        if aioauth:
            a_database = str(workdir / "aioauth.db")
            a_process = serve(a_port, "_aioauth_app:app", BENCH_AIOAUTH_DATABASE=a_database)
        for _ in range(rounds):
            runs: dict[str, Callable[[], tuple[float, float, float]]] = {
                "bare route": lambda: wrk(
                    base + "/bare", duration, headers={}, body=None, workdir=workdir
                ),
                "issue a token": lambda: wrk(
                    base + "/v1/oauth/token",
                    duration,
                    headers={"Authorization": partner, "Content-Type": "application/json"},
                    body=grant,
                    workdir=workdir,
                ),
                "protected, no cache": lambda: wrk(
                    base + "/quote", duration, headers=bearer, body=None, workdir=workdir
                ),
                "protected, cached": lambda: wrk(
                    base + "/quote-cached", duration, headers=bearer, body=None, workdir=workdir
                ),
                "bare x2, sequential": lambda: sequential(base, duration, bare_step),
                "code flow, sequential": lambda: sequential(base, duration, flow_step),
            }
            if aioauth:
                runs |= {
                    "aioauth: bare route": lambda: wrk(
                        a_base + "/bare", duration, headers={}, body=None, workdir=workdir
                    ),
                    "aioauth: issue a token": lambda: wrk(
                        a_base + "/oauth/token",
                        duration,
                        headers={
                            "Authorization": a_basic,
                            "Content-Type": "application/x-www-form-urlencoded",
                        },
                        body="grant_type=client_credentials&scope=general+data",
                        workdir=workdir,
                    ),
                    "aioauth: protected": lambda: wrk(
                        a_base + "/quote",
                        duration,
                        headers={"Authorization": f"Bearer {a_creds['token']}"},
                        body=None,
                        workdir=workdir,
                    ),
                    "aioauth: code flow, sequential": lambda: sequential(
                        a_base, duration, aioauth_flow_step
                    ),
                }
            for name, run in runs.items():
                results.setdefault(name, []).append(run())
    finally:
        for server in (process, a_process):
            if server is not None:
                server.terminate()
                server.wait(10)
    med = {
        k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in results.items()
    }

    def ratio(name: str, base_name: str | None = None) -> float:
        # Each round's figure over the same round's baseline, then the median: the
        # machine's drift between rounds cancels out.
        if base_name is None:
            base_name = "bare x2, sequential" if "sequential" in name else "bare route"
        base = results[base_name]
        return statistics.median(r[0] / b[0] for r, b in zip(results[name], base, strict=True))

    # The library's rows beside aioauth's doing the same (aioauth has no token cache).
    rivals = {
        "bare route": "aioauth: bare route",
        "issue a token": "aioauth: issue a token",
        "protected, no cache": "aioauth: protected",
        "protected, cached": "aioauth: protected",
        "code flow, sequential": "aioauth: code flow, sequential",
    }
    order = [
        "bare route",
        "aioauth: bare route",
        "issue a token",
        "aioauth: issue a token",
        "protected, no cache",
        "protected, cached",
        "aioauth: protected",
        "bare x2, sequential",
        "code flow, sequential",
        "aioauth: code flow, sequential",
    ]
    width = 32 if aioauth else 24
    print(f"\n{label}: uvicorn, 2 workers, wrk -t1 -c16, {rounds} x {duration}s (medians)")
    head = (
        f"{'scenario':<{width}}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>9}{'vs bare':>9}"
    )
    print(head + (f"{'vs aioauth':>11}" if aioauth else ""))
    for name in [n for n in order if n in med]:
        rate, p50, p99 = med[name]
        line = (
            f"{name:<{width}}{rate:>9.0f}{p50:>9.2f}{p99:>9.2f}{p99 / p50:>9.1f}{ratio(name):>9.2f}"
        )
        if aioauth and name in rivals:
            line += f"{ratio(name, rivals[name]):>11.2f}"
        print(line)


class _Grants(MemoryStorage):
    """A grant store whose every token is valid: the cache's cost alone."""

    def __init__(self) -> None:
        super().__init__()
        self.client = Client(client_id="c", secret_hash="", name="c", redirect_uris=(REDIRECT,))

    async def token_with_client(self, token_hash: str) -> Any:
        token = AccessToken(
            token_hash=token_hash,
            client_id="c",
            account_id=uuid.UUID(int=1),
            scope="data",
            account_live=False,
            issued_at=datetime.now(UTC),
        )
        return token, self.client


async def cache_cost(misses: int) -> None:
    print("\nToken cache: cost of a miss when the cache is full (verify a new token: load,")
    print("insert, evict the oldest), as the cache grows")
    print(f"{'entries':>10}{'us/miss':>10}{'vs 10^2':>9}")
    first = None
    for size in (10**2, 10**4, 10**6):
        grants = _Grants()
        verifier = TokenVerifier(
            grants=grants, clients=grants, cache_ttl=timedelta(hours=1), cache_size=size
        )
        for i in range(size):
            await verifier.verify(f"fill-{i}")
        start = time.perf_counter()
        for i in range(misses):
            await verifier.verify(f"miss-{i}")
        per = (time.perf_counter() - start) / misses
        first = first or per
        print(f"{size:>10}{per * 1e6:>10.2f}{per / first:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--skip-aioauth", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scenarios(
            f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            args.duration,
            args.rounds,
            workdir,
            "SQLite (WAL)",
            False,
            aioauth=not args.skip_aioauth,
        )
        postgres = os.environ.get("BROKER_OAUTH_TEST_POSTGRES_URL")
        if postgres:
            scenarios(postgres, args.duration, args.rounds, workdir, "PostgreSQL", True)
    if not args.skip_cache:
        anyio.run(cache_cost, 20_000)


if __name__ == "__main__":
    main()
