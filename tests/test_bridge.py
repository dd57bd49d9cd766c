"""The greenlet bridge that lets Authlib's synchronous grants await the repositories."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from starlette_broker_oauth._oauth.bridge import await_, run_sync

from .test_layers import MODULES, imports

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


async def double_later(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return x * 2


def sync_code(x: int) -> int:
    return await_(double_later(x)) + await_(double_later(1))


async def test_sync_code_awaits_on_the_loop() -> None:
    assert await run_sync(sync_code, 20) == 42


async def failing() -> None:
    await anyio.lowlevel.checkpoint()
    raise KeyError("boom")


def catches() -> str:
    try:
        await_(failing())
    except KeyError:
        return "caught"
    return "not raised"


async def test_exceptions_reach_the_sync_code() -> None:
    assert await run_sync(catches) == "caught"


def raises() -> None:
    raise ValueError("from sync")


async def test_exceptions_leave_run_sync() -> None:
    with pytest.raises(ValueError, match="from sync"):
        await run_sync(raises)


async def test_other_tasks_run_while_sync_code_waits() -> None:
    order: list[str] = []

    async def slow() -> None:
        order.append("slow-start")
        await anyio.sleep(0.05)
        order.append("slow-end")

    def sync() -> None:
        await_(slow())

    async def other() -> None:
        await anyio.sleep(0.01)
        order.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_sync, sync)
        tg.start_soon(other)
    assert order == ["slow-start", "other", "slow-end"]


def test_await_outside_run_sync_is_an_error() -> None:
    coro = double_later(1)
    with pytest.raises(RuntimeError, match="outside run_sync"):
        await_(coro)


def test_greenlet_only_in_the_bridge() -> None:
    """Only the bridge knows that greenlets run the grants: the adapter keeps nothing of a
    request by greenlet (what a request has read travels on its ``OAuthRequest``)."""
    users = {m for m, path in MODULES if "greenlet" in {n.split(".")[0] for n in imports(path, m)}}
    assert users == {"_oauth.bridge"}
