"""Revocation announcements across processes: PostgreSQL ``NOTIFY`` and ``LISTEN``.

The core announces a revocation once its transaction has committed; the storage then
sends :func:`notify` in a transaction of its own, and PostgreSQL delivers it to every
listening process. Each payload carries when it was sent (after the revocation's commit),
so that each receiver reports the lag from commit to its caches
(``broker_oauth.revocation.lag``). (A process that dies between the two leaves other
processes' caches to their ``token_cache_ttl``.) Each payload names the storage instance
that sent it: that instance has told its own listeners already, and skips them when they
come back.
Each process with a token cache holds one of its engine's connections for ``LISTEN``
(:class:`RevocationListener`), passes what arrives to the store's listeners, and
reconnects with backoff, logging why, when it drops. A connection that stops answering
is noticed within two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...telemetry import record_revocation_lag, watch_listener
from ..base import CacheReset, ClientChanged, RevocationMessage, TokensRevoked
from .database import is_transient

__all__ = ["RevocationListener", "from_wire", "notify", "wire_messages"]

_NOTIFY = sa.text("SELECT pg_notify(:channel, :message)")
log = logging.getLogger("starlette_broker_oauth")
# How often the LISTEN connection is probed, and how long a probe may take, in seconds.
_PROBE_EVERY = 1.0


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
    """Queue ``messages`` on ``channel`` in the connection's transaction, from ``origin``,
    stamped with the time now (``origin@seconds since the epoch``)."""
    sender = f"{origin}@{time.time():.6f}"
    for message in messages:
        await conn.execute(_NOTIFY, {"channel": channel, "message": f"{sender} {message}"})


class RevocationListener:
    """Holds a ``LISTEN`` connection and hands every message to ``announce``.

    The connection is one of the engine's, so it is made with the engine's own settings
    (``connect_args``, TLS, ``async_creator``), and it is held for as long as the storage
    is open. Whatever happened while nobody listened is unknown, so on every
    (re)connection and every loss it announces ``*``: caches start from scratch. Each
    failure to connect, and each loss, is logged; it retries with backoff. asyncpg runs
    on asyncio only, so this is an asyncio task.

    Parameters:
        engine: The storage's engine (PostgreSQL, asyncpg).
        channel: The ``NOTIFY`` channel.
        announce: Called with each message.
        origin: This storage instance's name in payloads; its own messages are skipped.
    """

    def __init__(
        self, engine: AsyncEngine, channel: str, announce: Callable[[str], None], *, origin: str
    ) -> None:
        self._engine = engine
        self._channel = channel
        self._announce = announce
        self._origin = origin
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self._listened = False  # whether the current attempt got as far as listening
        watch_listener(self)

    @property
    def channel(self) -> str:
        """The channel it listens on."""
        return self._channel

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
        sender, _, message = payload.partition(" ")
        origin, _, sent = sender.partition("@")
        if origin != self._origin:
            self._announce(message)
            with contextlib.suppress(ValueError):  # a sender that does not stamp them
                record_revocation_lag(time.time() - float(sent))

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            self._listened = False
            try:
                await self._hold()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._listened:  # a connection that worked was lost: back off anew
                    delay = 0.1
                if not is_transient(exc):
                    log.exception("revocation listener on %s failed", self._channel)
                else:
                    log.warning(
                        "revocation listener on %s lost its connection (%s); retrying in %.1f s",
                        self._channel,
                        type(exc).__name__,
                        delay,
                    )
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _hold(self) -> None:
        """Listen on one of the engine's connections until it is lost."""
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            lost = anyio.Event()
            driver.add_termination_listener(lambda _: lost.set())
            await driver.add_listener(self._channel, self._received)
            self.connected = self._listened = True
            self._announce("*")
            try:
                while not lost.is_set() and not driver.is_closed():
                    with anyio.move_on_after(_PROBE_EVERY):
                        await lost.wait()
                    if not lost.is_set():
                        # Notice a silently dead connection (outside any transaction,
                        # where notifications are delivered).
                        await driver.execute("SELECT 1", timeout=_PROBE_EVERY)
            finally:
                self.connected = False
                self._announce("*")
                with contextlib.suppress(Exception):
                    await driver.remove_listener(self._channel, self._received)
            if lost.is_set() or driver.is_closed():
                raw.invalidate()
                raise ConnectionError("the LISTEN connection was lost")
