"""The core's services for the CLI's commands, with their audit events logged.

Every change a command makes goes through the core, as the platform's own code would:
:class:`~starlette_broker_oauth.core.Administrator` for registrations,
:class:`~starlette_broker_oauth.core.ConnectedApps` for disconnections. Their audit events
go to the ``starlette_broker_oauth.audit`` logger (INFO), one JSON object each
(:func:`~starlette_broker_oauth.events.audit_record`), which the operator's logging
configuration ships where it wants.
"""

from __future__ import annotations

from ..clock import SYSTEM_CLOCK
from ..core import Administrator, ConnectedApps
from ..core.revocation import Revocations
from ..events import OAuthEvent, log_event
from ..storage.sqlalchemy import SQLAlchemyStorage

__all__ = ["administrator", "connected_apps"]


async def record(event: OAuthEvent) -> None:
    """Log an audit event."""
    log_event(event)


def administrator(storage: SQLAlchemyStorage) -> Administrator:
    """The admin service on the command's storage."""
    return Administrator(storage, emit=record)


def connected_apps(storage: SQLAlchemyStorage) -> ConnectedApps:
    """Accounts' connected apps on the command's storage."""
    return ConnectedApps(
        Revocations(grants=storage, emit=record, clock=SYSTEM_CLOCK), clients=storage
    )
