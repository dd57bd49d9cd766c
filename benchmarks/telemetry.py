"""What OpenTelemetry costs the token check: off, on without an SDK, and recording.

Starts uvicorn (one worker, uvloop + httptools) serving ``_token_app``'s JSON route under
each of three set-ups (``_otel_app.py``): OpenTelemetry not importable (the ``otel`` extra
absent), the API without an SDK, and the SDK recording every span and metric into
exporters that drop them; and, in each, the route guarded by the library's backend without
the cache (each check reads SQLite: a ``token_with_client`` storage operation and a
``broker_oauth.token_check`` span) and with it (each check a cache hit: one histogram
point). wrk drives each from a second process, in rounds, interleaved, in the same run;
it prints requests/s, p50 and p99, each as a ratio of the bare route and of the same
route with OpenTelemetry absent.

Run: ``python benchmarks/telemetry.py [--duration 3] [--rounds 3]``.
Needs ``wrk`` (Debian package) and ``pip install 'starlette-broker-oauth[bench,otel]'``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import anyio
from _wrk import free_port, start_worker
from token_check import run_wrk, seed

# (set-up, mode of _token_app)
RUNS = [
    ("absent", "bare"),
    ("absent", "protected"),
    ("api", "protected"),
    ("sdk", "protected"),
    ("absent", "cached"),
    ("api", "cached"),
    ("sdk", "cached"),
]


def serve(setup: str, mode: str, database: Path, port: int) -> subprocess.Popen[bytes]:
    environ = {
        "BENCH_OTEL": setup,
        "BENCH_MODE": mode,
        "BENCH_DATABASE": str(database),
        "BENCH_CACHE_TTL": "5",
    }
    return start_worker("_otel_app:app", port, environ)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    results: dict[tuple[str, str], list[tuple[float, float, float]]] = {run: [] for run in RUNS}
    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "bench.db"
        token = anyio.run(seed, database, 1000)
        for _ in range(args.rounds):
            for setup, mode in RUNS:
                port = free_port()
                process = serve(setup, mode, database, port)
                try:
                    url = f"http://127.0.0.1:{port}/quote"
                    run_wrk(url, token, 1)  # warm-up
                    results[setup, mode].append(run_wrk(url, token, args.duration))
                finally:
                    process.terminate()
                    process.wait(10)

    def median(run: tuple[str, str], index: int) -> float:
        return statistics.median(r[index] for r in results[run])

    bare = median(("absent", "bare"), 0)
    print(
        f"\nThe token check and OpenTelemetry: one uvicorn worker, wrk -t1 -c32, "
        f"{args.rounds} x {args.duration}s per run (medians)"
    )
    print(
        f"{'route':<12}{'OpenTelemetry':<22}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'vs bare':>9}{'vs absent':>11}"
    )
    names = {"absent": "not installed", "api": "API, no SDK", "sdk": "SDK, no-op exporters"}
    for setup, mode in RUNS:
        rps = median((setup, mode), 0)
        line = f"{mode:<12}{names[setup]:<22}{rps:>9.0f}{median((setup, mode), 1):>8.2f}"
        line += f"{median((setup, mode), 2):>8.2f}{rps / bare:>9.2f}"
        if mode != "bare":
            line += f"{rps / median(('absent', mode), 0):>11.2f}"
        print(line)


if __name__ == "__main__":
    main()
