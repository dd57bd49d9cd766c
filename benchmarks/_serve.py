"""Serve an ASGI app with several uvicorn workers, each on a listening socket of its own.

``uvicorn --workers N`` shares one listening socket between the workers, and asyncio
accepts every pending connection at once: wrk's connections, opened together, often all
land on whichever worker woke first (one run counted 1934 garbage collections in one
worker and 8 in the other), so a figure measures one worker or two by chance. Here each
worker binds the port with ``SO_REUSEPORT`` and the kernel spreads connections across
them.

Run: ``python _serve.py MODULE:APP PORT WORKERS`` (uvloop, httptools, no access log).
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
from types import FrameType


def worker(app: str, port: int) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", access_log=False, log_level="warning"
    )
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    app, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    workers = [multiprocessing.Process(target=worker, args=(app, port)) for _ in range(count)]
    for process in workers:
        process.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        for process in workers:
            process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in workers:
        process.join()


if __name__ == "__main__":
    main()
