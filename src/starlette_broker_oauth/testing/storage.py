"""The contract of a whole storage backend: the four repositories and the admin operations."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from uuid import UUID

import pytest

from ..models import Account, Client, ClientStatus, Partner
from ..security import hash_secret
from ..storage.base import (
    AccountRepository,
    ClientRepository,
    GrantStore,
    ManagedStorage,
    PartnerRepository,
)
from ._base import utc_now
from .admin import StorageAdminContract
from .pushed import PushedRequestContract
from .repositories import (
    AccountRepositoryContract,
    ClientRepositoryContract,
    PartnerRepositoryContract,
)

__all__ = ["StorageContract"]


class StorageContract(
    StorageAdminContract,
    ClientRepositoryContract,
    AccountRepositoryContract,
    PartnerRepositoryContract,
    PushedRequestContract,
):
    """What every :class:`~.storage.base.Storage` must do: the four repository contracts
    (with pushed authorization requests)
    on one backend, seeded through its admin operations, and the admin operations
    (registering, listing, changing and deleting clients, partners and accounts; what
    deleting revokes; purging).

    Fixtures to provide:
        storage: The backend under test, empty and entered (``async with``).
    """

    @pytest.fixture
    async def grants(self, storage: ManagedStorage) -> GrantStore:
        return storage

    @pytest.fixture
    async def clients(self, storage: ManagedStorage) -> ClientRepository:
        return storage

    @pytest.fixture
    async def accounts(self, storage: ManagedStorage) -> AccountRepository:
        return storage

    @pytest.fixture
    async def partners(self, storage: ManagedStorage) -> PartnerRepository:
        return storage

    @pytest.fixture
    async def known_client(self, storage: ManagedStorage) -> Client:
        creds = await storage.create_client(
            name="Charting App",
            redirect_uris=["https://app.example/callback", "https://app.example/other"],
            description="Charts",
            url="https://app.example",
            terms_of_use="https://app.example/terms",
            privacy_policy="https://app.example/privacy",
            live_trading_approved=True,
            scopes=["general", "trading"],
            response_types=["code"],
        )
        return Client(
            client_id=creds.client_id,
            secret_hash=hash_secret(creds.client_secret),
            name="Charting App",
            redirect_uris=("https://app.example/callback", "https://app.example/other"),
            description="Charts",
            url="https://app.example",
            terms_of_use="https://app.example/terms",
            privacy_policy="https://app.example/privacy",
            live_trading_approved=True,
            scopes=frozenset({"general", "trading"}),
            response_types=frozenset({"code"}),
        )

    @pytest.fixture
    async def known_account(self, storage: ManagedStorage) -> Account:
        return await storage.create_account(live=True)

    @pytest.fixture
    async def partner_credentials(self, storage: ManagedStorage) -> tuple[str, str]:
        creds = await storage.create_partner(name="Correspondent")
        return creds.key_id, creds.secret

    @pytest.fixture
    async def known_partner(
        self, storage: ManagedStorage, partner_credentials: tuple[str, str]
    ) -> Partner:
        key_id, secret = partner_credentials
        return Partner(partner_id=key_id, name="Correspondent", secret_hash=hash_secret(secret))

    @pytest.fixture
    async def partner_count(self, storage: ManagedStorage, known_partner: Partner) -> int:
        return len(await storage.list_partners())

    @pytest.fixture
    async def owned_account_id(
        self, storage: ManagedStorage, partner_credentials: tuple[str, str]
    ) -> UUID:
        return (await storage.create_account(partner=partner_credentials[0])).account_id

    @pytest.fixture
    async def partner_client_id(
        self, storage: ManagedStorage, partner_credentials: tuple[str, str]
    ) -> str:
        creds = await storage.create_client(name="Mine", redirect_uris=["https://a.example/cb"])
        assert await storage.allow_partner_client(partner_credentials[0], creds.client_id)
        return creds.client_id

    @pytest.fixture
    async def foreign_client_id(self, storage: ManagedStorage) -> str:
        creds = await storage.create_client(name="Theirs", redirect_uris=["https://b.example/cb"])
        return creds.client_id

    async def test_a_client_is_disabled_and_enabled(
        self, storage: ManagedStorage, known_client: Client
    ) -> None:
        assert await storage.set_client_status(known_client.client_id, ClientStatus.DISABLED)
        found = await storage.get_client(known_client.client_id)
        assert found == dataclasses.replace(known_client, status=ClientStatus.DISABLED)
        assert await storage.set_client_status(known_client.client_id, ClientStatus.ACTIVE)
        assert await storage.get_client(known_client.client_id) == known_client
        assert not await storage.set_client_status("no-such-client", ClientStatus.DISABLED)

    async def test_secret_rotation(self, storage: ManagedStorage, known_client: Client) -> None:
        renewed = await storage.reset_client_secret(known_client.client_id)
        assert renewed is not None and renewed.client_id == known_client.client_id
        found = await storage.get_client(known_client.client_id)
        assert found == dataclasses.replace(
            known_client, secret_hash=hash_secret(renewed.client_secret)
        )
        assert await storage.reset_client_secret("no-such-client") is None
        partner = await storage.create_partner(name="P")
        again = await storage.reset_partner_secret(partner.key_id)
        assert again is not None and again.secret != partner.secret
        stored = await storage.get_partner(partner.key_id)
        assert stored is not None and stored.secret_hash == hash_secret(again.secret)
        assert await storage.reset_partner_secret("no-such-partner") is None

    async def test_allowing_unknown_partner_or_client_is_refused(
        self,
        storage: ManagedStorage,
        partner_credentials: tuple[str, str],
        known_client: Client,
    ) -> None:
        key_id = partner_credentials[0]
        admin, _ = self.administrator(storage)
        assert await admin.allow_partner_client("no-such-partner", known_client.client_id) is False
        assert await admin.allow_partner_client(key_id, "no-such-client") is False
        assert await admin.allow_partner_client(key_id, known_client.client_id) is True
        assert await admin.allow_partner_client(key_id, known_client.client_id) is True
        assert await storage.is_client_allowed(key_id, known_client.client_id)
        assert not await storage.is_client_allowed(key_id, "no-such-client")
        # The storage records what the core checked: a client of the platform's own
        # registry, which it does not hold, may be allowed.
        assert await storage.allow_partner_client(key_id, "the-platforms-own-client") is True
        assert await storage.is_client_allowed(key_id, "the-platforms-own-client")
        assert await storage.allow_partner_client("no-such-partner", "x") is False

    async def test_create_account_is_idempotent(self, storage: ManagedStorage) -> None:
        account_id = uuid.uuid4()
        first = await storage.create_account(account_id=account_id, live=True)
        again = await storage.create_account(account_id=account_id, live=False)
        assert first == again == Account(account_id=account_id, live=True)

    async def test_accounts_belong_to_partners(self, storage: ManagedStorage) -> None:
        first = await storage.create_partner(name="First")
        account = await storage.create_account()
        assert await storage.account_owner(account.account_id) is None
        assert await storage.partner_count() == 1
        second = await storage.create_partner(name="Second")
        assert await storage.partner_count() == 2
        assert await storage.give_account(account.account_id, second.key_id) is True
        assert await storage.account_owner(account.account_id) == second.key_id
        # Giving it again moves it; an account has one owner.
        assert await storage.give_account(account.account_id, first.key_id) is True
        assert await storage.account_owner(account.account_id) == first.key_id
        owned = await storage.create_account(partner=second.key_id)
        assert await storage.account_owner(owned.account_id) == second.key_id
        # An account of the platform's own (not in the storage) may be given too.
        own = uuid.uuid4()
        assert await storage.give_account(own, first.key_id) is True
        assert await storage.account_owner(own) == first.key_id
        assert await storage.give_account(account.account_id, "no-such-partner") is False
        with pytest.raises(ValueError, match="unknown partner"):
            await storage.create_account(partner="no-such-partner")

    async def test_purge_keeps_what_still_matters(self, storage: ManagedStorage) -> None:
        now = utc_now()
        old = now - timedelta(days=3)
        gone_code = self.code(issued_at=old, expires_at=old + timedelta(seconds=60))
        live_code = self.code()
        for code in (gone_code, live_code):
            await storage.save_code(code)
        expired = self.token(issued_at=old, expires_at=old + timedelta(minutes=15))
        revoked = self.token(issued_at=old, expires_at=None, revoked_at=old)
        fresh_revoked = self.token(revoked_at=now)
        forever = self.token(expires_at=None)
        for token in (expired, revoked, fresh_revoked, forever):
            await storage.save_token(token)
        result = await storage.purge_expired(now=now, retention=timedelta(days=1), batch_size=1)
        assert (result.codes, result.tokens) == (1, 2)
        assert await storage.get_code(gone_code.code_hash) is None
        assert await storage.get_code(live_code.code_hash) == live_code
        for token in (expired, revoked):
            assert await storage.get_token(token.token_hash) is None
        for token in (fresh_revoked, forever):
            assert await storage.get_token(token.token_hash) == token
