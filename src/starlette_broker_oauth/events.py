"""Audit events: what happened, to which ids. Events never carry a secret.

Pass a listener to ``create_oauth_app(on_event=...)``; it receives every event, and may
be a plain function or a coroutine function. A listener that raises is logged and does
not change the answer the client gets.

Token ids are the SHA-256 of the token, the form the storage keeps; the token itself is
never in an event.

Every event is also logged on the ``starlette_broker_oauth.audit`` logger at ``INFO``, as
one JSON object (:func:`audit_record`, schema :data:`AUDIT_SCHEMA`), so that a platform
ships them to its SIEM with its logging configuration alone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from .security import utcnow

__all__ = [
    "AUDIT_SCHEMA",
    "AdminChange",
    "ClientAuthenticationFailed",
    "CodeIssued",
    "CodeReplayDetected",
    "ConnectionRevoked",
    "EventListener",
    "OAuthEvent",
    "RefreshTokenReuseDetected",
    "TokenIssued",
    "TokenRevoked",
    "audit_record",
    "log_event",
]

#: The version of the audit log's records: a field added keeps it, a field removed or
#: changed in meaning bumps it.
AUDIT_SCHEMA = "starlette_broker_oauth.audit/1"

audit_log = logging.getLogger("starlette_broker_oauth.audit")


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthEvent:
    """Base of every event.

    Parameters:
        at: When it happened (UTC).
    """

    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeIssued(OAuthEvent):
    """An authorization code was issued (partner endpoint or hosted consent)."""

    client_id: str
    account_id: UUID
    scope: str
    via: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenIssued(OAuthEvent):
    """An access token was issued; ``grant_type`` says how."""

    client_id: str
    account_id: UUID
    scope: str
    grant_type: str
    token_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRevoked(OAuthEvent):
    """Access tokens stopped working; ``reason`` says why."""

    client_id: str | None
    token_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionRevoked(OAuthEvent):
    """An account's connection to one client (or, with ``client_id`` ``None``, to every
    client) was cut: every access and refresh token revoked. ``token_ids`` are the access
    tokens that were still working; ``reason`` is the platform's (``user_disconnected``,
    ``account_closed``, …)."""

    account_id: UUID
    client_id: str | None
    token_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientAuthenticationFailed(OAuthEvent):
    """A client presented credentials that did not authenticate it.

    Parameters:
        reason: Why, when it is more than a wrong secret or an unknown client: a
            ``private_key_jwt`` assertion's problem (``assertion_expired``,
            ``assertion_replayed``, …, :class:`~starlette_broker_oauth.errors.AssertionProblem`),
            or ``secret_not_allowed`` for a secret from a client registered for
            ``private_key_jwt`` only.
    """

    client_id: str
    endpoint: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeReplayDetected(OAuthEvent):
    """An authorization code was presented again (RFC 9700 §4.5)."""

    client_id: str
    account_id: UUID


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshTokenReuseDetected(OAuthEvent):
    """A rotated-out refresh token was presented again (RFC 9700 §4.14.2)."""

    client_id: str
    account_id: UUID


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminChange(OAuthEvent):
    """An operator changed a registration, through the CLI or ``app.state.admin``.

    Parameters:
        subject: ``client``, ``partner`` or ``account``.
        subject_id: Its id.
        action: ``created``, ``updated``, ``disabled``, ``enabled``, ``deleted``,
            ``secret_rotated``, ``client_allowed``, ``client_disallowed`` or ``given``.
        changes: For ``updated``, the fields that changed; for ``client_allowed`` and
            ``client_disallowed``, the client; for ``given``, the new owner.
        revoked: How many access tokens the change revoked.
    """

    subject: str
    subject_id: str
    action: str
    changes: tuple[str, ...] = ()
    revoked: int = 0


EventListener = Callable[[OAuthEvent], Awaitable[None] | None]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def audit_record(event: OAuthEvent) -> dict[str, Any]:
    """The event as the audit log's JSON object: ``schema``, ``event`` (the class name),
    ``at`` (ISO 8601, UTC) and the event's fields (UUIDs as text, tuples as arrays)."""
    record: dict[str, Any] = {"schema": AUDIT_SCHEMA, "event": type(event).__name__}
    for item in dataclasses.fields(event):
        record[item.name] = _plain(getattr(event, item.name))
    return record


def log_event(event: OAuthEvent) -> None:
    """Log ``event`` on ``starlette_broker_oauth.audit`` (``INFO``): the message is the
    JSON object of :func:`audit_record`, which is also the record's ``audit`` attribute
    for structured handlers. Nothing is built while the logger is off."""
    if audit_log.isEnabledFor(logging.INFO):
        record = audit_record(event)
        audit_log.info(json.dumps(record, separators=(",", ":")), extra={"audit": record})
