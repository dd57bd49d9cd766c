"""Run synchronous code (Authlib's grants) on the event loop, letting it await.

``run_sync(fn)`` runs ``fn`` in a greenlet; inside it, ``await_(coroutine)`` switches back
to the calling coroutine, which awaits the coroutine on the loop and switches its result
(or exception) back in. No thread hop and no blocking: the sync code is suspended while
the awaitable runs, exactly like an ``await``. This is the technique SQLAlchemy's asyncio
extension uses; the awaiting is done by plain ``await`` so it works under any AnyIO backend.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

import greenlet

__all__ = ["await_", "run_sync"]

T = TypeVar("T")


class _Bridged(greenlet.greenlet):
    """A greenlet whose parent is the coroutine driving it."""


def await_(awaitable: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
    """Wait for ``awaitable`` from synchronous code running under :func:`run_sync`."""
    current = greenlet.getcurrent()
    if not isinstance(current, _Bridged):
        if isinstance(awaitable, Coroutine):
            awaitable.close()
        raise RuntimeError("await_() called outside run_sync()")
    parent = current.parent
    assert parent is not None
    return cast(T, parent.switch(awaitable))


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on the event loop, serving its :func:`await_` calls."""
    child = _Bridged(fn, greenlet.getcurrent())
    result: Any = child.switch(*args)
    while not child.dead:
        try:
            value = await result
        except BaseException:
            result = child.throw(*sys.exc_info())
        else:
            result = child.switch(value)
    return cast(T, result)
