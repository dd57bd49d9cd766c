"""N nodes of two workers on one PostgreSQL: mixed load, how fast a revocation reaches
every worker's token cache, and what three database faults look like from outside.

It starts a throwaway PostgreSQL cluster of its own (``initdb`` in a temporary directory,
a loopback port, ``fsync=off``: the machine's own crash is not among the faults; run as
the ``postgres`` user when run as root), makes the schema once
(``SQLAlchemyStorage.upgrade``), registers a partner, two clients and three accounts,
and starts ``--nodes`` x ``--workers`` workers of ``_node_app.py``: the OAuth sub-app with
the token cache on (``--cache-ttl``, 30 s) and ``/quote`` guarded by its token check
(``requires_token`` with ``oauth.state.token_verifier``). Each worker is a uvicorn
process of its own on a loopback port of its own, so that each can be polled by itself;
a node is ``--workers`` such processes. The load comes from this process:
``--concurrency`` clients (httpx on asyncio), each bound to one worker, so every worker
is served; all of it shares the machine with the workers and PostgreSQL. Each phase's
heading says how much of the machine's CPU went to other processes (and to the
hypervisor's steal) meanwhile: on a shared machine, that work shows in every figure.

1. Mixed load for ``--load-seconds``: partner token issuance (``POST /v1/oauth/token``),
   the code flow (``POST /v1/oauth/authorize`` on a client's worker, the exchange at
   ``POST /oauth/token`` on the next worker), checks of code-flow tokens on ``/quote``
   (a token is checked on any worker, so the first check on each is a cache miss), and
   the partner's revocations (``DELETE /v1/oauth/token/{token}``) of issued tokens. Per
   kind: requests, rate, p50 and p99 latency, 5xx answers.
2. Revocation fan-out, ``--trials`` times, with no other load: a token is issued, every
   worker's cache takes it (``/quote`` until 200), one worker (each in turn) revokes it,
   then every worker is polled at once, every ``--poll-ms``, until it refuses the token
   (401). A (trial, worker) pair's latency runs from the ``DELETE``'s answer, and from
   its sending, to the first refusal's answer; a worker still accepting the token
   ``--fanout-timeout`` seconds after the answer was never reached.
3. Three database faults, each under the load of phase 1: ``pg_ctl restart -m fast``;
   every client backend terminated (``pg_terminate_backend``); every client backend
   terminated and the postmaster frozen (``SIGSTOP``) for ``--freeze-seconds``, then
   ``SIGCONT``. Counted over the answers from the fault's start until ``--tail-seconds``
   after every worker is back: requests, 2xx, 503, other 5xx, 4xx, requests without an
   answer (connection errors, timeouts), the latency of the 503 answers (a worker that
   waits out asyncpg's 5 s connect timeout shows there), and the recovery time: from the
   fault's end (the restart done, ``SIGCONT`` sent) until every worker has answered a
   database write (issuance, code, exchange or revocation) with a success. A cached
   token check is no sign of recovery: it needs no database.

Last, the acknowledged writes are looked up in PostgreSQL: every token whose issuance was
answered 200 (its row, by SHA-256) and every revocation answered 204 (``revoked_at`` set);
and the other way round, for the record, the tokens stored though their request got no
200 and the revocations applied though not answered 204.

It prints one table and exits 1 if an answer was a 5xx other than 503, a 4xx where a
success was due, an acknowledged write is missing, a revocation never reached a worker,
or a worker did not come back after a fault.

Run: ``python benchmarks/multinode.py [--nodes 3] [--workers 2] [--load-seconds 30]
[--trials 30] [--freeze-seconds 5] [--concurrency 12] [--logs DIR] [--records FILE]``
(about a minute); ``--quick`` runs each phase for a few seconds (a smoke test). ``--logs``
keeps the workers' and PostgreSQL's logs, ``--records`` every request as CSV. Needs
PostgreSQL's server binaries (``initdb``, ``pg_ctl``: on PATH or in
/usr/lib/postgresql/*/bin) and the ``postgres`` extra; uvloop and httptools (the ``bench``
extra) are used when installed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import importlib.util
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import asyncpg
import httpx
import sqlalchemy as sa
from _wrk import free_port

from starlette_broker_oauth import SQLAlchemyStorage
from starlette_broker_oauth.security import hash_secret

HERE = Path(__file__).parent
REDIRECT = "https://app.example/cb"
SCOPE = "general data"
# Each kind of request: its method, path (a revocation's ends with the token) and success.
KINDS = {
    "issue": ("POST", "/v1/oauth/token", 200),
    "authorize": ("POST", "/v1/oauth/authorize", 200),
    "exchange": ("POST", "/oauth/token", 200),
    "check": ("GET", "/quote", 200),
    "revoke": ("DELETE", "/v1/oauth/token/", 204),
}
EXPECTED = {kind: status for kind, (_, _, status) in KINDS.items()}
WRITES = frozenset({"issue", "authorize", "exchange", "revoke"})
NO_ANSWER = 0  # the status recorded for a request that got no answer
TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


def pg_binary(name: str) -> str:
    """A PostgreSQL server binary: on PATH, or in Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        if not candidates:
            raise SystemExit(
                f"multinode: PostgreSQL's {name} is needed (apt-get install postgresql)"
            )
        found = candidates[-1]
    return found


class Cluster:
    """A throwaway PostgreSQL cluster that may be restarted and have its postmaster frozen."""

    def __init__(self, directory: Path, port: int, max_connections: int) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "log"
        self.port = port
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        self.options = (
            f"-h 127.0.0.1 -p {port} -k {directory} -c fsync=off "
            f"-c max_connections={max_connections}"
        )

    def run(self, *args: str, check: bool = True) -> None:
        command = [pg_binary(args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}{done.stderr}")

    def create(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.pg_ctl("start")

    def pg_ctl(self, action: str, *extra: str) -> None:
        self.run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            self.options,
            *extra,
            action,
        )

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast")

    def postmaster(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    async def terminate_backends(self) -> int:
        """Terminate every client backend but this one; how many there were."""
        conn = await asyncpg.connect(
            host="127.0.0.1", port=self.port, user="postgres", database="postgres", timeout=10
        )
        try:
            return len(await conn.fetch(TERMINATE))
        finally:
            await conn.close()

    def destroy(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.postmaster(), signal.SIGCONT)  # if it was left frozen
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)


async def seed(url: str) -> dict[str, str]:
    """The schema, made once; a partner, two clients and three accounts."""
    async with SQLAlchemyStorage(url, migrate=False) as storage:
        await storage.upgrade()
        partner = await storage.create_partner(name="Bench partner")
        direct = await storage.create_client(name="Direct", redirect_uris=[REDIRECT])
        app = await storage.create_client(name="App", redirect_uris=[REDIRECT])
        for client in (direct, app):
            await storage.allow_partner_client(partner.key_id, client.client_id)
        # Revoking a direct token ends its client's unused codes for the account, by
        # design: the code flow runs on an account and client of its own.
        accounts = [str((await storage.create_account()).account_id) for _ in range(3)]
        async with storage.engine.connect() as conn:
            version = await conn.scalar(sa.text("SELECT current_setting('server_version')"))
        return {
            "partner": f"{partner.key_id}:{partner.secret}",
            "direct_id": direct.client_id,
            "direct_secret": direct.client_secret,
            "app_id": app.client_id,
            "app_secret": app.client_secret,
            "direct_account": accounts[0],
            "app_account": accounts[1],
            "fanout_account": accounts[2],
            "version": str(version).split()[0],
        }


class Workers:
    """``count`` uvicorn processes of ``_node_app.py``, each on a port of its own."""

    def __init__(self, count: int, per_node: int, url: str, cache_ttl: float, logs: Path) -> None:
        self.names = [f"n{i // per_node + 1}w{i % per_node + 1}" for i in range(count)]
        self.ports = [free_port() for _ in range(count)]
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.logs = [logs / f"worker-{name}.log" for name in self.names]
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(HERE)]))
        env = os.environ | {
            "PYTHONPATH": path,
            "BENCH_DATABASE_URL": url,
            "BENCH_CACHE_TTL": str(cache_ttl),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        for port, log in zip(self.ports, self.logs, strict=True):
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "uvicorn",
                            "_node_app:app",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                            "--log-level",
                            "warning",
                            "--no-access-log",
                        ],
                        cwd=HERE,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for url, process, log in zip(self.urls, self.processes, self.logs, strict=True):
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker did not start:\n{log.read_text()}")
                try:
                    httpx.get(url + "/.well-known/oauth-authorization-server", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_levels(self) -> tuple[int, int]:
        """WARNING and ERROR lines the workers logged (the listener's reconnections, bugs)."""
        text = "\n".join(log.read_text(errors="replace") for log in self.logs if log.exists())
        lines = text.splitlines()
        warnings = sum("WARNING" in line for line in lines)
        return warnings, sum("ERROR" in line or "Traceback" in line for line in lines)


@dataclass(slots=True)
class Record:
    kind: str
    worker: int
    sent: float
    answered: float
    status: int  # NO_ANSWER when none came


@dataclass
class Outcome:
    """What the clients saw and what they were told was written."""

    records: list[Record] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # tokens answered 200
    revoked: list[str] = field(default_factory=list)  # revocations answered 204
    unconfirmed: list[str] = field(default_factory=list)  # revocations answered otherwise
    unexpected: list[str] = field(default_factory=list)  # 4xx where a success was due
    server_errors: list[str] = field(default_factory=list)  # 5xx other than 503


class Load:
    """The mixed clients: each bound to one worker, the code exchange on the next."""

    def __init__(self, urls: list[str], creds: dict[str, str], outcome: Outcome) -> None:
        self.urls = urls
        self.outcome = outcome
        partner = base64.b64encode(creds["partner"].encode()).decode()
        self.partner = {"Authorization": f"Basic {partner}"}
        self.direct = {
            "client_id": creds["direct_id"],
            "client_secret": creds["direct_secret"],
            "redirect_uri": REDIRECT,
            "scope": SCOPE,
            "account_id": creds["direct_account"],
        }
        self.fanout = dict(self.direct, account_id=creds["fanout_account"])
        self.grant = {
            "client_id": creds["app_id"],
            "client_secret": creds["app_secret"],
            "redirect_uri": REDIRECT,
            "scope": SCOPE,
            "account_id": creds["app_account"],
        }
        self.app_auth = (creds["app_id"], creds["app_secret"])
        self.revocable: list[str] = []  # direct tokens, revoked by the load
        self.held: list[str] = []  # code-flow tokens, never revoked: the ones checked
        self.running = False
        self.records = outcome.records  # where this run's requests are recorded

    async def request(
        self, http: httpx.AsyncClient, kind: str, worker: int, token: str = "", **kw: Any
    ) -> httpx.Response | None:
        """Send, record; the response when it is the success expected, else ``None``."""
        method, path, _ = KINDS[kind]
        sent = time.perf_counter()
        try:
            response = await http.request(method, self.urls[worker] + path + token, **kw)
        except httpx.TransportError:
            self.record(Record(kind, worker, sent, time.perf_counter(), NO_ANSWER))
            return None
        status = response.status_code
        self.record(Record(kind, worker, sent, time.perf_counter(), status))
        if status == EXPECTED[kind]:
            return response
        if status < 500:
            self.outcome.unexpected.append(f"{kind} on worker {worker}: {status} {response.text}")
        elif status != 503:
            self.outcome.server_errors.append(
                f"{kind} on worker {worker}: {status} {response.text}"
            )
        return None

    def record(self, record: Record) -> None:
        self.records.append(record)
        if self.records is not self.outcome.records:
            self.outcome.records.append(record)

    async def client(self, worker: int, seed: int) -> None:
        rng = random.Random(seed)
        following = (worker + 1) % len(self.urls)
        timeout = httpx.Timeout(30)
        async with httpx.AsyncClient(timeout=timeout) as http:
            while self.running:
                pick = rng.random()
                if pick < 0.3:
                    issued = await self.request(
                        http, "issue", worker, json=self.direct, headers=self.partner
                    )
                    if issued is not None:
                        token = issued.json()["access_token"]
                        self.outcome.acknowledged.append(token)
                        self.revocable.append(token)
                elif pick < 0.5 or not self.held:
                    code = await self.request(
                        http, "authorize", worker, json=self.grant, headers=self.partner
                    )
                    if code is None:
                        continue
                    exchanged = await self.request(
                        http,
                        "exchange",
                        following,
                        auth=self.app_auth,
                        data={
                            "grant_type": "authorization_code",
                            "code": code.json()["code"],
                            "redirect_uri": REDIRECT,
                        },
                    )
                    if exchanged is not None:
                        token = exchanged.json()["access_token"]
                        self.outcome.acknowledged.append(token)
                        self.held.append(token)
                elif pick < 0.7 and self.revocable:
                    token = self.revocable.pop(rng.randrange(len(self.revocable)))
                    revoked = await self.request(
                        http, "revoke", worker, token, headers=self.partner
                    )
                    if revoked is not None:
                        self.outcome.revoked.append(token)
                    else:
                        self.outcome.unconfirmed.append(token)
                else:
                    # One of the last 50 tokens: a worker's cache holds it, or not yet.
                    token = self.held[-rng.randint(1, min(50, len(self.held)))]
                    bearer = {"Authorization": f"Bearer {token}"}
                    await self.request(http, "check", worker, headers=bearer)

    async def run(self, concurrency: int, seed: int, body: Callable[[], Awaitable[None]]) -> None:
        """The clients run while ``body`` does; they finish the request they are in."""
        self.running = True
        self.records = []
        async with anyio.create_task_group() as tasks:
            for n in range(concurrency):
                tasks.start_soon(self.client, n % len(self.urls), seed * 1000 + n)
            try:
                await body()
            finally:
                self.running = False


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else math.nan


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1e3:.1f}"


class Machine:
    """How much of the machine's CPU went to other processes than this benchmark's own
    (itself, its workers, its PostgreSQL cluster) and to the hypervisor (steal): the
    machine may be shared, and its other work shows in every figure.

    Parameters:
        cluster: The PostgreSQL cluster: its postmaster and the postmaster's children.
        pids: The benchmark's other processes.
    """

    def __init__(self, cluster: Cluster, pids: list[int]) -> None:
        self.cluster = cluster
        self.pids = pids
        self.ticks: dict[int, int] = {}
        self.stat: list[int] | None = None
        self.ours = self.busy = self.steal = self.total = 0

    async def watch(self) -> None:
        while True:
            await anyio.to_thread.run_sync(self.sample)
            await anyio.sleep(0.5)

    def share(self) -> str:
        """Since the last call: the share of others and of steal, for a heading."""
        total = self.total or 1
        others = max(0, self.busy - self.ours) / total
        steal = self.steal / total
        self.ours = self.busy = self.steal = self.total = 0
        return f" (other processes took {others:.0%} of the CPU, steal {steal:.0%})"

    def sample(self) -> None:
        pids = set(self.pids)
        with contextlib.suppress(OSError, ValueError):
            postmaster = self.cluster.postmaster()
            pids |= {postmaster, *children(postmaster)}
        ticks = {pid: t for pid in pids if (t := cpu_ticks(pid)) is not None}
        with open("/proc/stat") as stat:
            now = [int(n) for n in stat.readline().split()[1:9]]
        if self.stat is not None:
            # A process seen for the first time started since the last sample; one that
            # ended was reaped by its parent, whose children's time holds it.
            self.ours += sum(t - self.ticks.get(pid, 0) for pid, t in ticks.items())
            user, nice, system, idle, iowait, irq, softirq, steal = (
                a - b for a, b in zip(now, self.stat, strict=True)
            )
            self.busy += user + nice + system + irq + softirq
            self.steal += steal
            self.total += user + nice + system + idle + iowait + irq + softirq + steal
        self.stat, self.ticks = now, ticks


def cpu_ticks(pid: int) -> int | None:
    """A process's CPU time and its reaped children's, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(n) for n in fields[11:15])  # utime, stime, cutime, cstime


def children(parent: int) -> set[int]:
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == parent:
                        found.add(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


# Phase 1


async def mixed_load(load: Load, seconds: float, concurrency: int) -> list[str]:
    async def wait() -> None:
        await anyio.sleep(seconds)

    started = time.perf_counter()
    await load.run(concurrency, 1, wait)
    elapsed = time.perf_counter() - started
    records = load.records
    lines = [
        f"{'kind':<42}{'requests':>9}{'per s':>8}{'p50 ms':>8}{'p99 ms':>8}{'5xx':>6}",
    ]
    names = {kind: f"{kind} ({method} {path})" for kind, (method, path, _) in KINDS.items()}
    names["revoke"] = names["revoke"].replace("/)", "/{token})")
    for kind in (*KINDS, "all"):
        mine = [r for r in records if kind in (r.kind, "all")]
        latency = [r.answered - r.sent for r in mine]
        errors = sum(1 for r in mine if r.status >= 500)
        lines.append(
            f"{names.get(kind, 'all'):<42}{len(mine):>9}{len(mine) / elapsed:>8.0f}"
            f"{ms(percentile(latency, 0.5)):>8}{ms(percentile(latency, 0.99)):>8}{errors:>6}"
        )
    return lines


# Phase 2


@dataclass
class Pair:
    revoker: bool
    from_answer: float  # NaN: never reached
    from_send: float


async def fanout(load: Load, trials: int, poll: float, bound: float) -> list[Pair]:
    pairs: list[Pair] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(30)) as http:
        for trial in range(trials):
            pairs += await fanout_trial(load, http, trial % len(load.urls), poll, bound)
    return pairs


async def fanout_trial(
    load: Load, http: httpx.AsyncClient, revoker: int, poll: float, bound: float
) -> list[Pair]:
    """One token, cached by every worker, revoked on ``revoker``: when each refused it."""
    issued = await load.request(http, "issue", revoker, json=load.fanout, headers=load.partner)
    assert issued is not None, "fan-out: the token was not issued"
    token = issued.json()["access_token"]
    load.outcome.acknowledged.append(token)
    bearer = {"Authorization": f"Bearer {token}"}

    async def cache(worker: int) -> None:
        for _ in range(100):
            answer = await http.get(load.urls[worker] + "/quote", headers=bearer)
            if answer.status_code == 200:
                return
            await anyio.sleep(0.05)
        raise RuntimeError(f"fan-out: worker {worker} never accepted the token")

    async with anyio.create_task_group() as tasks:
        for worker in range(len(load.urls)):
            tasks.start_soon(cache, worker)
    revoked = await load.request(http, "revoke", revoker, token, headers=load.partner)
    assert revoked is not None, "fan-out: the revocation failed"
    load.outcome.revoked.append(token)
    sent, answered = load.records[-1].sent, load.records[-1].answered
    pairs: list[Pair] = []

    async def refused(worker: int) -> None:
        while True:
            answer = await http.get(load.urls[worker] + "/quote", headers=bearer)
            now = time.perf_counter()
            if answer.status_code == 401:
                pairs.append(Pair(worker == revoker, now - answered, now - sent))
                return
            if answer.status_code != 200:
                wrong = f"fan-out check on worker {worker}: {answer.status_code} {answer.text}"
                if answer.status_code < 500:
                    load.outcome.unexpected.append(wrong)
                elif answer.status_code != 503:
                    load.outcome.server_errors.append(wrong)
            if now - answered > bound:
                pairs.append(Pair(worker == revoker, math.nan, math.nan))
                return
            await anyio.sleep(poll)

    async with anyio.create_task_group() as tasks:
        for worker in range(len(load.urls)):
            tasks.start_soon(refused, worker)
    return pairs


def fanout_lines(pairs: list[Pair]) -> list[str]:
    lines = [
        f"{'latency from':<24}{'workers':<10}{'pairs':>7}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}{'never':>7}"
    ]
    rows: list[tuple[str, str, list[Pair], Callable[[Pair], float]]] = [
        (
            "the DELETE's answer",
            "revoking",
            [p for p in pairs if p.revoker],
            lambda p: p.from_answer,
        ),
        (
            "the DELETE's answer",
            "others",
            [p for p in pairs if not p.revoker],
            lambda p: p.from_answer,
        ),
        ("the DELETE's answer", "all", pairs, lambda p: p.from_answer),
        ("the DELETE's sending", "all", pairs, lambda p: p.from_send),
    ]
    for start, who, mine, value in rows:
        reached = [value(p) for p in mine if not math.isnan(value(p))]
        lines.append(
            f"{start:<24}{who:<10}{len(mine):>7}{ms(percentile(reached, 0.5)):>8}"
            f"{ms(percentile(reached, 0.99)):>8}{ms(max(reached, default=math.nan)):>8}"
            f"{len(mine) - len(reached):>7}"
        )
    return lines


# Phase 3


@dataclass
class Fault:
    name: str
    records: list[Record]
    start: float
    end: float
    back: dict[int, float]  # worker: when its first write after the fault succeeded


async def fault(
    load: Load,
    name: str,
    inject: Callable[[], Awaitable[None]],
    args: argparse.Namespace,
    seed: int,
) -> Fault:
    times: dict[str, float] = {}
    back: dict[int, float] = {}

    async def body() -> None:
        await anyio.sleep(args.settle_seconds)
        times["start"] = time.perf_counter()
        await inject()
        end = times["end"] = time.perf_counter()
        deadline = end + args.recovery_timeout
        seen = 0
        while len(back) < len(load.urls) and time.perf_counter() < deadline:
            await anyio.sleep(0.02)
            records = load.records
            for record in records[seen:]:
                if (
                    record.kind in WRITES
                    and record.status == EXPECTED[record.kind]
                    and record.answered >= end
                ):
                    back[record.worker] = min(back.get(record.worker, math.inf), record.answered)
            seen = len(records)
        await anyio.sleep(args.tail_seconds)

    await load.run(args.concurrency, seed, body)
    start = times["start"]
    return Fault(name, [r for r in load.records if r.answered >= start], start, times["end"], back)


def fault_lines(faults: list[Fault], count: int) -> list[str]:
    lines = [
        f"{'fault':<30}{'requests':>9}{'2xx':>7}{'503':>6}{'5xx*':>6}{'4xx':>5}{'no answer':>10}"
        f"{'503 p50':>9}{'503 p99':>9}{'503 max':>9}{'back s':>8}"
    ]
    for f in faults:
        statuses = [r.status for r in f.records]
        slow = [r.answered - r.sent for r in f.records if r.status == 503]
        back = f"{max(f.back.values()) - f.end:.2f}" if len(f.back) == count else "never"
        lines.append(
            f"{f.name:<30}{len(statuses):>9}{sum(200 <= s < 300 for s in statuses):>7}"
            f"{statuses.count(503):>6}{sum(s >= 500 and s != 503 for s in statuses):>6}"
            f"{sum(400 <= s < 500 for s in statuses):>5}{statuses.count(NO_ANSWER):>10}"
            f"{ms(percentile(slow, 0.5)):>9}{ms(percentile(slow, 0.99)):>9}"
            f"{ms(max(slow, default=math.nan)):>9}{back:>8}"
        )
    return lines


# Acknowledged writes


@dataclass
class Writes:
    tokens: int  # tokens answered 200
    missing: int  # of which no row
    revocations: int  # revocations answered 204
    unrevoked: int  # of which no revoked_at
    unacknowledged: dict[str, int]  # rows no 200 answered, by how they were asked for
    unconfirmed: int  # revocations not answered 204
    applied: int  # of which revoked_at is set


async def check_writes(url: str, outcome: Outcome, creds: dict[str, str]) -> Writes:
    """Every acknowledged write looked up in the database."""
    async with SQLAlchemyStorage(url, migrate=False) as storage:
        t = storage.tables.tokens
        query = sa.select(t.c.token_hash, t.c.client_id, t.c.revoked_at)
        async with storage.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    stored = {row.token_hash: row.revoked_at is not None for row in rows}
    issued = {hash_secret(token) for token in outcome.acknowledged}
    revoked = {hash_secret(token) for token in outcome.revoked}
    kinds = {creds["direct_id"]: "issue", creds["app_id"]: "exchange"}
    unacknowledged = {"issue": 0, "exchange": 0}
    for row in rows:
        if row.token_hash not in issued:
            unacknowledged[kinds[row.client_id]] += 1
    return Writes(
        tokens=len(issued),
        missing=sum(1 for h in issued if h not in stored),
        revocations=len(revoked),
        unrevoked=sum(1 for h in revoked if not stored.get(h, False)),
        unacknowledged=unacknowledged,
        unconfirmed=len(outcome.unconfirmed),
        applied=sum(1 for token in outcome.unconfirmed if stored.get(hash_secret(token))),
    )


def write_records(path: Path, records: list[Record], names: list[str], began: float) -> None:
    """Every request, one CSV line: kind, worker, sent and answered (s), status."""
    with path.open("w") as out:
        out.write("kind,worker,sent,answered,status\n")
        for r in records:
            out.write(
                f"{r.kind},{names[r.worker]},{r.sent - began:.6f},{r.answered - began:.6f},"
                f"{r.status}\n"
            )


async def run(
    args: argparse.Namespace, cluster: Cluster, workers: Workers, creds: dict[str, str]
) -> int:
    outcome = Outcome()
    load = Load(workers.urls, creds, outcome)
    count = len(workers.urls)
    began = time.perf_counter()
    machine = Machine(cluster, [os.getpid(), *(p.pid for p in workers.processes)])
    async with anyio.create_task_group() as watching:
        watching.start_soon(machine.watch)
        print(f"phase 1: mixed load, {args.load_seconds:g} s", file=sys.stderr)
        phase1 = await mixed_load(load, args.load_seconds, args.concurrency)
        shares = [machine.share()]
        print(f"phase 2: revocation fan-out, {args.trials} trials", file=sys.stderr)
        pairs = await fanout(load, args.trials, args.poll_ms / 1e3, args.fanout_timeout)
        shares.append(machine.share())

        async def restart() -> None:
            await anyio.to_thread.run_sync(cluster.restart)

        async def terminate() -> None:
            await cluster.terminate_backends()

        async def freeze() -> None:
            await cluster.terminate_backends()
            postmaster = cluster.postmaster()
            os.kill(postmaster, signal.SIGSTOP)
            try:
                await anyio.sleep(args.freeze_seconds)
            finally:
                os.kill(postmaster, signal.SIGCONT)

        faults = []
        for n, (name, inject) in enumerate(
            [
                ("restart -m fast", restart),
                ("every backend terminated", terminate),
                (f"terminated, frozen {args.freeze_seconds:g} s", freeze),
            ]
        ):
            print(f"phase 3: {name}", file=sys.stderr)
            faults.append(await fault(load, name, inject, args, seed=2 + n))
        shares.append(machine.share())
        watching.cancel_scope.cancel()
    for f in faults:
        f.name += f", took {f.end - f.start:.1f} s" if f.name.startswith("restart") else ""
    writes = await check_writes(cluster.url, outcome, creds)
    if args.records is not None:
        write_records(args.records, outcome.records, workers.names, began)
    took = time.perf_counter() - began

    never_reached = sum(1 for p in pairs if math.isnan(p.from_answer))
    not_back = [f.name for f in faults if len(f.back) < count]
    server_errors = len(outcome.server_errors)
    warnings, errors = workers.log_levels()
    nodes, per = args.nodes, args.workers
    rule = "-" * 97
    print()
    print(
        f"{nodes} node{'s' * (nodes != 1)} x {per} workers on one PostgreSQL "
        f"{creds['version']} (each worker a uvicorn process on its own port), "
        f"token cache {args.cache_ttl:g} s"
    )
    print(
        f"{args.concurrency} load clients (httpx, one process), each bound to a worker; "
        f"{os.cpu_count()} cores shared by all (load average {args.load_average:.1f} "
        "before it started)"
    )
    print(rule)
    print(f"Phase 1 - mixed load, {args.load_seconds:g} s{shares[0]}")
    print("\n".join(phase1))
    print(rule)
    print(
        f"Phase 2 - revocation fan-out, {args.trials} trials x {count} workers, "
        f"polled every {args.poll_ms:g} ms, no other load{shares[1]}"
    )
    print("\n".join(fanout_lines(pairs)))
    print(rule)
    print(f"Phase 3 - database faults under the mixed load{shares[2]}")
    print("\n".join(fault_lines(faults, count)))
    print(
        f"  counted from the fault's start to {args.tail_seconds:g} s after every worker is back;"
        " 5xx*: other than 503;\n  no answer: connection error or timeout; 503 latency in ms;"
        " back s: from the fault's end\n  until every worker answered a write with a success"
    )
    print(rule)
    print(f"{'Acknowledged writes, looked up in PostgreSQL':<56}{'checked':>9}{'missing':>9}")
    print(f"{'tokens answered 200 (a row, by SHA-256)':<56}{writes.tokens:>9}{writes.missing:>9}")
    print(
        f"{'revocations answered 204 (revoked_at set)':<56}{writes.revocations:>9}"
        f"{writes.unrevoked:>9}"
    )
    extra = writes.unacknowledged
    print(
        f"  stored though the request got no 200: {extra['issue']} tokens issued, "
        f"{extra['exchange']} exchanged"
    )
    print(
        f"  applied though not answered 204: {writes.applied} of {writes.unconfirmed} revocations"
    )
    print(rule)
    print(
        f"{len(outcome.records)} requests in {took:.0f} s; worker logs: {warnings} WARNING "
        f"lines, {errors} ERROR lines"
    )
    problems = []
    if server_errors:
        problems.append(f"{server_errors} answers were a 5xx other than 503")
    if outcome.unexpected:
        problems.append(f"{len(outcome.unexpected)} answers were a 4xx where a success was due")
    if writes.missing or writes.unrevoked:
        problems.append(f"{writes.missing + writes.unrevoked} acknowledged writes are missing")
    if never_reached:
        problems.append(f"{never_reached} (trial, worker) pairs never saw the revocation")
    if not_back:
        problems.append("workers did not come back after: " + ", ".join(not_back))
    if problems:
        print("FAILED: " + "; ".join(problems))
        for line in (outcome.server_errors + outcome.unexpected)[:10]:
            print("  " + line[:300])
        return 1
    print(
        "OK: no 5xx but 503, every acknowledged write found, every revocation reached every "
        "worker, every worker back after each fault"
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="workers per node")
    parser.add_argument("--load-seconds", type=float, help="phase 1 (30 s; quick: 3 s)")
    parser.add_argument("--trials", type=int, help="phase 2 (30; quick: 5)")
    parser.add_argument("--freeze-seconds", type=float, help="the postmaster frozen (5; quick: 2)")
    parser.add_argument("--concurrency", type=int, help="load clients (12; quick: 4)")
    parser.add_argument("--cache-ttl", type=float, default=30, help="token cache, seconds")
    parser.add_argument("--poll-ms", type=float, default=1, help="phase 2's polling interval")
    parser.add_argument("--fanout-timeout", type=float, default=5, help="phase 2: never reached")
    parser.add_argument("--settle-seconds", type=float, help="load before each fault (3; quick: 1)")
    parser.add_argument("--tail-seconds", type=float, help="load after recovery (3; quick: 1)")
    parser.add_argument("--recovery-timeout", type=float, default=60, help="a worker not back")
    parser.add_argument("--logs", type=Path, help="keep the workers' and PostgreSQL's logs here")
    parser.add_argument("--records", type=Path, help="write every request to this CSV file")
    parser.add_argument("--quick", action="store_true", help="a few seconds per phase")
    args = parser.parse_args()
    for name, default, quick in [
        ("load_seconds", 30.0, 3.0),
        ("trials", 30, 5),
        ("freeze_seconds", 5.0, 2.0),
        ("concurrency", 12, 4),
        ("settle_seconds", 3.0, 1.0),
        ("tail_seconds", 3.0, 1.0),
    ]:
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    args.load_average = os.getloadavg()[0]  # the machine's other work, for the heading
    count = args.nodes * args.workers
    args.concurrency = max(args.concurrency, count)  # every worker gets a client

    directory = Path(tempfile.mkdtemp(prefix="broker-oauth-multinode-"))
    directory.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
    logs = args.logs or directory
    logs.mkdir(parents=True, exist_ok=True)
    # Each worker holds up to its pool (10) and overflow (10), and one LISTEN connection.
    cluster = Cluster(directory, free_port(), max_connections=count * 21 + 20)
    code = 1
    try:
        cluster.create()
        creds = anyio.run(seed, cluster.url)
        workers = Workers(count, args.workers, cluster.url, args.cache_ttl, logs)
        try:
            workers.wait_ready()
            options: dict[str, Any] = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}
            code = anyio.run(run, args, cluster, workers, creds, backend_options=options)
        finally:
            workers.stop()
    finally:
        cluster.destroy()
        if args.logs is not None and cluster.log.exists():
            shutil.copy(cluster.log, args.logs / "postgresql.log")
        shutil.rmtree(directory, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
