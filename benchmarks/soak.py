"""A mixed soak on the embedded SQLite default: does the write-ahead log stay bounded, and
does each worker's memory stay flat?

uvicorn serves ``_write_app.py`` with two workers (``_serve.py``) on a fresh SQLite file.
For ``--duration`` seconds, ``--concurrency`` clients send a mix: partner token issuance,
the code flow (a code, then its exchange), revocations of issued tokens (the partner's
``DELETE``), and token checks; every 30 s ``broker-oauth db purge --retention-hours 0``
runs, and every 5 s an admin writes (a client created and disabled, an account created).
Every 10 s it samples the ``-wal`` file's size and each worker's resident memory, and at
the end prints both curves and the requests served (no request may fail).

Run: ``python benchmarks/soak.py [--duration 300] [--concurrency 8]``. Needs the
``bench`` extra.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from _wrk import free_port
from write_path import REDIRECT, seed, serve

from starlette_broker_oauth import SQLAlchemyStorage
from starlette_broker_oauth.models import ClientStatus

WAL_BOUND = 64 * 1024 * 1024


def workers_of(server: int) -> list[int]:
    """The worker processes of ``_serve.py`` (its children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server:  # the parent's pid
            found.append(int(stat.parent.name))
    return sorted(found)


def rss(pid: int) -> int:
    """Resident memory in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Load:
    """The mixed clients and what they counted."""

    def __init__(self, base: str, creds: dict[str, str]) -> None:
        self.base = base
        self.creds = creds
        self.partner = "Basic " + base64.b64encode(creds["partner"].encode()).decode()
        self.grant = {
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "redirect_uri": REDIRECT,
            "scope": "general data",
            "account_id": creds["account_id"],
        }
        # Tokens are issued (and revoked) for an account of their own: revoking a grant
        # takes the pending codes of its client and account with it, by design.
        self.direct = dict(self.grant, account_id=creds["direct_account_id"])
        self.issued: list[str] = []
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    def count(self, name: str, response: httpx.Response, *expected: int) -> None:
        if response.status_code not in (expected or (200,)):
            self.failures.append(f"{name}: {response.status_code} {response.text[:200]}")
        self.counts[name] = self.counts.get(name, 0) + 1

    async def client(self, until: float, seed: int) -> None:
        rng = random.Random(seed)
        headers = {"Authorization": self.partner}
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
            while time.monotonic() < until:
                pick = rng.random()
                if pick < 0.4:
                    r = await http.post("/v1/oauth/token", json=self.direct, headers=headers)
                    self.count("issue", r)
                    if r.status_code == 200:
                        self.issued.append(r.json()["access_token"])
                elif pick < 0.65:
                    code = await http.post("/v1/oauth/authorize", json=self.grant, headers=headers)
                    self.count("authorize", code)
                    exchange = await http.post(
                        "/oauth/token",
                        auth=(self.creds["client_id"], self.creds["client_secret"]),
                        data={
                            "grant_type": "authorization_code",
                            "code": code.json().get("code", ""),
                            "redirect_uri": REDIRECT,
                        },
                    )
                    self.count("exchange", exchange)
                elif pick < 0.8 and self.issued:
                    token = self.issued.pop(rng.randrange(len(self.issued)))
                    r = await http.delete(f"/v1/oauth/token/{token}", headers=headers)
                    self.count("revoke", r, 204)
                else:
                    r = await http.get(
                        "/quote", headers={"Authorization": f"Bearer {self.creds['token']}"}
                    )
                    self.count("check", r)


async def admin(url: str, until: float, done: list[str]) -> None:
    """An admin's writes every 5 s, on the same file."""
    async with SQLAlchemyStorage(url, migrate=False) as storage:
        while time.monotonic() < until:
            client = await storage.create_client(name="Soak", redirect_uris=[REDIRECT])
            await storage.set_client_status(client.client_id, ClientStatus.DISABLED)
            await storage.create_account()
            done.append("admin")
            await anyio.sleep(5)


async def second_account(url: str) -> object:
    async with SQLAlchemyStorage(url, migrate=False) as storage:
        return (await storage.create_account()).account_id


async def purge(url: str, until: float, done: list[str]) -> None:
    """``broker-oauth db purge`` every 30 s."""
    command = [
        sys.executable,
        "-m",
        "starlette_broker_oauth.cli",
        "db",
        "purge",
        "--retention-hours",
        "0",
        "--database-url",
        url,
    ]
    while time.monotonic() < until:
        await anyio.sleep(30)
        result = await anyio.run_process(command, check=False)
        done.append("purge" if result.returncode == 0 else f"purge failed: {result.stderr!r}")


async def sample(
    wal: Path, server: int, until: float, load: Load, rows: list[dict[str, Any]]
) -> None:
    started = time.monotonic()
    while True:
        pids = workers_of(server)
        rows.append(
            {
                "t": round(time.monotonic() - started),
                "requests": sum(load.counts.values()),
                "wal": wal.stat().st_size if wal.exists() else 0,
                "rss": [rss(pid) for pid in pids],
            }
        )
        if time.monotonic() >= until:
            return
        await anyio.sleep(min(10, max(0.0, until - time.monotonic())))


async def soak(url: str, wal: Path, base: str, server: int, args: argparse.Namespace) -> int:
    creds = json.loads(os.environ["SOAK_CREDS"])
    load = Load(base, creds)
    until = time.monotonic() + args.duration
    rows: list[dict[str, Any]] = []
    done: list[str] = []
    async with anyio.create_task_group() as tasks:
        for n in range(args.concurrency):
            tasks.start_soon(load.client, until, n)
        tasks.start_soon(admin, url, until, done)
        tasks.start_soon(purge, url, until, done)
        tasks.start_soon(sample, wal, server, until, load, rows)
    mib = 1024 * 1024
    print(f"\nSQLite soak: 2 workers, {args.concurrency} clients, {args.duration} s")
    print(
        f"{'t s':>5} {'requests':>9} {'wal MiB':>8}  "
        + "  ".join(["rss MiB"] * len(rows[0]["rss"]))
    )
    for row in rows:
        rss_cols = "  ".join(f"{value / mib:7.1f}" for value in row["rss"])
        print(f"{row['t']:>5} {row['requests']:>9} {row['wal'] / mib:8.2f}  {rss_cols}")
    print("requests:", json.dumps(load.counts, sort_keys=True))
    print("admin writes:", done.count("admin"), " purges:", done.count("purge"))
    peak = max(row["wal"] for row in rows)
    print(f"largest -wal file: {peak / mib:.2f} MiB (bound {WAL_BOUND / mib:.0f} MiB)")
    warm = rows[min(2, len(rows) - 1)]["rss"]
    last = rows[-1]["rss"]
    growth = [b - a for a, b in zip(warm, last, strict=False)]
    print("RSS growth after warm-up (MiB):", [round(g / mib, 1) for g in growth])
    per_minute = statistics.mean(growth) / mib / max(1, (rows[-1]["t"] - rows[2]["t"]) / 60)
    print(f"mean RSS growth per minute: {per_minute:.2f} MiB")
    problems = [d for d in done if d.startswith("purge failed")] + load.failures[:5]
    for problem in problems:
        print("FAILED:", problem)
    return 1 if problems or peak > WAL_BOUND else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "soak.db"
        url = f"sqlite+aiosqlite:///{path}"
        creds = anyio.run(seed, url, False)
        creds["direct_account_id"] = str(anyio.run(second_account, url))
        port = free_port()
        server = serve(port, BENCH_DATABASE_URL=url)
        try:
            os.environ["SOAK_CREDS"] = json.dumps(creds)
            code = anyio.run(
                soak, url, Path(f"{path}-wal"), f"http://127.0.0.1:{port}", server.pid, args
            )
        finally:
            server.terminate()
            server.wait(10)
    sys.exit(code)


if __name__ == "__main__":
    main()
