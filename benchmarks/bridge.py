"""Cost of running Authlib's synchronous grant code against async repositories.

Compares, in one process, three ways to run a sync function that makes two repository
calls (as a grant does: query the client, then save the token):

* direct   - the same two calls awaited from a coroutine (the floor; no bridge);
* greenlet - the library's bridge (``_bridge.run_sync`` / ``await_``);
* thread   - ``anyio.to_thread.run_sync`` with ``anyio.from_thread.run`` back to the loop.

Then it times a whole token-endpoint exchange through HTTP (in-memory storage) to put the
bridge's cost in proportion. Run: ``python benchmarks/bridge.py [--n 20000]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx

from starlette_broker_oauth import MemoryStorage, OAuthSettings, create_oauth_app
from starlette_broker_oauth._oauth.bridge import await_, run_sync


async def repository_call() -> int:
    return 1


def grant_greenlet() -> int:
    return await_(repository_call()) + await_(repository_call())


def grant_thread() -> int:
    return anyio.from_thread.run(repository_call) + anyio.from_thread.run(repository_call)


async def direct() -> int:
    return await repository_call() + await repository_call()


async def time_per_call(fn: Callable[[], Awaitable[int]], n: int) -> float:
    for _ in range(min(n, 500)):
        await fn()
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n


async def exchange_time(n: int) -> float:
    storage = MemoryStorage()
    app = create_oauth_app(settings=OAuthSettings(issuer="https://b.test"), storage=storage)
    creds = await storage.create_client(name="A", redirect_uris=["https://a/cb"])
    partner = await storage.create_partner(name="P")
    await storage.allow_partner_client(partner.key_id, creds.client_id)
    account = await storage.create_account()
    body = {
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "redirect_uri": "https://a/cb",
        "scope": "general",
        "account_id": str(account.account_id),
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://b.test") as http:
        codes = []
        for _ in range(n):
            r = await http.post(
                "/v1/oauth/authorize", json=body, auth=(partner.key_id, partner.secret)
            )
            codes.append(r.json()["code"])
        start = time.perf_counter()
        for code in codes:
            r = await http.post(
                "/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": "https://a/cb",
                },
                auth=(creds.client_id, creds.client_secret),
            )
            assert r.status_code == 200
        return (time.perf_counter() - start) / n


async def main(n: int) -> None:
    base = await time_per_call(direct, n)
    green = await time_per_call(lambda: run_sync(grant_greenlet), n)
    thread = await time_per_call(lambda: anyio.to_thread.run_sync(grant_thread), max(n // 10, 100))
    exchange = await exchange_time(max(n // 20, 200))
    print(f"{'bridge':<10}{'us/call':>10}{'vs direct':>12}")
    for name, value in (("direct", base), ("greenlet", green), ("thread", thread)):
        print(f"{name:<10}{value * 1e6:>10.2f}{value / base:>11.1f}x")
    print(f"token endpoint exchange (HTTP, memory storage): {exchange * 1e6:.0f} us/request")
    print(f"greenlet bridge overhead per exchange: {(green - base) / exchange:.2%}")
    print(f"thread bridge overhead per exchange:   {(thread - base) / exchange:.2%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    anyio.run(main, parser.parse_args().n)
