"""The contracts of the lookups a platform most often brings: clients, accounts, partners."""

from __future__ import annotations

import uuid

from ..models import Account, Client, Partner
from ..storage.base import AccountRepository, ClientRepository, PartnerAuthenticator
from ._base import Contract

__all__ = ["AccountRepositoryContract", "ClientRepositoryContract", "PartnerAuthenticatorContract"]


class ClientRepositoryContract(Contract):
    """What every :class:`~.storage.base.ClientRepository` must do.

    Fixtures to provide:
        clients: The repository under test.
        known_client: A :class:`~.models.Client` the repository holds, as it should
            return it; give its fields other values than their defaults (a disabled status,
            live-trading approval, scopes), so that each is shown to survive.
    """

    async def test_known_client_is_returned_whole(
        self, clients: ClientRepository, known_client: Client
    ) -> None:
        found = await clients.get_client(known_client.client_id)
        assert found == known_client

    async def test_unknown_client_is_none(self, clients: ClientRepository) -> None:
        assert await clients.get_client("no-such-client-" + uuid.uuid4().hex) is None

    async def test_client_ids_are_exact(
        self, clients: ClientRepository, known_client: Client
    ) -> None:
        client_id = known_client.client_id
        for near in (client_id.upper(), client_id + " ", " " + client_id, client_id[:-1]):
            if near != client_id:
                assert await clients.get_client(near) is None, near

    async def test_client_never_holds_its_secret(
        self, clients: ClientRepository, known_client: Client
    ) -> None:
        found = await clients.get_client(known_client.client_id)
        assert found is not None
        assert len(found.secret_hash) == 64 and int(found.secret_hash, 16) >= 0


class AccountRepositoryContract(Contract):
    """What every :class:`~.storage.base.AccountRepository` must do.

    Fixtures to provide:
        accounts: The repository under test.
        known_account: An :class:`~.models.Account` it holds, as it should return it.
    """

    async def test_known_account_is_returned_whole(
        self, accounts: AccountRepository, known_account: Account
    ) -> None:
        assert await accounts.get_account(known_account.account_id) == known_account

    async def test_unknown_account_is_none(
        self, accounts: AccountRepository, known_account: Account
    ) -> None:
        assert await accounts.get_account(uuid.uuid4()) is None
        assert await accounts.get_account(known_account.account_id) == known_account


class PartnerAuthenticatorContract(Contract):
    """What every :class:`~.storage.base.PartnerAuthenticator` must do.

    Fixtures to provide:
        partners: The authenticator under test.
        partner_credentials: ``(key_id, secret)`` of a partner it knows.
        partner_client_id: A client that partner may use.
        foreign_client_id: A client that exists but that partner may not use.
    """

    async def test_right_credentials_authenticate(
        self, partners: PartnerAuthenticator, partner_credentials: tuple[str, str]
    ) -> None:
        key_id, secret = partner_credentials
        partner = await partners.authenticate_partner(key_id, secret)
        assert isinstance(partner, Partner)
        assert partner.partner_id == key_id

    async def test_wrong_secret_and_unknown_key_are_refused(
        self, partners: PartnerAuthenticator, partner_credentials: tuple[str, str]
    ) -> None:
        key_id, secret = partner_credentials
        assert await partners.authenticate_partner(key_id, secret + "x") is None
        assert await partners.authenticate_partner(key_id, secret[:-1]) is None
        assert await partners.authenticate_partner(key_id, "") is None
        assert await partners.authenticate_partner("no-such-partner", secret) is None
        assert await partners.authenticate_partner("", "") is None

    async def test_partner_uses_only_its_clients(
        self,
        partners: PartnerAuthenticator,
        partner_credentials: tuple[str, str],
        partner_client_id: str,
        foreign_client_id: str,
    ) -> None:
        partner = await partners.authenticate_partner(*partner_credentials)
        assert partner is not None
        assert await partners.partner_can_use_client(partner, partner_client_id) is True
        assert await partners.partner_can_use_client(partner, foreign_client_id) is False
        assert await partners.partner_can_use_client(partner, "no-such-client") is False

    async def test_unknown_partner_uses_nothing(
        self, partners: PartnerAuthenticator, partner_client_id: str
    ) -> None:
        stranger = Partner(partner_id="no-such-partner-" + uuid.uuid4().hex)
        assert await partners.partner_can_use_client(stranger, partner_client_id) is False
