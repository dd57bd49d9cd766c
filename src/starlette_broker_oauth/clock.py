"""Time, as the library reads it: one injectable clock.

The domain stamps and expires codes and tokens with :meth:`Clock.now`, the token check
compares expiry with :meth:`Clock.time` and ages its cache with :meth:`Clock.monotonic`.
:class:`SystemClock` reads the real clocks; :class:`ManualClock` stands still until it is
moved, so tests advance time instead of sleeping through lifetimes.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Where the library reads the time."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def time(self) -> float:
        """The current time in seconds since the epoch (``now().timestamp()``)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for cache ages)."""


class SystemClock:
    """The real clocks: ``datetime.now(UTC)``, ``time.time`` and ``time.monotonic``."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)


class ManualClock:
    """A clock that moves only when told: for tests and simulations.

    Parameters:
        start: The time it shows first; the real current time by default.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._monotonic = 0.0

    def now(self) -> datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, delta: timedelta | float) -> None:
        """Move every reading forward by ``delta`` (a ``timedelta`` or seconds)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


SYSTEM_CLOCK: Clock = SystemClock()
