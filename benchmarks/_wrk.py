"""What the benchmarks share: a free port, and wrk's figures."""

from __future__ import annotations

import re
import socket


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
