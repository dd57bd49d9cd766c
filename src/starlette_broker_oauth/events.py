"""Audit events: what happened, to which ids. Events never carry a secret.

Pass a listener to ``create_oauth_app(on_event=...)``; it receives every event, and may
be a plain function or a coroutine function. A listener that raises is logged and does
not change the answer the client gets.

Token ids are the SHA-256 of the token, the form the storage keeps; the token itself is
never in an event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from .security import utcnow

__all__ = [
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
]


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
    """A client presented credentials that did not authenticate it."""

    client_id: str
    endpoint: str


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
