"""The contracts of the lookups a platform most often brings: clients, accounts, partners."""

from __future__ import annotations

import uuid
from uuid import UUID

from ..models import Account, Client, Partner
from ..storage.base import AccountRepository, ClientRepository, PartnerRepository
from ._base import Contract

__all__ = ["AccountRepositoryContract", "ClientRepositoryContract", "PartnerRepositoryContract"]


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


class PartnerRepositoryContract(Contract):
    """What every :class:`~.storage.base.PartnerRepository` must do.

    Fixtures to provide:
        partners: The repository under test.
        known_partner: A :class:`~.models.Partner` it holds, as it should return it
            (with its ``secret_hash``).
        partner_client_id: A client that partner was allowed.
        foreign_client_id: A client that exists but that partner was not allowed.
        owned_account_id: An account that partner owns.
        partner_count: How many partners the repository holds.
    """

    async def test_known_partner_is_returned_whole(
        self, partners: PartnerRepository, known_partner: Partner
    ) -> None:
        found = await partners.get_partner(known_partner.partner_id)
        assert found == known_partner
        assert found.secret_hash == known_partner.secret_hash
        assert len(found.secret_hash) == 64 and int(found.secret_hash, 16) >= 0

    async def test_unknown_partner_is_none(
        self, partners: PartnerRepository, known_partner: Partner
    ) -> None:
        assert await partners.get_partner("no-such-partner-" + uuid.uuid4().hex) is None
        key_id = known_partner.partner_id
        for near in (key_id.upper(), key_id + " ", key_id[:-1]):
            if near != key_id:
                assert await partners.get_partner(near) is None, near

    async def test_a_partner_uses_only_the_clients_it_was_allowed(
        self,
        partners: PartnerRepository,
        known_partner: Partner,
        partner_client_id: str,
        foreign_client_id: str,
    ) -> None:
        key_id = known_partner.partner_id
        assert await partners.is_client_allowed(key_id, partner_client_id) is True
        assert await partners.is_client_allowed(key_id, foreign_client_id) is False
        assert await partners.is_client_allowed(key_id, "no-such-client") is False
        stranger = "no-such-partner-" + uuid.uuid4().hex
        assert await partners.is_client_allowed(stranger, partner_client_id) is False

    async def test_an_account_has_at_most_one_owner(
        self, partners: PartnerRepository, known_partner: Partner, owned_account_id: UUID
    ) -> None:
        assert await partners.account_owner(owned_account_id) == known_partner.partner_id
        assert await partners.account_owner(uuid.uuid4()) is None

    async def test_partners_are_counted(
        self, partners: PartnerRepository, known_partner: Partner, partner_count: int
    ) -> None:
        # The count decides whether an account nobody owns may be used by a partner (the
        # platform's only one): it must be exact.
        assert await partners.partner_count() == partner_count
