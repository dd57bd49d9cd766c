"""What a DPoP-protected route costs (RFC 9449), beside a bearer one and the bare route.

Part 1, in-process: the cost of each step of a DPoP check, per call - the proof's
signature verification alone (joserfc, ES256), the whole proof check
(``DPoPChecker.check``: parse, key import, signature, claims, ``jti`` recorded once) on the
memory storage and on SQLite (where recording the ``jti`` is a write), and a whole cached
``TokenVerifier.verify_dpop`` beside a cached bearer ``verify``.

Part 2, over HTTP: uvicorn (one worker) serves one JSON route three ways (``_dpop_app.py``)
- bare; ``@requires_token(verifier=...)`` with a bearer token, cache on; the same with a
DPoP-bound token and a fresh proof per request, cache on - driven by wrk; each request
of the DPoP run carries another pre-signed proof (``_dpop_proofs.lua`` cycles through
them), so no ``jti`` is replayed. It prints requests/s, p50 and p99, and each as a ratio
of the bare route.

Run: ``python benchmarks/dpop.py [--duration 5] [--rounds 3] [--skip-http]``.
Needs ``wrk`` and ``pip install 'starlette-broker-oauth[bench]'``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from _wrk import figures, free_port, start_worker
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry

from starlette_broker_oauth import MemoryStorage, OAuthSettings, SQLAlchemyStorage, TokenVerifier
from starlette_broker_oauth.clock import SYSTEM_CLOCK
from starlette_broker_oauth.core.dpop import DPoPChecker, access_token_hash
from starlette_broker_oauth.models import AccessToken
from starlette_broker_oauth.security import hash_secret
from starlette_broker_oauth.storage.base import Storage

HERE = Path(__file__).parent
ISSUER = "http://127.0.0.1"
MODES = ["bare", "bearer-cached", "dpop-cached"]
TOKEN = "dpop-bench-token-" + "t" * 27
BEARER = "bearer-bench-token-" + "b" * 25


def proof(key: ECKey, url: str, method: str = "GET", token: str | None = None) -> str:
    """A fresh proof for one request."""
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(12),
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
    }
    if token is not None:
        claims["ath"] = access_token_hash(token)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(header, json.dumps(claims).encode(), key)


async def seed(storage: Storage, jkt: str) -> None:
    """A client, an account, a bearer token and a token bound to ``jkt``."""
    assert isinstance(storage, MemoryStorage | SQLAlchemyStorage)
    creds = await storage.create_client(name="Bench", redirect_uris=["https://b/cb"])
    account = await storage.create_account()
    now = datetime.now(UTC)
    for value, bound in ((BEARER, None), (TOKEN, jkt)):
        await storage.save_token(
            AccessToken(
                token_hash=hash_secret(value),
                client_id=creds.client_id,
                account_id=account.account_id,
                scope="data",
                account_live=False,
                issued_at=now,
                family_id=uuid.uuid4().hex,
                dpop_jkt=bound,
            )
        )


async def _bearer(verifier: TokenVerifier, i: int) -> object:
    return await verifier.verify(BEARER)


async def per_call(n: int, step: Callable[[int], Awaitable[object]]) -> float:
    """Microseconds per call of ``step(i)``, over ``n`` calls."""
    start = time.perf_counter()
    for i in range(n):
        await step(i)
    return (time.perf_counter() - start) / n * 1e6


async def in_process(workdir: Path, n: int) -> None:
    key = ECKey.generate_key("P-256")
    public = JWKRegistry.import_key(key.as_dict(private=False))
    url = f"{ISSUER}/quote"
    settings = OAuthSettings(issuer=ISSUER, token_cache_ttl=timedelta(seconds=60))
    rows: list[tuple[str, float]] = []

    proofs = [proof(key, url, token=TOKEN) for _ in range(n)]

    async def signature(i: int) -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            return jws.deserialize_compact(proofs[i], public, algorithms=["ES256"])

    rows.append(("signature verification alone (joserfc, ES256)", await per_call(n, signature)))

    for name, storage in (
        ("memory", MemoryStorage()),
        ("SQLite", SQLAlchemyStorage(f"sqlite+aiosqlite:///{workdir / 'inproc.db'}")),
    ):
        async with storage:
            await seed(storage, str(key.thumbprint()))
            checker = DPoPChecker(settings=settings, grants=storage, clock=SYSTEM_CLOCK)
            fresh = [proof(key, url, token=TOKEN) for _ in range(n)]

            async def check(
                i: int, checker: DPoPChecker = checker, fresh: list[str] = fresh
            ) -> object:
                return await checker.check([fresh[i]], method="GET", url=url, access_token=TOKEN)

            rows.append((f"whole proof check, jti recorded in {name}", await per_call(n, check)))
            verifier = TokenVerifier(
                grants=storage, clients=storage, settings=settings, cache_ttl=timedelta(60)
            )
            await verifier.verify(BEARER)
            rows.append(
                (
                    f"cached bearer verify ({name})",
                    await per_call(n, functools.partial(_bearer, verifier)),
                )
            )
            fresh = [proof(key, url, token=TOKEN) for _ in range(n + 1)]
            await verifier.verify_dpop(TOKEN, [fresh[n]], method="GET", path="/quote")

            async def dpop(
                i: int, verifier: TokenVerifier = verifier, fresh: list[str] = fresh
            ) -> object:
                return await verifier.verify_dpop(TOKEN, [fresh[i]], method="GET", path="/quote")

            rows.append((f"cached DPoP verify_dpop ({name})", await per_call(n, dpop)))

    print(f"\nIn-process, {n} calls each (microseconds per call)")
    for name, micros in rows:
        print(f"  {name:<52} {micros:9.1f}")


def serve(mode: str, database: Path, port: int) -> subprocess.Popen[bytes]:
    environ = {
        "BENCH_MODE": mode,
        "BENCH_DATABASE": str(database),
        "BENCH_ISSUER": f"http://127.0.0.1:{port}",
    }
    return start_worker("_dpop_app:app", port, environ, probe="/health")


def run_wrk(mode: str, port: int, duration: int, proofs: Path) -> tuple[float, float, float]:
    url = f"http://127.0.0.1:{port}/quote"
    command = ["wrk", "-t1", "-c32", f"-d{duration}s", "--latency"]
    if mode == "bearer-cached":
        command += ["-H", f"Authorization: Bearer {BEARER}"]
    elif mode == "dpop-cached":
        command += ["-s", str(HERE / "_dpop_proofs.lua")]
    env = os.environ | {"DPOP_PROOFS": str(proofs), "DPOP_TOKEN": TOKEN}
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, env=env
    ).stdout
    return figures(out)


def http_benchmark(workdir: Path, duration: int, rounds: int) -> None:
    key = ECKey.generate_key("P-256")
    database = workdir / "http.db"

    async def seeded() -> None:
        async with SQLAlchemyStorage(f"sqlite+aiosqlite:///{database}") as storage:
            await seed(storage, str(key.thumbprint()))

    anyio.run(seeded)
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            port = free_port()
            url = f"http://127.0.0.1:{port}/quote"
            # Enough fresh proofs for the run (each is used once; a run far faster than
            # 30,000 requests a second would reuse one and see a 401).
            proofs = workdir / "proofs.txt"
            count = 30_000 * (duration + 1) if mode == "dpop-cached" else 1
            proofs.write_text("\n".join(proof(key, url, token=TOKEN) for _ in range(count)))
            process = serve(mode, database, port)
            try:
                run_wrk(mode, port, 1, proofs) if mode != "dpop-cached" else None
                results[mode].append(run_wrk(mode, port, duration, proofs))
            finally:
                process.terminate()
                process.wait(10)
    bare = statistics.median(r[0] for r in results["bare"])
    print(f"\nHTTP, one uvicorn worker, wrk -t1 -c32, {rounds} x {duration}s per mode (medians)")
    print(f"  {'mode':<16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8}")
    for mode in MODES:
        rps = statistics.median(r[0] for r in results[mode])
        p50 = statistics.median(r[1] for r in results[mode])
        p99 = statistics.median(r[2] for r in results[mode])
        print(f"  {mode:<16} {rps:9.0f} {p50:8.2f} {p99:8.2f} {rps / bare:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        anyio.run(in_process, workdir, args.calls)
        if not args.skip_http:
            if shutil.which("wrk") is None:
                raise SystemExit("wrk is not installed (apt-get install wrk)")
            http_benchmark(workdir, args.duration, args.rounds)


if __name__ == "__main__":
    main()
