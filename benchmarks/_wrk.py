"""What the benchmarks share: a free port, one uvicorn worker started and awaited, and
wrk's figures."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def figures(out: str) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 in ms, from ``wrk --latency``'s output; a run
    that saw a non-2xx answer is an error."""
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return rps, pct("50"), pct("99")


def start_worker(
    app: str, port: int, environ: Mapping[str, str], *, probe: str = "/quote"
) -> subprocess.Popen[bytes]:
    """``app`` (``module:attribute`` in benchmarks/) served by one uvicorn worker (uvloop,
    httptools, no access log) with ``environ`` added, once ``probe`` answers. The
    caller's ``PYTHONPATH`` comes first, so ``PYTHONPATH=...`` runs a given copy of the
    library."""
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(HERE)]))
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--no-access-log"]
    command += ["--log-level", "warning", "--loop", "uvloop", "--http", "httptools"]
    process = subprocess.Popen(command, env=os.environ | dict(environ) | {"PYTHONPATH": path})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}{probe}", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{app} did not start on port {port}")
