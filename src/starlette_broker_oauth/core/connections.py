"""Connected apps: which clients hold working tokens for an account, and cutting them."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from ..events import ConnectionRevoked
from ..models import Client, Connection
from ..storage.base import ClientRepository
from .revocation import Revocations

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
        revocations: The core's revocations (and through them the grant store).
        clients: Where clients are looked up.
    """

    def __init__(self, revocations: Revocations, *, clients: ClientRepository) -> None:
        self.revocations = revocations
        self.clients = clients

    async def list(self, account_id: UUID) -> list[ConnectedApp]:
        """The apps connected to an account, ordered by client id."""
        grants, clock = self.revocations.grants, self.revocations.clock
        connections = await grants.list_connections(account_id, now=clock.now())
        return [
            ConnectedApp(connection=c, client=await self.clients.get_client(c.client_id))
            for c in connections
        ]

    async def disconnect(
        self, account_id: UUID, client_id: str, *, reason: str = "user_disconnected"
    ) -> int:
        """Revoke every access and refresh token, and every pending code, of
        ``client_id`` for the account; how many access tokens stopped working."""
        return await self._revoke(account_id, client_id, reason)

    async def disconnect_all(self, account_id: UUID, *, reason: str = "account_closed") -> int:
        """Revoke every token of the account, whichever client holds it (the account was
        closed or frozen); how many access tokens stopped working."""
        return await self._revoke(account_id, None, reason)

    async def _revoke(self, account_id: UUID, client_id: str | None, reason: str) -> int:
        revoked = await self.revocations.revoke_tokens(
            account_id=account_id, client_id=client_id, reason=reason
        )
        await self.revocations.emit(
            ConnectionRevoked(
                account_id=account_id,
                client_id=client_id,
                token_ids=tuple(revoked),
                reason=reason,
                at=self.revocations.clock.now(),
            )
        )
        return len(revoked)
