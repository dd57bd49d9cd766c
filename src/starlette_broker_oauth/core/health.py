"""Readiness: whether this worker can serve requests, and which check says it cannot.

The rule is here; the storage offers the probes (:meth:`.Storage.ping`,
:meth:`.Storage.schema_state`, :attr:`.GrantStore.listener_connected`) and the faces answer
over HTTP (:func:`starlette_broker_oauth.web.health.health_routes`). A worker is ready when
each check passes:

* ``database``: the storage answers a trivial query within the bound (``ok``); else
  ``failed`` (it cannot answer: :class:`~starlette_broker_oauth.errors.StorageUnavailable`)
  or ``timeout`` (no answer within the bound);
* ``schema``: the tables are at the revision this version of the library expects
  (``ok``); else ``behind`` (an earlier revision, or no tables) or ``unknown`` (a revision
  this version does not know, such as one a newer version migrated to); ``failed`` or
  ``timeout`` as the database's, if reading the revision does;
* ``listener``: the connection on which this worker hears other workers' revocations is up
  (``ok``; PostgreSQL with a token cache); else ``disconnected``.

A check that does not apply is ``skipped``, with the reason: a storage that offers no
probe, no schema or no listener, and the schema while the database does not answer. A
skipped check does not make a worker unready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import anyio

from ..errors import StorageUnavailable
from ..storage.base import GrantStore, Storage

__all__ = ["DEFAULT_TIMEOUT", "Check", "CheckStatus", "Readiness", "ReadinessReport"]

#: How long readiness waits for the storage, in seconds, unless told otherwise.
DEFAULT_TIMEOUT = 1.0

CheckStatus = Literal["ok", "skipped", "failed", "timeout", "behind", "unknown", "disconnected"]
_PASSING: frozenset[CheckStatus] = frozenset({"ok", "skipped"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """The outcome of one check.

    Parameters:
        status: ``ok``, ``skipped`` or why it failed.
        details: What else it found: ``reason`` (why it failed or was skipped), the
            schema's ``revision`` and ``expected``, the bound a ``timeout`` waited.
    """

    status: CheckStatus
    details: Mapping[str, str | float | None] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status in _PASSING


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadinessReport:
    """Every check, by name (``database``, ``schema``, ``listener``).

    Parameters:
        checks: The outcome of each check.
    """

    checks: Mapping[str, Check]

    @property
    def ready(self) -> bool:
        """Whether every check passed."""
        return all(check.passed for check in self.checks.values())


class Readiness:
    """Whether this worker can serve; ``create_oauth_app`` builds one as
    ``app.state.readiness``.

    Parameters:
        storage: The storage to probe; ``None`` when the app's repositories are the
            platform's own, one by one (then there is nothing to probe, and readiness
            says so).
        grants: The grant store, whose revocation listener is checked.
        timeout: How long the checks wait for the storage, in seconds, in all.
    """

    def __init__(
        self, *, storage: Storage | None, grants: GrantStore, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.storage = storage
        self.grants = grants
        self.timeout = timeout

    async def check(self) -> ReadinessReport:
        """Run every check; the storage is given :attr:`timeout` in all, whatever it does
        (a hung database included)."""
        deadline = anyio.current_time() + self.timeout
        database = await self._database(deadline)
        if database.status in _PASSING:
            schema = await self._schema(deadline)
        else:
            schema = Check(status="skipped", details={"reason": "the database did not answer"})
        return ReadinessReport(
            checks={"database": database, "schema": schema, "listener": self._listener()}
        )

    async def _database(self, deadline: float) -> Check:
        storage = self.storage
        if storage is None:
            return _skipped("the repositories are the platform's own: nothing to probe")
        with anyio.CancelScope(deadline=deadline):
            try:
                answered = await storage.ping()
            except StorageUnavailable as exc:
                return Check(status="failed", details={"reason": str(exc) or "unavailable"})
            if not answered:
                return _skipped(f"{type(storage).__name__} offers no probe")
            return Check(status="ok")
        return Check(status="timeout", details={"after": self.timeout})

    async def _schema(self, deadline: float) -> Check:
        if self.storage is None:
            return _skipped("the repositories are the platform's own: nothing to probe")
        with anyio.CancelScope(deadline=deadline):
            try:
                state = await self.storage.schema_state()
            except StorageUnavailable as exc:
                return Check(status="failed", details={"reason": str(exc) or "unavailable"})
            if state is None:
                return _skipped(f"{type(self.storage).__name__} has no schema to check")
            found = {"revision": state.revision, "expected": state.expected}
            if state.revision == state.expected:
                return Check(status="ok", details=found)
            if state.revision is None or state.revision in state.earlier:
                return Check(status="behind", details=found)
            return Check(status="unknown", details=found)
        return Check(status="timeout", details={"after": self.timeout})

    def _listener(self) -> Check:
        connected = self.grants.listener_connected
        if connected is None:
            return _skipped("no revocation listener: no token cache, or one process")
        return Check(status="ok" if connected else "disconnected")


def _skipped(reason: str) -> Check:
    return Check(status="skipped", details={"reason": reason})
