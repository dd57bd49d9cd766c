"""Connected apps: which clients hold working tokens for an account, and cutting them."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from ..events import ConnectionRevoked
from ..models import Client, Connection
from .authority import AuthorizationCore

__all__ = ["ConnectedApp", "ConnectedApps"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectedApp:
    """A connection with the client it is to.

    Parameters:
        connection: Which client, which scopes, since when.
        client: The client's registration; ``None`` if it has since been deleted.
    """

    connection: Connection
    client: Client | None

    @property
    def name(self) -> str:
        """The client's name, or its id when it has none."""
        return (
            self.client.name
            if self.client is not None and self.client.name
            else (self.connection.client_id)
        )


class ConnectedApps:
    """The platform's API for an account's connected apps.

    ``create_oauth_app`` builds one as ``app.state.connected_apps``. Each revocation
    reaches every token cache at once, through the grant store's announcements (in every
    worker, on PostgreSQL), and is reported as a :class:`~..events.ConnectionRevoked`
    event (and a ``TokenRevoked`` for the access tokens it cut).

    Parameters:
        core: The domain core.
    """

    def __init__(self, core: AuthorizationCore) -> None:
        self.core = core

    async def list(self, account_id: UUID) -> list[ConnectedApp]:
        """The apps connected to an account, ordered by client id."""
        connections = await self.core.grants.list_connections(account_id, now=self.core.clock.now())
        return [
            ConnectedApp(connection=c, client=await self.core.clients.get_client(c.client_id))
            for c in connections
        ]

    async def disconnect(
        self, account_id: UUID, client_id: str, *, reason: str = "user_disconnected"
    ) -> int:
        """Revoke every access and refresh token of ``client_id`` for the account; how
        many access tokens stopped working."""
        return await self._revoke(account_id, client_id, reason)

    async def disconnect_all(self, account_id: UUID, *, reason: str = "account_closed") -> int:
        """Revoke every token of the account, whichever client holds it (the account was
        closed or frozen); how many access tokens stopped working."""
        return await self._revoke(account_id, None, reason)

    async def _revoke(self, account_id: UUID, client_id: str | None, reason: str) -> int:
        revoked = await self.core.revoke_account(account_id, client_id=client_id, reason=reason)
        await self.core.emit(
            ConnectionRevoked(
                account_id=account_id,
                client_id=client_id,
                token_ids=tuple(revoked),
                reason=reason,
                at=self.core.clock.now(),
            )
        )
        return len(revoked)
