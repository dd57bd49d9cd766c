"""Revocation announcements across processes: PostgreSQL ``NOTIFY`` and ``LISTEN``.

A revoking transaction calls :func:`notify` before it commits, so PostgreSQL delivers
the messages to every listening process only if, and when, it commits. Each payload
names the storage instance that sent it: that instance announced its own revocations
already, at its commit, and skips them when they come back. Each process with
a token cache holds one ``LISTEN`` connection (:class:`RevocationListener`) that passes
what arrives to the store's listeners, and reconnects with backoff when it drops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..base import CacheReset, ClientChanged, RevocationMessage, TokensRevoked

__all__ = ["RevocationListener", "from_wire", "notify", "wire_messages"]

_NOTIFY = sa.text("SELECT pg_notify(:channel, :message)")


def wire_messages(message: RevocationMessage) -> list[str]:
    """The ``NOTIFY`` payloads of a message (before the sender's name): ``t:<hash>`` per
    revoked token, ``c:<client id>``, or ``*``."""
    if isinstance(message, TokensRevoked):
        return [f"t:{token_hash}" for token_hash in message.token_hashes]
    if isinstance(message, ClientChanged):
        return [f"c:{message.client_id}"]
    return ["*"]


def from_wire(payload: str) -> RevocationMessage:
    """The message of a payload; anything not understood (a newer sender) resets caches."""
    kind, _, value = payload.partition(":")
    if kind == "t" and value:
        return TokensRevoked((value,))
    if kind == "c" and value:
        return ClientChanged(value)
    return CacheReset()


async def notify(
    conn: AsyncConnection, channel: str, messages: Sequence[str], *, origin: str
) -> None:
    """Queue ``messages`` on ``channel`` in the connection's transaction, from ``origin``."""
    for message in messages:
        await conn.execute(_NOTIFY, {"channel": channel, "message": f"{origin} {message}"})


class RevocationListener:
    """Holds a ``LISTEN`` connection and hands every message to ``announce``.

    Whatever happened while nobody listened is unknown, so on every (re)connection and
    every loss it announces ``*``: caches start from scratch. asyncpg runs on asyncio
    only, so this is an asyncio task.

    Parameters:
        dsn: A ``postgresql://`` URL for asyncpg.
        channel: The ``NOTIFY`` channel.
        announce: Called with each message.
        origin: This storage instance's name in payloads; its own messages are skipped.
    """

    def __init__(
        self, dsn: str, channel: str, announce: Callable[[str], None], *, origin: str
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._announce = announce
        self._origin = origin
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        """Stop listening; waits at most 5 s for the connection to go."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException), anyio.move_on_after(5):
                await self._task
            self._task = None

    def _received(self, connection: object, pid: int, channel: str, payload: str) -> None:
        origin, _, message = payload.partition(" ")
        if origin != self._origin:
            self._announce(message)

    async def _listen(self) -> None:
        import asyncpg

        delay = 0.1
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            try:
                lost = anyio.Event()
                connection.add_termination_listener(lambda _, lost=lost: lost.set())
                await connection.add_listener(self._channel, self._received)
                self._announce("*")
                while not lost.is_set() and not connection.is_closed():
                    with anyio.move_on_after(5):
                        await lost.wait()
                    if not lost.is_set():
                        try:  # notice a silently dead connection
                            await connection.execute("SELECT 1", timeout=5)
                        except (OSError, asyncpg.PostgresError, TimeoutError):
                            break
            finally:
                self._announce("*")
                connection.terminate()
